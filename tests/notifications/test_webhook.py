"""The signed webhook channel against a real HTTP receiver on a free loopback port: Standard
Webhooks signatures a receiver can verify, bounded retries with exponential backoff and jitter
inside one delivery, permanent 4xx, and delivery of a risk-flag notification through the
dispatcher (each attempt recorded). Backoff waits are handed to an injected sleep that records
them: nothing here sleeps through a delay."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from alliance.core.clock import SettableClock
from alliance.core.errors import ConfigurationError
from alliance.core.notifications.events import RISK_FLAG_RAISED, notification_id_for
from alliance.core.settings import Settings, load_settings
from alliance.plugins.channels.base import DeliveryFailed, OutgoingMessage
from alliance.plugins.channels.webhook import WebhookChannel, register_notification_channels, sign, verify
from tests.notifications.receiver import Receiver
from tests.notifications.support import answer_phq9, care_team, eventually, flag_of, sent_of
from tests.notifications.test_dispatch import CLINICAL, dispatcher

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def message(**kw: Any) -> OutgoingMessage:
    nid = uuid.uuid4()
    values: dict[str, Any] = {"message_id": str(nid), "notification_id": nid, "tenant_id": uuid.uuid4(),
                              "kind": "reminder", "recipient_id": uuid.uuid4(), "to": None,
                              "subject": "A questionnaire is ready", "body": "A questionnaire is ready.",
                              "link": "https://alliance.example/q/abc"}
    return OutgoingMessage(**{**values, **kw})


class Waits:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def receiver() -> Any:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


async def test_a_receiver_failing_twice_gets_it_on_the_third_try_with_backoff_and_one_id(receiver) -> None:
    receiver.script = [503, 500]
    waits = Waits()
    channel = WebhookChannel(url=receiver.url, secret=SECRET, base=0.5, cap=8.0, attempts=4,
                             rng=random.Random(7), sleep=waits)
    sent = message()
    await channel.send(sent)
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {sent.message_id}
    # every attempt is signed, and a receiver holding the secret accepts every one
    assert all(verify(SECRET, r.headers, r.body) for r in receiver.requests)
    body = json.loads(receiver.requests[-1].body)
    assert body["message_id"] == sent.message_id and body["link"] == "https://alliance.example/q/abc"
    assert body["subject"] == "A questionnaire is ready"
    # two waits, each a random fraction (full jitter) of 0.5 s then 1 s
    assert len(waits.delays) == 2
    assert 0 <= waits.delays[0] <= 0.5 and 0 <= waits.delays[1] <= 1.0
    assert waits.delays != [0.5, 1.0]  # jittered, not the bare bounds


async def test_the_backoff_bound_doubles_up_to_its_cap() -> None:
    channel = WebhookChannel(url="https://hooks.example/a", secret=SECRET, base=0.5, cap=4.0,
                             rng=random.Random(1))
    bounds = [min(4.0, 0.5 * 2 ** (n - 1)) for n in range(1, 7)]
    assert bounds == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for n, bound in enumerate(bounds, start=1):
        waits = [channel.backoff(n) for _ in range(200)]
        assert all(0 <= w <= bound for w in waits) and max(waits) > bound * 0.8


async def test_retries_are_bounded_and_the_failure_is_not_permanent(receiver) -> None:
    receiver.then = 503
    waits = Waits()
    channel = WebhookChannel(url=receiver.url, secret=SECRET, attempts=3, sleep=waits)
    with pytest.raises(DeliveryFailed) as failed:
        await channel.send(message())
    assert (failed.value.code, failed.value.permanent) == ("http_503", False)
    assert len(receiver.requests) == 3 and len(waits.delays) == 2


async def test_a_4xx_is_permanent_and_not_retried(receiver) -> None:
    receiver.script = [410]
    channel = WebhookChannel(url=receiver.url, secret=SECRET, attempts=4, sleep=Waits())
    with pytest.raises(DeliveryFailed) as failed:
        await channel.send(message())
    assert (failed.value.code, failed.value.permanent) == ("http_410", True)
    assert len(receiver.requests) == 1


async def test_nobody_listening_is_a_retryable_failure_that_names_only_the_class() -> None:
    r = await Receiver().start()
    url = r.url
    await r.stop()  # the port is free again: connections are refused
    channel = WebhookChannel(url=url, secret=SECRET, attempts=2, sleep=Waits())
    with pytest.raises(DeliveryFailed) as failed:
        await channel.send(message())
    assert failed.value.code == "ConnectError" and not failed.value.permanent


def test_verification_refuses_a_changed_body_another_secret_a_stale_or_missing_timestamp() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    headers = {"webhook-id": "m1", "webhook-timestamp": str(now),
               "webhook-signature": sign(base64.b64decode(SECRET[6:]), "m1", now, body)}
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, b'{"a":2}')
    assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body)
    assert not verify(SECRET, {**headers, "webhook-id": "m2"}, body)
    assert not verify(SECRET, headers, body, now=now + 301)
    assert not verify(SECRET, {k: v for k, v in headers.items() if k != "webhook-timestamp"}, body)
    # a rotation sends several signatures: one valid is enough
    assert verify(SECRET, {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}, body)


def test_the_header_format_is_standard_webhooks() -> None:
    # Standard Webhooks' own example (standardwebhooks.com spec, "Symmetric signature" test vector)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(base64.b64decode(secret[6:]), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_configuration_is_refused_clearly() -> None:
    assert register_notification_channels(Settings()) == []
    with pytest.raises(ConfigurationError) as e:
        WebhookChannel.from_settings(Settings(webhook_url="https://hooks.example/a"))
    assert e.value.field == "ALLIANCE_WEBHOOK_SECRET"
    with pytest.raises(ConfigurationError) as e:
        WebhookChannel(url="https://hooks.example/a", secret="not-a-secret")
    assert e.value.field == "ALLIANCE_WEBHOOK_SECRET"
    with pytest.raises(ConfigurationError) as e:
        WebhookChannel(url="http://hooks.example/a", secret=SECRET)  # plain HTTP off loopback
    assert e.value.field == "ALLIANCE_WEBHOOK_URL"
    with pytest.raises(ConfigurationError) as e:
        load_settings({"ALLIANCE_WEBHOOK_ATTEMPTS": "0"})
    assert e.value.field == "ALLIANCE_WEBHOOK_ATTEMPTS"
    settings = load_settings({"ALLIANCE_WEBHOOK_URL": "https://hooks.example/a", "ALLIANCE_WEBHOOK_SECRET": SECRET})
    [channel] = register_notification_channels(settings)
    assert (channel.name, channel.address_kind, channel.attempts) == ("webhook", None, 4)


async def test_the_dispatcher_delivers_a_risk_flag_through_the_webhook_and_records_it(notify_api, receiver) -> None:
    receiver.script = [502]  # one failure inside the delivery, then accepted
    team = await care_team(notify_api)
    clock = SettableClock()
    hook = WebhookChannel(url=receiver.url, secret=SECRET, attempts=3, sleep=Waits())
    d = dispatcher(notify_api, [hook], clock)
    d.start()
    try:
        await answer_phq9(notify_api, team, item9=1)
        flag = await flag_of(notify_api, team)
        nid = notification_id_for(RISK_FLAG_RAISED, flag, team.primary, "webhook")
        sent = await eventually(lambda: sent_of(notify_api, nid), what="the webhook's sent event")
        member = notification_id_for(RISK_FLAG_RAISED, flag, team.member, "webhook")
        await eventually(lambda: sent_of(notify_api, member), what="the member's sent event")
    finally:
        await d.stop()
    assert [(e.payload.attempt, e.payload.channel, e.payload.message_id) for e in sent] == [(1, "webhook", str(nid))]
    # two recipients, one request failed and was retried inside its delivery: three requests
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        [str(nid), str(member), receiver.requests[0].headers["webhook-id"]])
    assert all(verify(SECRET, r.headers, r.body) for r in receiver.requests)
    mine = [r for r in receiver.requests if r.headers["webhook-id"] == str(nid)]
    body = json.loads(mine[-1].body)
    assert body["type"] == RISK_FLAG_RAISED and body["recipient_id"] == str(team.primary)
    assert not CLINICAL.search(body["subject"] + body["text"])
    assert clock.now() - sent[0].payload.sent_at < timedelta(seconds=1)
