"""The reminder decision, pure: given a client, their settings and measures, when the clock
reads a moment, then these reminders (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from msgspec.structs import replace

from alliance.core.client import ClientState
from alliance.core.consent import ConsentGranted, ConsentScope, ConsentWithdrawn
from alliance.core.identity import Role
from alliance.core.questionnaire_links import link_id_for_reminder, parse_token, token_for, token_hash
from alliance.core.reminders.decide import Attached, ChannelInfo, decide
from alliance.core.reminders.events import ReminderScheduled, ReminderState, ReminderSuppressed, reminder_id_for
from alliance.core.reminders.preferences import names_it
from alliance.core.schedules import Observation, Schedule, administration_id

LONDON = ZoneInfo("Europe/London")
MONDAY = date(2026, 3, 2)
KEY = b"k" * 32
EMAIL = [ChannelInfo("email", "email")]
CLIENT = uuid.uuid4()
GOAL = uuid.uuid4()
GRANTED = ConsentGranted(scope=ConsentScope.MEASUREMENT, text_version="v1", mode="self",
                         effective_at=datetime(2026, 1, 1, tzinfo=UTC), by=CLIENT, by_role=Role.CLIENT)
STATE = ClientState(client_id=CLIENT, tenant_id=uuid.uuid4(), consents=(GRANTED,))
WEEKLY = Attached(GOAL, GOAL, "phq9", Schedule(kind="every", interval=1, unit="weeks", start=MONDAY,
                                               timezone="Europe/London"))
PREFS = ReminderState(client_id=CLIENT, email="c@home.example")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LONDON)


def run(now: datetime, *, client: ClientState = STATE, prefs: ReminderState = PREFS,
        observations: tuple[Observation, ...] = (), channels: list[ChannelInfo] = EMAIL) -> object:
    return decide(client=client, prefs=prefs, attached=[WEEKLY], observations=observations, channels=channels,
                  now=now, key=KEY, link_hours=72)


def test_before_nine_nothing_and_the_runner_is_woken_at_nine() -> None:
    d = run(at(MONDAY, 8, 59))
    assert d.reminders == [] and d.next_at == at(MONDAY, 9)


def test_at_nine_one_reminder_with_a_link_and_a_request_and_next_week_to_wake() -> None:
    d = run(at(MONDAY, 9, 1))
    [scheduled] = d.reminders
    assert isinstance(scheduled, ReminderScheduled)
    adm = administration_id(GOAL, "phq9", MONDAY)
    assert (scheduled.administration_id, scheduled.reminder_id) == (adm, reminder_id_for(adm))
    [link] = d.links
    assert link.link_id == link_id_for_reminder(scheduled.reminder_id) == scheduled.link_id
    assert link.token_hash == token_hash(token_for(KEY, link.link_id))
    assert link.expires_at == at(MONDAY, 9, 1) + timedelta(hours=72)
    [request] = d.requests
    assert (request.recipient_kind, request.recipient_id, request.channel) == ("client", CLIENT, "email")
    assert d.next_at == at(MONDAY + timedelta(days=7), 9)


def test_decided_once_answered_or_not() -> None:
    first = run(at(MONDAY, 9, 1)).reminders[0]
    prefs = replace(PREFS, decided={first.reminder_id: "scheduled"})
    assert run(at(MONDAY, 15), prefs=prefs).reminders == []
    answered = (Observation(measurement_id=uuid.uuid4(), instrument_id="phq9", observed_at=at(MONDAY, 8)),)
    assert run(at(MONDAY, 9, 1), observations=answered).reminders == []


def test_suppressed_for_consent_discharge_and_opt_out_but_waiting_without_an_address() -> None:
    withdrawn = replace(STATE, consents=(GRANTED, ConsentWithdrawn(
        scope=ConsentScope.MEASUREMENT, mode="self", effective_at=datetime(2026, 2, 1, tzinfo=UTC), by=CLIENT,
        by_role=Role.CLIENT)))
    cases = {"consent_not_in_force": run(at(MONDAY, 10), client=withdrawn),
             "discharged": run(at(MONDAY, 10), client=replace(STATE, discharged=True)),
             "opted_out": run(at(MONDAY, 10), prefs=replace(PREFS, opted_out=frozenset({"email"})))}
    for reason, d in cases.items():
        [suppressed] = d.reminders
        assert isinstance(suppressed, ReminderSuppressed) and suppressed.reason == reason
        assert d.links == [] and d.requests == []
    continued = run(at(MONDAY, 10), client=replace(STATE, discharged=True), prefs=replace(PREFS, after_discharge=True))
    assert isinstance(continued.reminders[0], ReminderScheduled)
    assert run(at(MONDAY, 10), prefs=replace(PREFS, email=None)).reminders == []
    # a clinic-wide channel reaches a client with no address
    hook = run(at(MONDAY, 10), prefs=replace(PREFS, email=None), channels=[ChannelInfo("webhook", None)])
    assert [r.channel for r in hook.requests] == ["webhook"]


def test_a_link_never_outlives_the_administrations_window() -> None:
    d = decide(client=STATE, prefs=PREFS, attached=[Attached(CLIENT, None, "mood_diary", Schedule(
        kind="every", interval=1, unit="days", start=MONDAY, timezone="Europe/London"))], observations=(),
        channels=EMAIL, now=at(MONDAY, 9, 30), key=KEY, link_hours=72)
    assert d.links[0].expires_at == at(MONDAY + timedelta(days=1), 0) and d.links[0].goal_ids == ()


def test_an_erased_client_gets_nothing() -> None:
    assert run(at(MONDAY, 10), client=replace(STATE, erased=True)).reminders == []


def test_tokens_name_their_link_and_anything_else_is_not_one() -> None:
    link = uuid.uuid4()
    token = token_for(KEY, link)
    assert parse_token(token) == link and len(token) == 64
    for bad in ("", "x" * 200, token[:-2], "ü" * 64):
        try:
            parse_token(bad)
        except Exception as exc:  # a 404 naming the token
            assert getattr(exc, "field", None) == "token"
        else:
            raise AssertionError(bad)


def test_instrument_names_in_any_spelling() -> None:
    for text in ("Your PHQ-9", "phq9 time", "PHQ 9", "the Patient Health Questionnaire"):
        assert names_it(text, "PHQ-9 (Patient Health Questionnaire)") or names_it(text, "phq9"), text
    assert not names_it("A questionnaire is ready", "PHQ-9 (Patient Health Questionnaire)")
    assert not names_it("Mood: how are you?", "Mood diary")
