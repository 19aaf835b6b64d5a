"""Trial: ``kill -9`` of the whole server while the reminder process is deciding and the
dispatcher is mailing reminders, then a restart.

Setup, as a clinic does it over HTTP: clients with an agreed goal and a weekly PHQ-9 starting
today (in a time zone where it is past the 09:00 reminder time now), each with an address; the
service mails through a real SMTP server in this process. Halfway through the setup the server
is killed (the reminders of the clients just set up are being decided and sent), started
again, and the setup goes on.

Promise: every administration gets exactly one ``reminder.scheduled`` and one ``reminder.sent``
(no reminder lost, none decided twice), every client receives their reminder, and a repeat
email (the crash between the SMTP server's acceptance and the attempt being recorded) carries
the same Message-ID, so it is the same message.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg

from tests.faults.service import Service
from tests.faults.world import active_goal, bootstrap_clinic, enrol_client, until
from tests.notifications.support import SmtpServer

CLIENTS = 12
KILL_AFTER = 6
DELIVERY_SECONDS = 30.0


def afternoon_zone() -> tuple[str, str]:
    """A fixed-offset zone where it is about 13:00 now, and today's date there."""
    hour = datetime.now(UTC).hour
    offset = ((13 - hour + 12) % 24) - 12
    name = f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-3 is three hours ahead of UTC
    return name, datetime.now(ZoneInfo(name)).date().isoformat()


async def test_reminders_survive_kill_9_with_none_lost_or_decided_twice(cluster, workdir, http) -> None:
    smtp = SmtpServer()
    smtp.start()
    service = Service(cluster.create_database("alliance_reminders"), workdir / "reminders",
                      extra_env={"ALLIANCE_SMTP_HOST": "127.0.0.1", "ALLIANCE_SMTP_PORT": str(smtp.port),
                                 "ALLIANCE_SMTP_TLS": "none", "ALLIANCE_SMTP_FROM": "alliance@trial.example",
                                 "ALLIANCE_PUBLIC_URL": "https://alliance.trial.example"})
    zone, today = afternoon_zone()
    addresses: dict[uuid.UUID, str] = {}
    killed_after = restarted_in = None
    started = time.monotonic()
    service.start()
    try:
        clinic = await bootstrap_clinic(service, http)
        for n in range(CLIENTS):
            client = await enrol_client(clinic, http)
            goal = await active_goal(clinic, http, client, "Feel steadier in the mornings")
            r = await http.post(f"{service.url}/goals/{goal}/measures", headers=clinic.headers("clinician"), json={
                "instrument_id": "phq9",
                "schedule": {"kind": "every", "interval": 1, "unit": "weeks", "start": today, "timezone": zone}})
            assert r.status_code == 201, r.text
            addresses[client] = f"trial-{n}-{uuid.uuid4().hex[:6]}@home.example"
            r = await http.post(f"{service.url}/clients/{client}/reminder-contact", json={"email": addresses[client]},
                                headers=clinic.client_headers(client))
            assert r.status_code == 201, r.text
            if n + 1 == KILL_AFTER:
                # the reminders of the clients just set up are being decided and mailed right now
                killed_after = len(smtp.inbox.messages)
                service.kill()
                t = time.monotonic()
                service.start()
                restarted_in = time.monotonic() - t
        delivered = await until(lambda: all(smtp.inbox.to(a) for a in addresses.values()), within=DELIVERY_SECONDS)
        conn = await asyncpg.connect(cluster.dsn("alliance_reminders"), timeout=10)
        try:
            rows = await conn.fetch("SELECT type, subject_id, payload FROM events WHERE type = ANY($1::text[])",
                                    ["reminder.scheduled", "reminder.sent"])
        finally:
            await conn.close()
    finally:
        service.stop()
        smtp.stop()
    scheduled: dict[uuid.UUID, int] = {c: 0 for c in addresses}
    sent: dict[uuid.UUID, int] = {c: 0 for c in addresses}
    for row in rows:
        if row["subject_id"] in addresses:
            (scheduled if row["type"] == "reminder.scheduled" else sent)[row["subject_id"]] += 1
    mails = {c: [m["Message-ID"] for m in smtp.inbox.to(a)] for c, a in addresses.items()}
    repeats = sum(len(ids) - len(set(ids)) for ids in mails.values())
    print(f"\n[reminder kill] {CLIENTS} clients, killed after {KILL_AFTER} set up ({killed_after} emails then), "
          f"restarted in {restarted_in:.1f}s; delivered to all: {delivered}; "
          f"scheduled per client {sorted(set(scheduled.values()))}, sent per client {sorted(set(sent.values()))}, "
          f"emails {sum(len(v) for v in mails.values())} (repeats with the same Message-ID: {repeats}); "
          f"trial {time.monotonic() - started:.1f}s")
    assert delivered, {str(c): len(v) for c, v in mails.items() if not v}
    assert set(scheduled.values()) == {1}, "a reminder was lost or decided twice"
    assert set(sent.values()) == {1}, "a reminder's sending was lost or recorded twice"
    assert all(len(set(ids)) == 1 for ids in mails.values()), "a client got two different reminder messages"
    assert all(len(ids) <= 2 for ids in mails.values()), mails
