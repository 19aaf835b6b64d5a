"""The notification suites run on a database of their own: a dispatcher takes an advisory lock
and follows the whole store, which the shared database's other suites must not disturb."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from alliance.api.app import create_app
from tests.api.conftest import Api, api_settings, running
from tests.conftest import own_database
from tests.notifications.support import SmtpServer

database, app_pool = own_database("alliance_notify")


@pytest.fixture(scope="session")
async def notify_api(database, tmp_path_factory) -> AsyncIterator[Api]:
    """The app without its own runners: each test starts the dispatchers it means to observe."""
    settings = api_settings(database, tmp_path_factory.mktemp("alliance-notify-home"))
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
