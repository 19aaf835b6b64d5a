"""The README's walkthrough, end to end through HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from alliance.api.demo import demo_id
from tests.api.conftest import free_port
from tests.database import create_test_database, drop_test_database


async def test_collaborative_goal_from_proposal_to_progress(api, clinic):
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)

    r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Walk the dog every morning"}, headers=me)
    assert r.status_code == 201, r.text
    goal_id = r.json()["created"]["goal_id"]
    assert r.headers["location"] == f"/goals/{goal_id}"

    r = await api.http.post(f"/goals/{goal_id}/reflections",
                            json={"reflection": "You'd like a morning walk with your dog, most days"}, headers=clin)
    assert r.status_code == 201, r.text
    r = await api.http.get(f"/goals/{goal_id}", headers=me)
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    etag = r.headers["etag"]
    for who in (me, clin):
        r = await api.http.post(f"/goals/{goal_id}/agreements", json={"version": version}, headers=who)
        assert r.status_code == 201, r.text
    r = await api.http.get(f"/goals/{goal_id}", headers=clin)
    assert r.json()["fhir_lifecycle_status"] == "active"
    assert r.headers["etag"] != etag

    # a stale If-Match is a 412 and records nothing
    r = await api.http.post(f"/goals/{goal_id}/milestones", json={"description": "Walk to the park"},
                            headers={**clin, "If-Match": etag})
    assert r.status_code == 412, r.text
    assert r.json()["code"] == "precondition_failed"

    observed = datetime.now(UTC) - timedelta(days=1)
    for total in (15, 8):
        answers = {f"item{i}": 0 for i in range(1, 10)}
        for i in range(1, 10):
            if sum(answers.values()) < total:
                answers[f"item{i}"] = min(3, total - sum(answers.values()))
        answers["item9"] = 0
        r = await api.http.post(f"/clients/{client_id}/measurements", json={
            "instrument_id": "phq9", "answers": answers, "observed_at": observed.isoformat(),
            "goal_ids": [goal_id]}, headers=me)
        assert r.status_code == 201, r.text
        observed += timedelta(hours=12)

    for _ in range(50):  # projections follow the store asynchronously
        r = await api.http.get(f"/clients/{client_id}/progress", headers=clin)
        assert r.status_code == 200, r.text
        if "15" in r.text and "8" in r.text:
            break
        await asyncio.sleep(0.1)
    r = await api.http.get(f"/clients/{client_id}/plan", headers=me)
    assert r.status_code == 200, r.text
    assert "Walk the dog every morning" in r.text
    assert r.json()["crisis_information"]["text"]  # the client is always shown where to get help
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    r = await api.http.post("/clinic/crisis-information", json={"text": "Call the clinic line, day or night",
                                                                "contacts": ["0000 000 000"]}, headers=admin)
    assert r.status_code == 201, r.text
    r = await api.http.get(f"/clients/{client_id}/plan", headers=me)
    assert r.json()["crisis_information"] == {"text": "Call the clinic line, day or night",
                                              "contacts": ["0000 000 000"]}
    r = await api.http.get(f"/clients/{client_id}/history", headers=clin)
    assert r.status_code == 200 and "goal.agreed" in r.text
    # ?goal_id= narrows the history, now and as of a moment alike
    other = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Call my sister on Sundays"},
                                headers=me)
    other_id = other.json()["created"]["goal_id"]
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    for query in ({"goal_id": goal_id}, {"goal_id": goal_id, "as_of": later}):
        r = await api.http.get(f"/clients/{client_id}/history", params=query, headers=clin)
        assert r.status_code == 200, r.text
        goals = {e["goal_id"] for e in r.json()["entries"] if e["goal_id"]}
        assert goals == {goal_id}, (query, goals)
    assert other_id != goal_id


async def test_post_staff_without_an_id_makes_one(api, clinic):
    """The README's new-clinic steps: `POST /staff` needs no invented UUID."""
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    r = await api.http.post("/staff", json={"role": "clinician"}, headers=admin)
    assert r.status_code == 201, r.text
    staff_id = r.json()["created"]["staff_id"]
    r = await api.http.get("/staff", headers=admin)
    assert {"staff_id": staff_id, "role": "clinician"} in r.json()["staff"]


# --- the README's walkthrough, as written, against `alliance serve --demo` ---------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough_commands() -> list[str]:
    """The shell commands of the README's walkthrough block (continuation lines joined)."""
    text = README.read_text()
    section = text[text.index("## Five-minute walkthrough"):]
    block = section[section.index("```bash\n") + len("```bash\n"):section.index("\n```", section.index("```bash"))]
    commands, pending = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def exports(output: str) -> dict[str, str]:
    """The variables of the `export` lines the demo printed."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                name, _, value = word.partition("=")
                found[name] = value
    return found


@pytest.fixture
def demo_server(tmp_path):
    """`alliance serve --demo` as the README runs it (no secret set: the demo is development mode)."""
    _admin, owner, _app = asyncio.run(create_test_database("alliance_walk"))
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_") and k != "DATABASE_URL"}
    env.update({"ALLIANCE_HOME": str(tmp_path / "home"), "DATABASE_URL": owner, "TERM": "dumb", "COLUMNS": "80"})
    with log.open("w") as sink:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("alliance")), "serve", "--demo", "--port",
                                 str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise AssertionError("the demo server did not start: " + log.read_text())
        yield log.read_text(), port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        asyncio.run(drop_test_database(_admin, owner))


def read_until(stream: subprocess.Popen[bytes], done: Any, seen: str = "", timeout: float = 30) -> str:
    """What the background curl printed, read until ``done(text)`` (asserted within ``timeout``)."""
    assert stream.stdout is not None
    fd = stream.stdout.fileno()
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
    assert done(seen), seen
    return seen


def test_the_readme_walkthrough_answers_as_the_readme_says(demo_server):
    output, port = demo_server
    assert "\x1b[" not in output, "the demo's output is coloured when not on a terminal"
    assert f"Alliance on http://127.0.0.1:{port}  (OpenAPI viewer: http://127.0.0.1:{port}/schema)" in output
    variables = exports(output)
    assert {"B", "C", "BEFORE", "T", "K", "A", "U"} <= set(variables), output
    assert variables["B"] == f"http://127.0.0.1:{port}"
    for name in ("T", "K", "A", "U"):  # every token whole on its line: pasted, it works
        assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", variables[name]), variables[name]
    env = {**os.environ, **variables}
    commands = walkthrough_commands()
    assert not any("alliance serve" in cmd for cmd in commands), "the walkthrough starts a second server"

    def sh(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True, text=True,
                              timeout=60)

    checked = set()
    stream = None
    try:
        for cmd in commands:
            if cmd.endswith("&") or " & " in cmd:  # the live stream: run it in the background
                stream = subprocess.Popen(["bash", "-c", cmd.split("&")[0]], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
                seen = read_until(stream, lambda text: text.count("data:") >= 1)  # the view at connection
                checked.add("stream")
                continue
            result = sh(cmd)
            assert result.returncode == 0, (cmd, result.stderr)
            body = json.loads(result.stdout)
            assert not (isinstance(body, dict) and isinstance(body.get("status"), int) and body["status"] >= 400), \
                (cmd, body)
            if "/plan?as_of=" in cmd:
                goals = {goal["goal_id"]: goal for goal in body["goals"]}
                walk = goals[str(demo_id("goal:robin:walk"))]
                assert walk["status"] != "active", walk  # before both agreed
                checked.add("plan_as_of")
            elif "/history?as_of=" in cmd:
                types = {entry["type"] for entry in body["entries"]}
                assert "goal.proposed" in types and "goal.agreed" not in types, types
                checked.add("history_as_of")
            elif cmd.split("|")[0].rstrip().endswith("/plan"):
                assert "Walk the dog for 20 minutes on 5 mornings a week" in result.stdout
                walk = next(goal for goal in body["goals"] if goal["goal_id"] == str(demo_id("goal:robin:walk")))
                assert walk["status"] == "active", walk
                checked.add("plan")
            elif cmd.split("|")[0].rstrip().endswith("/progress"):
                assert "phq9" in result.stdout and "mood_diary" in result.stdout
                checked.add("progress")
            elif "/measurements" in cmd:
                assert body["created"]["measurement_id"], body
                checked.add("measurement")
        assert checked == {"plan", "progress", "history_as_of", "plan_as_of", "stream", "measurement"}, checked
        assert stream is not None
        seen = read_until(stream, lambda text: text.count("data:") >= 2, seen)  # then the one after the entry
    finally:
        if stream is not None:
            stream.kill()
            stream.wait()
