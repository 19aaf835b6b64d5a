"""The app as deployed: its lifespan runs the dispatcher beside the projection runner, with the
SMTP channel configured by ``ALLIANCE_SMTP_*`` settings. Only HTTP and a real SMTP server here:
a client's PHQ-9 with item 9 > 0 ends as an email in the primary clinician's inbox (observed
failure 3 of issue 13: "after a flag is raised, nobody is told")."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest

from alliance.api.app import create_app
from tests.api.conftest import Api, api_settings, running
from tests.conftest import own_database
from tests.notifications.support import SmtpServer, answer_phq9, care_team, eventually

# Its own database: the app's dispatcher leads there, and no test dispatcher competes with it.
database, app_pool = own_database("alliance_notify_app")


@pytest.fixture(scope="module")
def inbox_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def app_api(database, inbox_server, tmp_path_factory) -> AsyncIterator[Api]:
    settings = msgspec.structs.replace(
        api_settings(database, tmp_path_factory.mktemp("alliance-notify-app")),
        smtp_host="127.0.0.1", smtp_port=inbox_server.port, smtp_tls="none",
        smtp_from="alliance@lifespan.example", public_url="https://alliance.lifespan.example")
    app = create_app(settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as client:
        yield Api(client, settings, app)


async def test_the_served_app_emails_the_primary_clinician_when_a_flag_is_raised(app_api, inbox_server) -> None:
    team = await care_team(app_api)
    started = time.perf_counter()
    await answer_phq9(app_api, team, item9=1)
    mails = await eventually(lambda: inbox_server.inbox.to(team.email(team.primary)), within=15,
                             what="the primary clinician's email")
    print(f"\nPHQ-9 POST -> email accepted by the SMTP server: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert len(mails) == 1
    body = str(mails[0].get_payload(decode=True).decode())
    assert "A risk flag needs attention." in body
    assert f"https://alliance.lifespan.example/clients/{team.client}/plan" in body
    assert "phq" not in body.lower() and "phq" not in mails[0]["Subject"].lower()
    assert mails[0]["From"] == "alliance@lifespan.example"
