"""The reminder suites run on a database of their own: the reminder runner and the dispatcher
take advisory locks and follow the whole store, which the shared database's suites must not see."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from alliance.api.app import create_app
from tests.api.conftest import Api, api_settings, running
from tests.conftest import own_database
from tests.notifications.support import SmtpServer

database, app_pool = own_database("alliance_remind")


@pytest.fixture(scope="session")
async def remind_api(database, tmp_path_factory) -> AsyncIterator[Api]:
    """The app without its own runners: each test starts the runner and dispatcher it observes."""
    settings = api_settings(database, tmp_path_factory.mktemp("alliance-remind-home"))
    app = create_app(settings, run_projections=False)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as client:
        yield Api(client, settings, app)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
