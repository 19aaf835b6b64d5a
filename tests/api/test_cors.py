"""CORS: a page on an origin named in ``ALLIANCE_CORS_ORIGINS`` may call the API from a browser;
any other origin gets no ``Access-Control-Allow-Origin`` (the browser then refuses to hand the
answer to the page). Driven through the real app on the test database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from alliance.api.app import create_app
from alliance.core.errors import ConfigurationError
from alliance.core.settings import load_settings
from tests.api.conftest import JWT_SECRET, KEK, Api, running

ALLOWED = "https://app.clinic.example"
ALSO_ALLOWED = "http://localhost:5173"
REFUSED = "https://evil.example"


@pytest.fixture(scope="module")
async def cors_api(database, tmp_path_factory) -> AsyncIterator[Api]:
    # Read from the environment as a deployment would (the variable, not a constructor argument).
    settings = load_settings({
        "DATABASE_URL": database.owner_dsn, "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET,
        "ALLIANCE_HOME": str(tmp_path_factory.mktemp("alliance-cors")), "ALLIANCE_LOG_LEVEL": "warning",
        "ALLIANCE_AUTH_FAILURES_PER_MINUTE": "1000000",
        "ALLIANCE_CORS_ORIGINS": f"{ALLOWED}, {ALSO_ALLOWED}",
    })
    app = create_app(settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as client:
        yield Api(client, settings, app)


def preflight(origin: str, method: str = "POST",
              headers: str = "authorization, content-type, idempotency-key") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_preflight_from_an_allowed_origin_is_answered_and_cached(cors_api):
    for origin in (ALLOWED, ALSO_ALLOWED):
        r = await cors_api.http.options("/clients/" + str(uuid.uuid4()) + "/measurements", headers=preflight(origin))
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-max-age"] == "600"
        assert "Origin" in r.headers["vary"]
        methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST"} <= methods and "DELETE" not in methods
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key", "if-match", "last-event-id"} <= allowed
        # credentials mode is not needed (the bearer token is a header, not a cookie), so not offered
        assert "access-control-allow-credentials" not in r.headers
    # every header the API reads is accepted in a preflight
    r = await cors_api.http.options("/goals/" + str(uuid.uuid4()) + "/barriers", headers=preflight(
        ALLOWED, headers="Authorization, Content-Type, Idempotency-Key, If-Match, Last-Event-ID"))
    assert r.status_code == 204, r.text


async def test_an_origin_not_on_the_list_gets_no_allow_origin(cors_api, clinic_of):
    clinic, client_id = clinic_of
    for origin in (REFUSED, "https://app.clinic.example.evil.example", "http://app.clinic.example",
                   "https://app.clinic.example:8443", "null"):
        r = await cors_api.http.options("/clients", headers=preflight(origin))
        assert "access-control-allow-origin" not in r.headers, (origin, r.headers)
        assert r.status_code >= 400, (origin, r.status_code)
        # an actual request (a simple GET needs no preflight) is answered, but not shared with the page
        r = await cors_api.http.get(f"/clients/{client_id}/plan",
                                    headers={**cors_api.token(clinic.tenant, "client", client_id), "Origin": origin})
        assert r.status_code == 200, r.text
        assert "access-control-allow-origin" not in r.headers, (origin, r.headers)


async def test_an_actual_request_from_an_allowed_origin_exposes_the_api_headers(cors_api, clinic_of):
    clinic, client_id = clinic_of
    me = {**cors_api.token(clinic.tenant, "client", client_id), "Origin": ALLOWED}
    r = await cors_api.http.post(f"/clients/{client_id}/goals", json={"text": "Sleep before midnight"},
                                 headers={**me, "Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "location", "idempotent-replayed", "retry-after"} <= exposed
    assert "etag" in r.headers and "location" in r.headers  # the headers a page needs are there to read
    # a problem is shared with the page too, so it can read `code`
    r = await cors_api.http.get(f"/clients/{uuid.uuid4()}/plan", headers=me)
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == ALLOWED


async def test_no_origins_by_default(api):
    r = await api.http.options("/clients", headers=preflight(ALLOWED))
    assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers


@pytest.mark.parametrize("value", [
    "*", "https://*.clinic.example", "https://app.clinic.example/path", "https://app.clinic.example/app/",
    "app.clinic.example", "ftp://app.clinic.example", "https://app.clinic.example?x=1", "https://user@app.example",
    "https://app.clinic.example:99999", "https://", "https://app.clinic.example,*"])
def test_bad_origins_are_refused_in_one_line(value):
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"ALLIANCE_CORS_ORIGINS": value})
    message = str(caught.value)
    assert caught.value.field == "ALLIANCE_CORS_ORIGINS"
    assert "\n" not in message and "ALLIANCE_CORS_ORIGINS" in message and "scheme://host[:port]" in message


def test_origins_are_read_normalised():
    settings = load_settings({"ALLIANCE_CORS_ORIGINS": " HTTPS://App.Clinic.Example:443 ,http://127.0.0.1:8080,"})
    assert settings.cors_origins == ("https://app.clinic.example", "http://127.0.0.1:8080")
    assert load_settings({"ALLIANCE_CORS_ORIGINS": ""}).cors_origins == ()
    assert load_settings({}).cors_origins == ()


@pytest.fixture(scope="module")
async def clinic_of(cors_api) -> Any:
    clinic = await cors_api.clinic()
    return clinic, await cors_api.enrolled_client(clinic)
