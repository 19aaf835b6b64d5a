"""The built-in email channel: SMTP through aiosmtplib (a built-in plugin like any other).

Configured by ``ALLIANCE_SMTP_*`` (``core/settings.py``); with no host set it registers no
channel. The Message-ID is derived from the notification id, so a re-sent attempt (after a
crash between sending and recording) carries the same id and mail clients show it once.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from alliance.core.errors import ConfigurationError
from alliance.core.settings import Settings
from alliance.plugins.channels.base import DeliveryFailed, NotificationChannel, OutgoingMessage
from alliance.plugins.hookspecs import hookimpl

TLS_MODES = ("none", "starttls", "tls")


class SmtpChannel:
    name: str = "email"
    address_kind: str | None = "email"

    def __init__(self, *, host: str, port: int, sender: str, tls: str = "starttls",
                 username: str | None = None, password: str | None = None, timeout: float = 20.0) -> None:
        if tls not in TLS_MODES:
            raise ConfigurationError(f"ALLIANCE_SMTP_TLS must be one of {', '.join(TLS_MODES)}.",
                                     code="invalid_setting", field="ALLIANCE_SMTP_TLS")
        if "@" not in sender:
            raise ConfigurationError("ALLIANCE_SMTP_FROM must be an email address.",
                                     code="invalid_setting", field="ALLIANCE_SMTP_FROM")
        self.host = host
        self.port = port
        self.sender = sender
        self.tls = tls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.domain = sender.rsplit("@", 1)[1].strip(">") or "alliance"

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpChannel:
        assert settings.smtp_host is not None
        return cls(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                   tls=settings.smtp_tls, username=settings.smtp_username, password=settings.smtp_password,
                   timeout=settings.smtp_timeout)

    def compose(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Message-ID"] = f"<{message.message_id}@{self.domain}>"
        mail["Date"] = formatdate(usegmt=True)
        # No auto-replies (out-of-office) back to the dispatcher's sender (RFC 3834).
        mail["Auto-Submitted"] = "auto-generated"
        body = message.body if message.link is None else f"{message.body}\n\n{message.link}\n"
        mail.set_content(body)
        return mail

    async def send(self, message: OutgoingMessage) -> None:
        if not message.to:
            raise DeliveryFailed("no_address", permanent=True)
        try:
            await aiosmtplib.send(
                self.compose(message), hostname=self.host, port=self.port, username=self.username,
                password=self.password, use_tls=self.tls == "tls", start_tls=self.tls == "starttls",
                timeout=self.timeout)
        except aiosmtplib.SMTPRecipientsRefused:
            raise DeliveryFailed("recipient_refused", permanent=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The class only: a server's reply text can echo the address.
            raise DeliveryFailed(type(exc).__name__) from None


@hookimpl
def register_notification_channels(settings: Settings) -> list[NotificationChannel]:
    if not settings.smtp_host:
        return []
    return [SmtpChannel.from_settings(settings)]
