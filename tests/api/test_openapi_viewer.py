"""/schema renders with no network: every script, style and link the page names is this
server's own (the vendored Redoc bundle) and is served; nothing points at a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

from alliance.api.openapi_viewer import ASSETS, REDOC_VERSION


class Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if tag in {"script", "link", "img", "iframe"} and found.get(name) is not None:
                self.urls.append(str(found[name]))


async def test_schema_viewer_loads_only_same_origin_files_and_they_are_served(api):
    r = await api.http.get("/schema")
    assert r.status_code == 200, r.text
    page = r.text
    parser = Resources()
    parser.feed(page)
    assert parser.urls, page
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"/schema loads {url} from elsewhere"
        asset = await api.http.get(url)
        assert asset.status_code == 200, f"{url}: {asset.status_code}"
        assert len(asset.content) > 100_000, url  # the bundle itself, not an error page
    assert not re.search(r"https?://(?!json-schema\.org)[^\s\"'<>]*\.(?:js|css|woff2?)\b", page), page
    assert "Redoc.init" in page and '"PlanView"' in page  # the document is in the page: no fetch needed
    js = await api.http.get(parser.urls[0])
    assert js.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert js.text.startswith("/*! For license information please see redoc.standalone.js.LICENSE.txt */")
    # the pinned bundle, and the licences it names beside it
    assert f'Version: "{REDOC_VERSION}"' in (ASSETS / "redoc.standalone.js.LICENSE.txt").read_text()
    assert "MIT" in (ASSETS / "LICENSE").read_text()


async def test_the_document_the_viewer_reads_is_served(api):
    r = await api.http.get("/schema/openapi.json")
    assert r.status_code == 200
    assert r.json()["components"]["schemas"]["PlanView"]["properties"]["goals"]
