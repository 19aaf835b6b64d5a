"""Measurements stored by the previous main read the same after the reported_by schema change.

The bytes below are what the previous main's codec wrote for a ``measurement.recorded``
(schema version 1, ``reported_by`` a plain string) and the ``risk.flag_raised`` beside it,
produced by that version's own classes. They are decoded through the domain codec's upcaster
chain, and appended as stored rows of a real store (PostgreSQL and memory) and read back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from alliance.core.client import MeasurementRecorded, ReportedBy, RiskFlagRaised, informant_of
from alliance.core.events.codec import EncodedPayload
from alliance.core.events.crypto import MemoryKeyRing, PostgresKeyRing
from alliance.core.events.envelope import NewEvent
from alliance.core.events.memory import MemoryEventStore
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.identity import Role
from alliance.core.runtime import domain_codec
from tests.database import TEST_KEK

MEASUREMENT_ID = uuid.UUID("6f1c1d7e-3c1a-4b8e-9a0c-2d4e5f607182")
#: Written by the previous main (commit 1a1952a) for a client's own PHQ-9: schema version 1.
V1_MEASUREMENT = (
    b'{"type":"measurement.recorded","measurement_id":"6f1c1d7e-3c1a-4b8e-9a0c-2d4e5f607182",'
    b'"instrument_id":"phq9","instrument_version":"1",'
    b'"fingerprint":"46d358267be0675090c0b7fb663ac17c76bc41ac065ffd3b62a1e555b0676f04",'
    b'"answers":{"item1":1,"item2":1,"item3":1,"item4":1,"item5":1,"item6":1,"item7":1,"item8":1,"item9":2},'
    b'"free_text":{},"scores":{"total":10.0},"band":"moderate","reported_by":"self",'
    b'"observed_at":"2026-03-01T09:00:00Z","goal_ids":[],"recorded_under_consent_at":"2026-03-01T10:00:00Z"}')
V1_FLAG = (
    b'{"type":"risk.flag_raised","flag_id":"390b212e-578a-54a6-8271-a46de63e33f9","source":"measurement",'
    b'"measurement_id":"6f1c1d7e-3c1a-4b8e-9a0c-2d4e5f607182","items":["item9"],"note":null,'
    b'"raised_by":"00000000-0000-0000-0000-00000000c001","raised_by_role":"client","raised_at":"2026-03-01T10:00:00Z"}')


def test_v1_measurement_bytes_decode_through_the_upcaster() -> None:
    codec = domain_codec()
    assert MeasurementRecorded.schema_version == 2
    payload = codec.decode("measurement.recorded", 1, V1_MEASUREMENT, None, erased=False, position=1)
    assert isinstance(payload, MeasurementRecorded)
    # reads the same: every field as stored, reported_by as the informant it named
    assert payload.measurement_id == MEASUREMENT_ID
    assert (payload.instrument_id, payload.instrument_version) == ("phq9", "1")
    assert payload.scores == {"total": 10.0} and payload.band == "moderate"
    assert payload.answers["item9"] == 2
    assert payload.observed_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert payload.reported_by == ReportedBy(informant="self", relationship=None, channel=None)
    # fields it never had read as "not recorded", never as a claim
    assert payload.risk_items is None and payload.unanswered == () and payload.incomplete is None
    assert not payload.prorated
    # the flag stored beside it still reads (no schema change: a new field with a default)
    flag = codec.decode("risk.flag_raised", 1, V1_FLAG, None, erased=False, position=2)
    assert isinstance(flag, RiskFlagRaised) and flag.items == ("item9",) and flag.reason is None
    assert flag.raised_by_role is Role.CLIENT


def test_a_v1_self_entry_written_by_a_proxy_reads_as_the_proxys() -> None:
    payload = domain_codec().decode("measurement.recorded", 1, V1_MEASUREMENT, None, erased=False, position=1)
    assert isinstance(payload, MeasurementRecorded)
    assert informant_of(payload.reported_by, Role.PROXY) == "proxy"
    assert informant_of(payload.reported_by, Role.CLIENT) == "self"


@pytest.fixture(params=["memory", "postgres"])
async def old_store(request: pytest.FixtureRequest, app_pool: Any, database: Any) -> AsyncIterator[Any]:
    """A store whose codec writes measurements as the previous main did (schema version 1)."""
    codec = domain_codec()
    original = codec.encode

    def old_encode(payload: Any) -> EncodedPayload:
        if isinstance(payload, MeasurementRecorded):
            return EncodedPayload("measurement.recorded", 1, V1_MEASUREMENT, None)
        return original(payload)

    codec.encode = old_encode  # type: ignore[method-assign]
    if request.param == "memory":
        yield MemoryEventStore(codec, MemoryKeyRing())
    else:
        pg = PostgresEventStore(app_pool, codec, PostgresKeyRing(app_pool, TEST_KEK), dsn=database.app_dsn)
        yield pg
        await pg.close()
    codec.encode = original  # type: ignore[method-assign]


async def test_a_stored_v1_row_reads_back_upcast(old_store: Any) -> None:
    client, tenant = uuid.uuid4(), uuid.uuid4()
    stream = f"client-{client}"
    placeholder = MeasurementRecorded(measurement_id=MEASUREMENT_ID, instrument_id="x", instrument_version="x",
                                      fingerprint="x", answers={}, scores={"total": 0.0},
                                      reported_by=ReportedBy(informant="self", channel="app"),
                                      observed_at=datetime.now(UTC))
    await old_store.append(stream, [NewEvent(event_id=uuid.uuid4(), payload=placeholder, tenant_id=tenant,
                                             subject_id=client, actor_id=client, actor_role=Role.CLIENT,
                                             occurred_at=datetime.now(UTC))], 0)
    [event] = await old_store.read_stream(stream)
    assert event.schema_version == 1
    assert event.payload.reported_by == ReportedBy(informant="self")
    assert event.payload.scores == {"total": 10.0} and event.payload.band == "moderate"
