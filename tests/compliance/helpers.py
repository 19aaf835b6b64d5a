"""A small, realistic client history (client stream + one goal stream), built from domain events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import asyncpg

from alliance.core.client import ClientEnrolled, MeasurementRecorded, ReportedBy, client_stream
from alliance.core.consent import ConsentGranted, ConsentScope
from alliance.core.events.base import EventPayload
from alliance.core.events.codec import GENESIS_HASH, chain_hash, content_digest
from alliance.core.events.envelope import NewEvent
from alliance.core.goal import GoalActivated, GoalAgreed, GoalProposed, MeasureAttached, goal_stream
from alliance.core.identity import Role
from alliance.core.schedules import parse_free_text
from alliance.plugins.measures.gad7 import GAD7
from alliance.plugins.measures.phq9 import PHQ9

#: The free text measures were attached with, read as a schedule (``goal.measure_attached`` v2).
WEEKLY_SCHEDULE = parse_free_text("weekly", start=date(2026, 1, 5))

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
CANARY = "canary-words-7f3a"

SELF = ReportedBy(informant="self", channel="app")


@dataclass
class History:
    tenant: UUID = field(default_factory=uuid.uuid4)
    client: UUID = field(default_factory=uuid.uuid4)
    clinician: UUID = field(default_factory=uuid.uuid4)
    goal: UUID = field(default_factory=uuid.uuid4)
    episode: UUID = field(default_factory=uuid.uuid4)
    phq9: UUID = field(default_factory=uuid.uuid4)
    gad7: UUID = field(default_factory=uuid.uuid4)

    @property
    def client_stream(self) -> str:
        return client_stream(self.client)

    @property
    def goal_stream(self) -> str:
        return goal_stream(self.goal)

    def new(self, payload: EventPayload, actor: UUID, role: Role, minutes: int) -> NewEvent:
        return NewEvent(event_id=uuid.uuid4(), payload=payload, tenant_id=self.tenant, subject_id=self.client,
                        actor_id=actor, actor_role=role, occurred_at=T0 + timedelta(minutes=minutes))

    def client_events(self) -> list[NewEvent]:
        c, k = self.client, self.clinician
        phq_answers = {f"item{n}": (2 if n < 5 else 1) for n in range(1, 10)}
        gad_answers = {f"item{n}": 1 for n in range(1, 8)}
        return [
            self.new(ClientEnrolled(client_id=c, tenant_id=self.tenant, episode_id=self.episode,
                                    primary_clinician_id=k, by=k, by_role=Role.CLINICIAN), k, Role.CLINICIAN, 0),
            self.new(ConsentGranted(scope=ConsentScope.GOAL_SETTING, text_version="v1", mode="self",
                                    effective_at=T0, by=c, by_role=Role.CLIENT), c, Role.CLIENT, 1),
            self.new(ConsentGranted(scope=ConsentScope.MEASUREMENT, text_version="v1", mode="verbal_attested",
                                    effective_at=T0, by=c, by_role=Role.CLIENT, attested_by=k,
                                    attested_at=T0, attestation_method="in_session"), k, Role.CLINICIAN, 2),
            self.new(MeasurementRecorded(measurement_id=self.phq9, instrument_id=PHQ9.id,
                                         instrument_version=PHQ9.version, fingerprint=PHQ9.fingerprint,
                                         answers=phq_answers, scores={"total": float(sum(phq_answers.values()))},
                                         band="moderately severe", reported_by=SELF, observed_at=T0,
                                         goal_ids=(self.goal,)), c, Role.CLIENT, 10),
            self.new(MeasurementRecorded(measurement_id=self.gad7, instrument_id=GAD7.id,
                                         instrument_version=GAD7.version, fingerprint=GAD7.fingerprint,
                                         answers=gad_answers, scores={"total": 7.0}, band="mild",
                                         reported_by=SELF, observed_at=T0, free_text={"note": CANARY}),
                     c, Role.CLIENT, 11),
        ]

    def goal_events(self) -> list[NewEvent]:
        c, k, g = self.client, self.clinician, self.goal
        return [
            self.new(GoalProposed(goal_id=g, client_id=c, tenant_id=self.tenant, author_party="client", by=c,
                                  by_role=Role.CLIENT, client_words=f"sleep better {CANARY}",
                                  facets={"target": "7 hours a night", "measure": "sleep diary"},
                                  due_date=date(2025, 6, 1)), c, Role.CLIENT, 3),
            self.new(GoalAgreed(goal_id=g, version=1, party="client", by=c, by_role=Role.CLIENT), c, Role.CLIENT, 4),
            self.new(GoalAgreed(goal_id=g, version=1, party="clinician", by=k, by_role=Role.CLINICIAN),
                     k, Role.CLINICIAN, 5),
            self.new(GoalActivated(version=1), k, Role.CLINICIAN, 5),
            self.new(MeasureAttached(instrument_id=PHQ9.id, schedule=WEEKLY_SCHEDULE, by=k, by_role=Role.CLINICIAN),
                     k, Role.CLINICIAN, 6),
        ]

    async def record(self, store) -> None:
        await store.append(self.client_stream, self.client_events(), 0)
        await store.append(self.goal_stream, self.goal_events(), 0)


async def stream_rows(conn: asyncpg.Connection, stream_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT *, tx_id::text::bigint AS tx FROM events WHERE stream_id = $1 ORDER BY version",
                            stream_id)


class Rewrite:
    """Rewrite stored events behind the trigger's back, as someone holding the database could,
    optionally recomputing every digest and hash so the chain is consistent again; undo() restores."""

    def __init__(self, owner: asyncpg.Connection, stream_id: str) -> None:
        self.owner = owner
        self.stream_id = stream_id
        self.saved: list[asyncpg.Record] = []
        self.head: asyncpg.Record | None = None

    async def __aenter__(self) -> Rewrite:
        self.saved = list(await self.owner.fetch("SELECT * FROM events WHERE stream_id = $1 ORDER BY version",
                                                 self.stream_id))
        self.head = await self.owner.fetchrow("SELECT * FROM streams WHERE stream_id = $1", self.stream_id)
        await self.owner.execute("SET session_replication_role = replica")
        return self

    async def change_payload(self, version: int, payload: bytes, *, recompute: bool) -> None:
        await self.owner.execute("UPDATE events SET payload = $3 WHERE stream_id = $1 AND version = $2",
                                 self.stream_id, version, payload)
        if recompute:
            await self.recompute()

    async def truncate(self, keep: int) -> None:
        await self.owner.execute("DELETE FROM events WHERE stream_id = $1 AND version > $2", self.stream_id, keep)
        await self.recompute()

    async def recompute(self) -> None:
        prev = GENESIS_HASH
        version = 0
        for row in await stream_rows(self.owner, self.stream_id):
            digest = content_digest(
                event_id=row["event_id"], stream_id=row["stream_id"], version=row["version"], type_name=row["type"],
                schema_version=row["schema_version"], tenant_id=row["tenant_id"], subject_id=row["subject_id"],
                actor_id=row["actor_id"], actor_role=row["actor_role"], occurred_at=row["occurred_at"],
                correlation_id=row["correlation_id"], causation_id=row["causation_id"], key_id=row["key_id"],
                hash_scheme=row["hash_scheme"], payload=row["payload"], secret=row["secret"])
            prev = chain_hash(prev, digest, row["position"], row["tx"], row["recorded_at"])
            version = row["version"]
            await self.owner.execute("UPDATE events SET digest = $3, hash = $4 WHERE stream_id = $1 AND version = $2",
                                     self.stream_id, row["version"], digest, prev)
        await self.owner.execute("UPDATE streams SET version = $2, head_hash = $3 WHERE stream_id = $1",
                                 self.stream_id, version, prev)

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.owner.execute("DELETE FROM events WHERE stream_id = $1", self.stream_id)
            if self.saved:
                columns = list(self.saved[0].keys())
                await self.owner.executemany(
                    f"INSERT INTO events ({', '.join(columns)}) "
                    f"VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
                    [tuple(r.values()) for r in self.saved])
            if self.head is not None:
                await self.owner.execute("UPDATE streams SET version = $2, head_hash = $3 WHERE stream_id = $1",
                                         self.stream_id, self.head["version"], self.head["head_hash"])
        finally:
            await self.owner.execute("SET session_replication_role = origin")
