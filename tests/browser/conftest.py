"""Browser tests: the reference web app (``/app/``) and a page on another origin, driven in
headless Chromium (Debian's ``/usr/bin/chromium`` through the PyPI ``playwright`` package;
``pip install -e '.[browser]'``) against ``alliance serve --demo`` run as a real server
subprocess on a fresh database (``DATABASE_URL``, or the embedded server).

Not collected by a bare ``pytest`` (the default test paths skip this folder unless it is named
on the command line): ``.venv/bin/pytest -q -p no:cacheprovider tests/browser`` runs them, once
in ``.ci/run``. Chromium runs with ``--no-sandbox`` because CI runs as root. Screenshots of every
page at desktop (1280x800) and phone (390x844) size are written to ``docs/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.api.oidc_issuer import AUDIENCE
from tests.browser.oidc_provider import CLIENT_ID, Provider, running_provider
from tests.database import create_test_database, drop_test_database
from tests.faults.cluster import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCREENSHOTS = REPO / "docs" / "screenshots"
AXE = HERE / "vendor" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.11.0"
CHROMIUM = os.environ.get("ALLIANCE_CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: Seconds the demo server has to answer /health (migrations, the demo load, two imports).
START_TIMEOUT = 240.0


def _requested(config: pytest.Config) -> bool:
    """True when an argument on the command line names this folder or something inside it."""
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
        try:
            path.resolve().relative_to(HERE)
        except ValueError:
            continue
        return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and not _requested(config):
        return True
    return None


@dataclass
class Site:
    """A tiny static server on its own port: a page on another origin."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                                      "--directory", str(HERE / "site")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        _wait(lambda: httpx.get(self.origin + "/index.html", timeout=2).status_code == 200, 20, "static site")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class Server:
    url: str
    log: Path
    allowed: Site
    refused: Site
    provider: Provider
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    def headers(self, label: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.people[label]['token']}"}

    def id(self, label: str) -> str:
        return str(self.people[label]["id"])

    def admin_headers(self) -> dict[str, str]:
        """The demo clinic's admin for calls made beside a page: a development token signed with
        the secret the server keeps in its home, made afresh on each call."""
        from alliance.api.demo import ADMIN, TENANT

        now = int(time.time())
        secret = (self.log.parent / "keys" / "jwt-secret").read_text().strip()
        claims = {"sub": str(ADMIN), "tenant": str(TENANT), "role": "admin", "iat": now, "exp": now + 600}
        return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def _wait(check: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}: {log.read_text()[-3000:] if log else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not answer within {timeout} s: {log.read_text()[-3000:] if log else ''}")


@pytest.fixture(autouse=True)
def _no_leader_left_running() -> Iterator[None]:
    """Overrides the suite-wide async fixture of this name (tests/conftest.py): these tests start
    no background leader in this process (the server is a subprocess), and an async fixture
    cannot run inside the event loop that the sync Playwright API keeps running."""
    yield


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    """The clinic's identity provider for the production sign-in (authorization code + PKCE)."""
    with running_provider() as p:
        yield p


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[Server]:
    admin, owner, _app = asyncio.run(create_test_database("alliance_browser"))
    home = tmp_path_factory.mktemp("alliance-browser-home")
    allowed, refused = Site(free_port()), Site(free_port())
    port = free_port()
    log = home / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_") and k != "DATABASE_URL"}
    env.update({"ALLIANCE_HOME": str(home), "DATABASE_URL": owner, "TERM": "dumb",
                "ALLIANCE_CORS_ORIGINS": allowed.origin, "ALLIANCE_LOG_LEVEL": "warning",
                # development keeps the demo's own tokens working beside the provider's
                "ALLIANCE_OIDC_ISSUER": provider.url, "ALLIANCE_OIDC_AUDIENCE": AUDIENCE,
                "ALLIANCE_OIDC_CLIENT_ID": CLIENT_ID,
                # a clinic's own instrument with a Dutch translation (tests/browser/plugins/)
                "ALLIANCE_PLUGINS_DIR": str(HERE / "plugins")})
    env.pop("PYTEST_CURRENT_TEST", None)
    with log.open("w") as sink:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("alliance")), "serve", "--demo", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    provider.app_origin = url
    try:
        _wait(lambda: httpx.get(url + "/health", timeout=2).status_code == 200, START_TIMEOUT, "alliance serve --demo",
              proc, log)
        allowed.start()
        refused.start()
        people = httpx.get(url + "/app/dev-sign-in", timeout=10).json()["people"]
        yield Server(url, log, allowed, refused, provider, {p["label"]: p for p in people})
    finally:
        for site in (allowed, refused):
            site.stop()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        asyncio.run(drop_test_database(admin, owner))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page with what went wrong on it collected: script errors and CSP refusals."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                if msg.type == "error" and "Content Security Policy" in msg.text else None)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """``open_page(viewport=DESKTOP)``: a page in a fresh context (its own memory: tokens are
    kept in memory only, so each context signs in on its own); closed after the test."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP) -> Watched:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        return Watched(context.new_page())

    yield make
    for context in contexts:
        context.close()


def sign_in(watched: Watched, server: Server, label: str) -> Any:
    page = watched.page
    page.goto(server.url + "/app/")
    page.get_by_role("button", name=label, exact=False).first.click()
    page.wait_for_selector("main h1")
    return page


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core (vendored, pinned) on the page as it is: the serious and critical violations.
    The script is evaluated through the DevTools protocol, which the page's CSP does not govern
    (the page itself may load nothing from elsewhere)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    assert page.evaluate("axe.version") == AXE_VERSION  # the vendored copy, not nothing
    result = page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def check_pages(page: Any, pages: Any, size: str, viewport: dict[str, int]) -> dict[str, Any]:
    """Open each ``(name, hash, ready selector)`` of ``pages`` in the signed-in ``page``: its
    screenshot ``<name>-<size>``, nothing wider than a phone's screen, and the serious or critical
    axe violations found, by page name."""
    found: dict[str, Any] = {}
    for name, where, ready in pages:
        page.evaluate(f"location.hash = {where!r}")
        page.locator(ready).wait_for(timeout=15_000)
        if violations := axe_violations(page):
            found[name] = violations
        screenshot(page, f"{name}-{size}")
        if size == "phone":
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], name
    return found


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
