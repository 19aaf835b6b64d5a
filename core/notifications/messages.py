"""The text of each kind of notification: what a recipient reads, and nothing clinical.

A message says that something needs attention and where to look; never the client's name,
answers, scores or instrument. ``COMPOSERS`` maps a request's ``kind`` to its composer, so a
process that records another kind of request (reminders) adds its own composer beside these.
The text is built when sending and never stored or logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alliance.core.notifications.events import RISK_FLAG_ESCALATED, RISK_FLAG_RAISED, NotificationRequested


@dataclass(frozen=True)
class Text:
    subject: str
    body: str
    link: str | None = None


#: (request, public URL of the service) → the text to send (or an awaitable of it, for a
#: composer that reads the store when sending, as reminders read the clinic's own text).
Composer = Callable[[NotificationRequested, str], "Text | Awaitable[Text]"]


def _client_link(request: NotificationRequested, public_url: str) -> str | None:
    if request.client_id is None:
        return None
    return f"{public_url.rstrip('/')}/clients/{request.client_id}/plan"


def risk_flag_raised(request: NotificationRequested, public_url: str) -> Text:
    return Text(subject="Alliance: a risk flag needs attention",
                body=("A risk flag needs attention.\n\n"
                      f"Open Alliance to see it (flag {request.reference_id})."),
                link=_client_link(request, public_url))


def risk_flag_escalated(request: NotificationRequested, public_url: str) -> Text:
    return Text(subject="Alliance: a risk flag needs attention (escalated)",
                body=("A risk flag needs attention. It has not been acknowledged yet, so it is "
                      "escalated to you.\n\n"
                      f"Open Alliance to see it (flag {request.reference_id})."),
                link=_client_link(request, public_url))


COMPOSERS: dict[str, Composer] = {
    RISK_FLAG_RAISED: risk_flag_raised,
    RISK_FLAG_ESCALATED: risk_flag_escalated,
}
