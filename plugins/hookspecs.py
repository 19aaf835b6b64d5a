# mypy: disable-error-code="empty-body"
# (Specs have empty bodies: pluggy only reads their names, arguments and docstrings.)
"""The hooks a clinic plugin can implement (pluggy project name ``alliance``).

Every hook is synchronous and returns data; the app does any I/O with it. An
implementation may take a subset of a spec's arguments, so specs can grow.
``docs/plugins.md`` documents each one with its exact signature (a test checks it).
"""

from __future__ import annotations

from typing import Any

import pluggy

from alliance.core.settings import Settings
from alliance.plugins.channels.base import NotificationChannel
from alliance.plugins.expected_response import ResponseBand
from alliance.plugins.instruments import InstrumentDefinition

hookspec = pluggy.HookspecMarker("alliance")
hookimpl = pluggy.HookimplMarker("alliance")


@hookspec
def register_measures() -> list[InstrumentDefinition]:
    """Return the instrument definitions this plugin provides.

    Called once at start-up; every definition is validated then (duplicate id and version,
    ranges, scoring, bands, a changed definition under an existing version) and a problem
    stops start-up with an error naming the plugin.
    """


@hookspec
def score_measure(definition: InstrumentDefinition,
                  answers: dict[str, Any]) -> dict[str, float] | None:
    """Compute the scores of a ``Scoring(method="custom")`` instrument this plugin registered.

    Only the plugin that registered ``definition`` is asked. ``answers`` are already
    validated against the items (free-text answers included). Return a dict with at least
    ``"total"`` (inside the declared score range) plus any subscales, or ``None`` for a
    definition that is not yours. Runs in a worker thread with a time limit: a raise, a
    malformed return or a timeout refuses the measurement with ``instrument_failed``.
    """


@hookspec
def risk_flag_actions(flag: dict[str, Any]) -> list[str]:
    """Return what this clinic wants shown or done when a risk flag is raised.

    ``flag`` holds ``tenant_id``, ``instrument_id``, ``instrument_version``, ``item_ids`` (the
    risk items that fired) and ``goal_ids``; never the answers. Return short plain-language
    action lines (e.g. "Call the client today"); the app shows all plugins' lines together.
    """


@hookspec
def glossary_terms() -> dict[str, str]:
    """Return clinical jargon → everyday words for the plain-language check.

    Keys are matched case-insensitively as whole words; later plugins do not override an
    earlier term, they add to the list of suggestions.
    """


@hookspec(firstresult=True)
def crisis_information(tenant_id: str) -> str | None:
    """Return the crisis information text to show a client of ``tenant_id``, or ``None``.

    First non-``None`` answer wins (plugins registered later are asked first), so a clinic
    plugin can give its own local numbers.
    """


@hookspec
def register_notification_channels(settings: Settings) -> list[NotificationChannel]:
    """Return the notification channels this plugin provides (e.g. email, a webhook).

    Called once at start-up with the service's settings; return ``[]`` when unconfigured.
    Each channel has a unique ``name``, an ``address_kind`` (the recipient address it needs,
    e.g. ``"email"``, or ``None``) and an ``async send(message: OutgoingMessage)`` that
    delivers one message or raises (``DeliveryFailed(code, permanent=...)``). The app's
    dispatcher awaits ``send``, records every attempt as an event and retries with backoff.
    A duplicate name or a malformed channel stops start-up naming the plugin. ``send`` must
    never log the address, subject or body (they stay out of the message's ``repr``).
    """


@hookspec(firstresult=True)
def expected_response(instrument_id: str, instrument_version: str, baseline: float,
                      administration_index: int, weeks_since_baseline: float) -> ResponseBand | None:
    """Return the band of totals expected at this administration, or ``None``.

    ``baseline`` is the client's first total on the instrument, ``administration_index`` the
    position of the latest administration (the baseline is 0), ``weeks_since_baseline`` the
    time between them. First non-``None`` answer wins. Return a ``ResponseBand`` (from
    ``alliance.plugins.expected_response``) whose ``source`` names the curve; a latest total on
    the worse side of it raises an ``outside_expected_response`` alert for the care team. Called
    for every new administration by the alert policy while it follows the store: keep it pure
    and fast (no I/O).
    """
