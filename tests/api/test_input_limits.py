"""Bounded input, named errors: every refusal is a problem with a stable code (and the field at fault),
comes before anything is written, and leaves the store exactly as it was."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from alliance.api.app import create_app
from alliance.api.input_limits import DEFAULT_BODY_BYTES, LABEL, MAX_DEPTH, MAX_ITEMS, NOTE, STATEMENT
from alliance.core.settings import Settings
from alliance.core.smart import FACETS
from tests.api.support import active_goal, assert_problem, phq9

_APP = create_app(Settings(database_url="postgresql://unused/unused", kek=base64.b64encode(bytes(range(32))).decode(),
                           home=Path("/nonexistent"), jwt_secret="collection-only-" * 3))
OPENAPI = _APP.openapi_schema.to_schema()


class Store:
    """Events and Idempotency-Key claims, counted: a refusal must change neither."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def counts(self) -> tuple[int, int | None, int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            row = await conn.fetchrow("SELECT count(*), max(position) FROM events")
            keys = await conn.fetchval("SELECT count(*) FROM idempotency_keys")
            return int(row[0]), row[1], int(keys)
        finally:
            await conn.close()


@pytest.fixture
async def store(database) -> AsyncIterator[Store]:
    yield Store(database.owner_dsn)


@pytest.fixture
async def client(api, clinic) -> tuple[uuid.UUID, dict[str, str]]:
    client_id = await api.enrolled_client(clinic)
    return client_id, api.token(clinic.tenant, "client", client_id)


def keyed(headers: dict[str, str]) -> dict[str, str]:
    """The caller's headers with a fresh Idempotency-Key: a refusal must not leave a claim behind."""
    return {**headers, "Idempotency-Key": f"limits-{uuid.uuid4()}"}


async def refused(store: Store, send: Callable[[], Any], status: int, code: str,
                  field: str | None = None) -> dict[str, Any]:
    before = await store.counts()
    r: httpx.Response = await send()
    body = assert_problem(r, status, code)
    if field is not None:
        assert body.get("field") == field, body
    assert await store.counts() == before, "a refused request changed the store"
    return body


# --- observed: a 9.5 MB goal statement, 1 MB facets and pace text ---------------------------------

async def test_a_huge_goal_statement_is_413_before_it_is_read_whole(api, client, store):
    client_id, me = client
    body = msgspec.json.encode({"text": "x" * 9_500_000})
    problem = await refused(store, lambda: api.http.post(
        f"/clients/{client_id}/goals", content=body, headers={**keyed(me), "content-type": "application/json"}),
        413, "body_too_large")
    assert problem["extra"]["limit_bytes"] < 1_000_000, problem


@pytest.mark.parametrize("field", ["facets", "pace"])
async def test_megabyte_facets_and_pace_are_413(api, client, store, field):
    client_id, me = client
    value: Any = {"specific": "y" * 1_000_000} if field == "facets" else "y" * 1_000_000
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/goals",
                                               json={"text": "Walk", field: value}, headers=keyed(me)),
                  413, "body_too_large")


@pytest.mark.parametrize(("body", "field"), [
    ({"text": "x" * (STATEMENT + 1)}, "text"),
    ({"text": "Walk", "pace": "p" * (LABEL + 1)}, "pace"),
    ({"text": "Walk", "facets": {"specific": "s" * (STATEMENT + 1)}}, "facets"),
    ({"text": "Walk", "facets": {"k" * (LABEL + 1): "s"}}, "facets"),
])
async def test_a_text_over_its_limit_is_422_too_long_naming_the_field(api, client, store, body, field):
    client_id, me = client
    problem = await refused(store, lambda: api.http.post(f"/clients/{client_id}/goals", json=body,
                                                         headers=keyed(me)), 422, "too_long")
    assert problem["field"].split("[")[0] == field, problem
    assert "x" * 50 not in str(problem) and "s" * 50 not in str(problem), "the text must not be echoed"


async def test_texts_at_their_limits_are_accepted_in_any_script(api, client):
    client_id, me = client
    astral = "\N{DOG}"  # 4 bytes in UTF-8: the worst case a route's body limit must still admit
    body = {"text": astral * STATEMENT, "pace": astral * LABEL,
            "facets": {facet: astral * STATEMENT for facet in FACETS if facet != "time_bound"}}
    r = await api.http.post(f"/clients/{client_id}/goals", json=body, headers=me)
    assert r.status_code == 201, r.text[:500]
    goal_id = r.json()["created"]["goal_id"]
    r = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "line one\n\tline two"}, headers=me)
    assert r.status_code == 201, r.text
    # a body that needs more than the default gets a larger limit, derived from its fields' limits
    plan = {name: [astral * STATEMENT] * MAX_ITEMS for name in ("warning_signs", "actions", "supports")}
    assert len(msgspec.json.encode(plan)) > DEFAULT_BODY_BYTES
    r = await api.http.post(f"/clients/{client_id}/relapse-plan", json=plan, headers=me)
    assert r.status_code == 201, r.text[:500]


async def test_a_note_may_be_longer_than_a_statement(api, clinic, store):
    client_id = await api.enrolled_client(clinic)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    r = await api.http.post(f"/clients/{client_id}/notes", json={"text": "n" * NOTE}, headers=clin)
    assert r.status_code == 201, r.text[:300]
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/notes", json={"text": "n" * (NOTE + 1)},
                                               headers=keyed(clin)), 422, "too_long", "text")


async def test_lists_and_answer_maps_are_bounded(api, client, store):
    client_id, me = client
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/relapse-plan",
                                               json={"warning_signs": ["late"] * 1000}, headers=keyed(me)),
                  422, "too_many_items", "warning_signs")
    answers = {**phq9(), **{f"extra{i}": 1 for i in range(1000)}}
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "phq9", "answers": answers, "observed_at": datetime.now(UTC).isoformat()},
        headers=keyed(me)), 422, "too_many_items", "answers")
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "phq9", "answers": {**phq9(), "item1": "t" * 100_000},
        "observed_at": datetime.now(UTC).isoformat()}, headers=keyed(me)), 422, "too_long")


# --- observed: NUL bytes in text fields --------------------------------------------------------------

@pytest.mark.parametrize(("path", "body", "field"), [
    ("goals", {"text": "Walk\x00the dog"}, "text"),
    ("goals", {"text": "Walk", "pace": "daily\x1b[31m"}, "pace"),
    ("goals", {"text": "Walk", "facets": {"specific": "a\x00b"}}, "facets"),
    ("relapse-plan", {"warning_signs": ["ok", "bell\x07"]}, "warning_signs[1]"),
    ("feedback", {"text": "fine\r\x7f"}, "text"),
])
async def test_control_characters_are_422_naming_the_field(api, client, store, path, body, field):
    client_id, me = client
    problem = await refused(store, lambda: api.http.post(f"/clients/{client_id}/{path}", json=body,
                                                         headers=keyed(me)), 422, "control_characters")
    assert problem["field"] == field or problem["field"].split("[")[0] == field, problem
    assert "regex" not in problem["detail"], problem


async def test_control_characters_in_goal_routes_too(api, clinic, store):
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = api.token(clinic.tenant, "client", client_id)
    await refused(store, lambda: api.http.post(f"/goals/{goal_id}/barriers", json={"text": "rain\x00"},
                                               headers=keyed(me)), 422, "control_characters", "text")
    await refused(store, lambda: api.http.post(f"/goals/{goal_id}/status", json={
        "action": "pause", "reason": "x\x00"}, headers=keyed(me)), 422, "control_characters", "reason")


# --- observed: JSON as text/plain, form, multipart, XML, or with no Content-Type ----------------------

@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
    "text/xml", None, "application/json; charset=latin-1", "application/jsonx",
])
async def test_json_bodies_only_as_application_json(api, client, store, content_type):
    client_id, me = client
    headers = keyed(me) if content_type is None else {**keyed(me), "content-type": content_type}
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/goals", content=b'{"text": "Walk"}',
                                               headers=headers), 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
async def test_json_media_types_are_accepted(api, client, content_type):
    client_id, me = client
    r = await api.http.post(f"/clients/{client_id}/goals", content=b'{"text": "Walk"}',
                            headers={**me, "content-type": content_type})
    assert r.status_code == 201, r.text


# --- observed: JSON nested 10,000 deep -------------------------------------------------------------

@pytest.mark.parametrize(("depth", "closed"), [(MAX_DEPTH + 1, True), (10_000, True), (10_000, False)])
async def test_deep_json_is_400_too_deep(api, client, store, depth, closed):
    client_id, me = client
    body = b'{"text": "Walk", "facets": ' + b"[" * depth + (b"]" * depth + b"}" if closed else b"")
    problem = await refused(store, lambda: api.http.post(
        f"/clients/{client_id}/goals", content=body, headers={**keyed(me), "content-type": "application/json"}),
        400, "too_deep")
    assert problem["extra"]["max_depth"] == MAX_DEPTH


async def test_brackets_inside_strings_do_not_count_as_depth(api, client):
    client_id, me = client
    r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "[[[[" * 100 + '\\"{{{' * 50},
                            headers=me)
    assert r.status_code == 201, r.text


# --- observed: a measurement observed in year 0001 ---------------------------------------------------

@pytest.mark.parametrize("observed_at", ["0001-01-01T00:00:00+00:00", "1899-12-31T23:59:59Z",
                                         "0001-01-01T00:00:00+14:00"])
async def test_a_measurement_observed_before_1900_is_refused(api, client, store, observed_at):
    client_id, me = client
    await refused(store, lambda: api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "phq9", "answers": phq9(), "observed_at": observed_at}, headers=keyed(me)),
        422, "time_out_of_range", "observed_at")


async def test_due_dates_may_be_years_ahead_but_not_absurd(api, client, store):
    client_id, me = client
    r = await api.http.post(f"/clients/{client_id}/goals",
                            json={"text": "Retire", "due_date": (date.today() + timedelta(days=365 * 30)).isoformat()},
                            headers=me)
    assert r.status_code == 201, r.text
    goal_id = r.json()["created"]["goal_id"]
    for when in ("9999-12-31", "2201-01-01", "0001-01-01"):
        await refused(store, lambda when=when: api.http.post(f"/clients/{client_id}/goals", json={
            "text": "Walk", "due_date": when}, headers=keyed(me)), 422, "time_out_of_range", "due_date")
    await refused(store, lambda: api.http.post(f"/goals/{goal_id}/milestones", json={
        "description": "Half way", "provisional_date": "3000-01-01"}, headers=keyed(me)),
        422, "time_out_of_range", "provisional_date")


# --- the schema says all of it ------------------------------------------------------------------------

def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _resolve(OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    return schema


def _propose_schema() -> dict[str, Any]:
    op = OPENAPI["paths"]["/clients/{client_id}/goals"]["post"]
    return _resolve(op["requestBody"]["content"]["application/json"]["schema"])


def _options(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a schema, each with the keywords stated beside its ``oneOf``
    (Litestar states an optional field's bounds there: they apply to the string arm)."""
    schema = _resolve(schema)
    options = schema.get("oneOf") or schema.get("anyOf")
    if not options:
        return [schema]
    shared = {k: v for k, v in schema.items() if k not in {"oneOf", "anyOf"}}
    return [{**o, **shared} for option in options for o in _options(option) if o.get("type") != "null"] \
        + [o for option in options for o in _options(option) if o.get("type") == "null"]


def test_openapi_states_max_length_for_goal_statement_fields():
    props = _propose_schema()["properties"]
    (text,) = _options(props["text"])
    assert text["maxLength"] == STATEMENT
    assert "pattern" in text
    (pace,) = [o for o in _options(props["pace"]) if o.get("type") == "string"]
    assert pace["maxLength"] == LABEL
    (facets,) = _options(props["facets"])
    assert facets["additionalProperties"]["maxLength"] == STATEMENT
    assert facets["propertyNames"]["maxLength"] == LABEL
    assert facets["maxProperties"] == MAX_ITEMS
    revise = _resolve(OPENAPI["components"]["schemas"]["ReviseGoalBody"])["properties"]
    for name in ("text", "pace"):
        assert [o["maxLength"] for o in _options(revise[name]) if o.get("type") == "string"] \
            == [STATEMENT if name == "text" else LABEL]


def _unbounded(schema: dict[str, Any], where: str, seen: set[str]) -> list[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
    found: list[str] = []
    for option in _options(schema):
        kind = option.get("type")
        if kind == "string" and "maxLength" not in option and "enum" not in option and "format" not in option:
            found.append(where)
        elif kind == "array":
            if "maxItems" not in option:
                found.append(where)
            found += _unbounded(option.get("items", {}), where + "[]", seen)
        elif kind == "object":
            if "properties" not in option and "maxProperties" not in option:
                found.append(where)
            for name, sub in option.get("properties", {}).items():
                found += _unbounded(sub, f"{where}.{name}", seen)
            extra = option.get("additionalProperties")
            if isinstance(extra, dict):
                found += _unbounded(extra, where + "{}", seen)
    return found


#: A receipt is checked as it was issued, never stored: the body limit and depth bound it.
UNBOUNDED_BY_DESIGN = {"POST /receipts/verify $.receipt"}


def test_every_text_and_collection_of_every_request_body_is_bounded():
    unbounded: list[str] = []
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                unbounded += [f"{method.upper()} {path} {w}" for w in _unbounded(schema, "$", set())]
    assert unbounded, "the walk found nothing at all"
    assert [u for u in unbounded if u not in UNBOUNDED_BY_DESIGN] == []


def test_every_body_route_has_a_body_limit():
    for route in _APP.routes:
        for handler in getattr(route, "route_handlers", ()):
            limit = handler.resolve_request_max_body_size()
            assert limit is not None and limit <= 1024 * 1024, (route.path, limit)
