"""The event catalogue: every payload type listed once, with a stable tag the codec accepts."""

from __future__ import annotations

import alliance.core.alerts.events
import alliance.core.client
import alliance.core.clinic
import alliance.core.consent
import alliance.core.goal
import alliance.core.identity_links
import alliance.core.notifications.events
import alliance.core.questionnaire_links
import alliance.core.reminders.events
from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.events.base import EventPayload
from alliance.core.events.codec import EventCodec


def test_every_payload_type_is_catalogued_once():
    modules = (alliance.core.client, alliance.core.clinic, alliance.core.consent, alliance.core.goal,
               alliance.core.notifications.events, alliance.core.identity_links, alliance.core.alerts.events,
               alliance.core.reminders.events, alliance.core.questionnaire_links)
    defined = {obj for module in modules
               for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, EventPayload) and obj is not EventPayload}
    assert defined == set(ALL_EVENT_TYPES)
    names = [cls.type_name() for cls in ALL_EVENT_TYPES]
    assert len(names) == len(set(names))
    assert all("." in name and name == name.lower() for name in names)


def test_codec_accepts_catalogue_and_personal_fields():
    codec = EventCodec(ALL_EVENT_TYPES)  # refuses nested or badly typed personal fields
    assert "free_text" in codec.personal_fields("measurement.recorded")
    assert "client_words" in codec.personal_fields("goal.proposed")
    assert codec.personal_fields("goal.activated") == ()
