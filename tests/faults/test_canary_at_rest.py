"""Trial: a canary in a live client's goal statement, looked for where an attacker with the
disks, a backup or a replica would look: ``pg_dump`` of the whole database and every byte of
the cluster's data directory, ``pg_wal`` included (after a CHECKPOINT and a WAL switch, so
what is written is on disk), plus the service's and PostgreSQL's logs and every file in the
service's ``ALLIANCE_HOME`` (anchors, erasure ledger, keys).

Promise: personal text is never at rest in plain text, in the events or anywhere else
(read models, history, change feed, stored responses), so destroying the key erases it from
WAL, backups and replicas as well.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.faults.world import active_goal, canary, enrol_client, eventually


async def test_no_personal_text_at_rest_in_dump_data_directory_or_logs(service, clinic, http, cluster) -> None:
    client_id = await enrol_client(clinic, http)
    text = canary()
    await active_goal(clinic, http, client_id, f"Call my sister {text}")
    url = service.url

    async def projected() -> bool:  # the live plan (the read model, not an as-of replay) shows it
        r = await http.get(f"{url}/clients/{client_id}/plan", headers=clinic.headers("clinician"))
        ready = await http.get(url + "/ready")
        return r.status_code == 200 and text in r.text and ready.status_code == 200

    assert await eventually(projected, within=15), "the projection did not catch up within 15 s"
    conn = await asyncpg.connect(cluster.dsn("alliance"), timeout=10)
    try:
        await conn.execute("CHECKPOINT")
        await conn.fetchval("SELECT pg_switch_wal()")
        tables = await _tables_holding(conn, text)
    finally:
        await conn.close()

    needle = text.encode()
    hexed = needle.hex().encode()  # how pg_dump writes bytea: the text is there, hex-encoded
    dump = await asyncio.to_thread(cluster.dump, "alliance")
    dump_hits = dump.count(needle) + dump.count(hexed)
    files = await asyncio.to_thread(cluster.files)
    hit_files = await asyncio.to_thread(lambda: [p for p in files if needle in p.read_bytes()])
    logs = [service.log, cluster.log]
    hit_logs = [p for p in logs if p.exists() and needle in p.read_bytes()]
    # ALLIANCE_HOME: anchors, the erasure ledger, signing keys, fingerprints (and the log above)
    home = [p for p in service.home.rglob("*") if p.is_file() and p not in logs]
    hit_home = [str(p.relative_to(service.home)) for p in home if needle in p.read_bytes()]
    data = cluster.data
    print(f"\n[canary at rest] pg_dump bytes={len(dump)} hits={dump_hits} "
          f"(plain {dump.count(needle)}, hex {dump.count(hexed)}) tables={tables}; data directory "
          f"files scanned={len(files)} files with hits={len(hit_files)} "
          f"{sorted(_where(p, data) for p in hit_files)[:12]}; logs with hits={[p.name for p in hit_logs]}; "
          f"ALLIANCE_HOME files scanned={len(home)} with hits={hit_home}")
    assert dump_hits == 0, f"pg_dump holds the text in {tables}"
    assert not hit_files, f"{len(hit_files)} data-directory files hold the text: {[_where(p, data) for p in hit_files]}"
    assert not hit_logs, f"logs hold the text: {hit_logs}"
    assert not hit_home, f"files in ALLIANCE_HOME hold the text: {hit_home}"


async def _tables_holding(conn: asyncpg.Connection, text: str) -> list[str]:
    """Which tables hold the text (every column cast to text; bytea shows as hex), for the report."""
    found = []
    hexed = text.encode().hex()
    for row in await conn.fetch("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
                                "('pg_catalog', 'information_schema')"):
        name = f'"{row["schemaname"]}"."{row["tablename"]}"'
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {name} t WHERE strpos(t::text, $1) > 0 "
                                f"OR strpos(t::text, $2) > 0)", text, hexed):
            found.append(f"{row['schemaname']}.{row['tablename']}")
    return sorted(found)


def _where(path: Path, data: Path) -> str:
    return str(path.relative_to(data))
