"""The built-in signed webhook channel: one HTTPS POST per message to the clinic's endpoint.

Configured by ``ALLIANCE_WEBHOOK_URL`` and ``ALLIANCE_WEBHOOK_SECRET`` (``core/settings.py``);
with no URL it registers no channel. The clinic's endpoint (an SMS gateway, a patient portal,
a chat bridge) turns the message into whatever reaches the person.

Signing follows Standard Webhooks (standardwebhooks.com, "Symmetric signature"):

* ``webhook-id``: the message id (derived from the notification id, the same on every
  attempt and after a restart), so the receiver can drop a repeat;
* ``webhook-timestamp``: integer seconds since the Unix epoch, when this attempt was signed;
* ``webhook-signature``: ``v1,`` followed by the base64 HMAC-SHA256, keyed with the secret,
  of ``{webhook-id}.{webhook-timestamp}.{body}`` (the exact body bytes). Several
  space-separated signatures may appear during a secret rotation; one valid is enough.

The secret is ``whsec_`` followed by base64 of at least 24 random bytes (the key is the
decoded bytes). A receiver verifies with :func:`verify` (or any Standard Webhooks library)
and refuses a timestamp more than five minutes away from its own clock (replays).

The body is JSON: ``{"type", "message_id", "notification_id", "tenant_id", "recipient_id",
"subject", "text", "link"}``. It holds the message text and, for a reminder, the one-time
questionnaire link: the endpoint must be HTTPS (only ``http://`` on loopback is accepted).

Retries: a connection error, a timeout, 408, 429 or a 5xx is retried inside one delivery
with exponential backoff and full jitter (``base`` doubling up to ``cap``, a random wait up to
that bound), at most ``attempts`` tries; then the delivery fails and the dispatcher retries
it later with its own backoff (every delivery is recorded as an event). Any other 4xx is
permanent: retrying the same request cannot help.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import httpx

from alliance.core.errors import ConfigurationError
from alliance.core.settings import Settings
from alliance.plugins.channels.base import DeliveryFailed, NotificationChannel, OutgoingMessage
from alliance.plugins.hookspecs import hookimpl

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
#: A receiver refuses a signature whose timestamp is further than this from its clock.
TOLERANCE_SECONDS = 300
_RETRYABLE = frozenset({408, 425, 429})


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret; raises ``ConfigurationError`` naming the setting."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ConfigurationError("ALLIANCE_WEBHOOK_SECRET must start with 'whsec_' (Standard Webhooks).",
                                 code="invalid_setting", field="ALLIANCE_WEBHOOK_SECRET")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"ALLIANCE_WEBHOOK_SECRET must be 'whsec_' and base64 of at least {MIN_SECRET_BYTES} random bytes "
            "(make one with: echo whsec_$(openssl rand -base64 32)).",
            code="invalid_setting", field="ALLIANCE_WEBHOOK_SECRET")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: True when one ``v1`` signature matches and the timestamp is fresh."""
    key = parse_secret(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id, stamp, given = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (message_id and stamp and given) or not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    expected = sign(key, message_id, int(stamp), body)
    return any(hmac.compare_digest(expected, candidate) for candidate in given.split(" ") if candidate)


class WebhookChannel:
    name: str = "webhook"
    #: One clinic-wide endpoint: it knows its people by ``recipient_id`` (no address from Alliance).
    address_kind: str | None = None

    def __init__(self, *, url: str, secret: str, timeout: float = 10.0, attempts: int = 4,
                 base: float = 0.5, cap: float = 8.0, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ConfigurationError("ALLIANCE_WEBHOOK_URL must be an https:// URL (http:// only on loopback).",
                                     code="invalid_setting", field="ALLIANCE_WEBHOOK_URL")
        if attempts < 1:
            raise ConfigurationError("A webhook needs at least one attempt.", code="invalid_setting",
                                     field="ALLIANCE_WEBHOOK_ATTEMPTS")
        self.url = url
        self.key = parse_secret(secret)
        self.timeout = timeout
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self._rng = rng or random.SystemRandom()
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookChannel:
        assert settings.webhook_url is not None
        if not settings.webhook_secret:
            raise ConfigurationError("ALLIANCE_WEBHOOK_URL is set but ALLIANCE_WEBHOOK_SECRET is not: every "
                                     "webhook request is signed.", code="invalid_setting",
                                     field="ALLIANCE_WEBHOOK_SECRET")
        return cls(url=settings.webhook_url, secret=settings.webhook_secret, timeout=settings.webhook_timeout,
                   attempts=settings.webhook_attempts)

    def backoff(self, failed_attempt: int) -> float:
        """Full jitter: a random wait up to ``min(cap, base * 2**(n-1))`` after failed try n."""
        return self._rng.uniform(0.0, min(self.cap, self.base * 2 ** (failed_attempt - 1)))

    def body(self, message: OutgoingMessage) -> bytes:
        return json.dumps({
            "type": message.kind, "message_id": message.message_id,
            "notification_id": str(message.notification_id), "tenant_id": str(message.tenant_id),
            "recipient_id": str(message.recipient_id), "subject": message.subject, "text": message.body,
            "link": message.link}, separators=(",", ":"), ensure_ascii=False).encode()

    def headers(self, message: OutgoingMessage, body: bytes) -> dict[str, str]:
        stamp = int(self._clock())
        return {"content-type": "application/json", "webhook-id": message.message_id,
                "webhook-timestamp": str(stamp), "webhook-signature": sign(self.key, message.message_id, stamp, body),
                "user-agent": "Alliance-Webhook/1"}

    async def send(self, message: OutgoingMessage) -> None:
        body = self.body(message)
        error = "no_attempt"
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
            for attempt in range(1, self.attempts + 1):
                try:
                    # Signed per attempt: a receiver's replay window holds for late retries too.
                    response = await http.post(self.url, content=body, headers=self.headers(message, body))
                except httpx.TimeoutException:
                    error = "timeout"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__  # the class only: never the URL or a server's text
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return
                    error = f"http_{status}"
                    if 400 <= status < 500 and status not in _RETRYABLE:
                        raise DeliveryFailed(error, permanent=True)
                if attempt < self.attempts:
                    await self._sleep(self.backoff(attempt))
        raise DeliveryFailed(error)


@hookimpl
def register_notification_channels(settings: Settings) -> list[NotificationChannel]:
    if not settings.webhook_url:
        return []
    return [WebhookChannel.from_settings(settings)]
