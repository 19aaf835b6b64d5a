"""The event catalogue: every payload type listed once, with a stable tag the codec accepts."""

from __future__ import annotations

import core.client
import core.clinic
import core.consent
import core.goal
import core.notifications.events
from core.catalog import ALL_EVENT_TYPES
from core.events.base import EventPayload
from core.events.codec import EventCodec


def test_every_payload_type_is_catalogued_once():
    defined = {obj for module in (core.client, core.clinic, core.consent, core.goal, core.notifications.events)
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
