"""Failed authentication is limited per client address: 429 with Retry-After, only failures count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from alliance.api.app import create_app
from alliance.api.auth import FailureWindow, TooManyFailedAuthentications
from tests.api.conftest import Api, api_settings, running
from tests.api.support import assert_problem

LIMIT = 3


@pytest.fixture(scope="module")
async def limited(database, tmp_path_factory) -> AsyncIterator[Api]:
    settings = msgspec.structs.replace(api_settings(database, tmp_path_factory.mktemp("alliance-limit")),
                                       auth_failures_per_minute=LIMIT)
    app = create_app(settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 1)),
                                               base_url="http://alliance.test") as http:
        yield Api(http, settings, app)


async def test_failed_authentications_from_one_address_are_answered_429(limited):
    api = limited
    clinic = await api.clinic()
    good = api.token(clinic.tenant, "admin", clinic.admin)
    for _ in range(50):  # valid tokens never count
        assert (await api.http.get("/staff", headers=good)).status_code == 200
    bad = {"Authorization": "Bearer not.a.token"}
    for _ in range(LIMIT):
        assert_problem(await api.http.get("/staff", headers=bad), 401)
    r = await api.http.get("/staff", headers=bad)
    problem = assert_problem(r, 429, "too_many_failed_authentications")
    assert 1 <= int(r.headers["retry-after"]) <= 61, r.headers
    assert "retry" in problem["detail"]
    # Blocked means blocked: a right guess now would be refused too, so a guesser learns nothing.
    assert_problem(await api.http.get("/staff", headers=good), 429)
    assert_problem(await api.http.get("/staff"), 429)  # no token at all
    # Another address is not affected.
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app, client=("203.0.113.9", 1)),
                              base_url="http://alliance.test")
    async with other:
        assert (await other.get("/staff", headers=good)).status_code == 200
        assert_problem(await other.get("/staff", headers=bad), 401)


def test_the_window_slides():
    now = [1000.0]
    window = FailureWindow(2, clock=lambda: now[0])
    window.record("a")
    now[0] += 30
    window.record("a")
    with pytest.raises(TooManyFailedAuthentications) as limited:
        window.check("a")
    assert limited.value.retry_after == 31  # until the first failure leaves the last minute
    window.check("b")
    now[0] += 30.5  # the first failure is now older than a minute
    window.check("a")
    window.record("a")
    with pytest.raises(TooManyFailedAuthentications):
        window.check("a")
    now[0] += 61
    window.check("a")
