"""The API viewer at ``/schema``: Redoc, pinned and vendored in the package (no CDN, works offline).

Redoc 2.5.4's standalone bundle (MIT, ``api/static/openapi/LICENSE``; the licences of what it
bundles in ``redoc.standalone.js.LICENSE.txt``) is one self-contained file: styles are in the
script, and nothing is fetched at run time but the document itself. Litestar's plugin would
add Google Fonts and a favicon from a CDN: both are turned off, so every URL the page loads is
this server's. To upgrade: ``npm pack redoc@<version>``, copy ``bundles/redoc.standalone.js``,
its ``.LICENSE.txt`` and ``LICENSE`` here, and change :data:`REDOC_VERSION`.
"""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import RedocRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

REDOC_VERSION = "2.5.4"
ASSETS = Path(__file__).parent / "static" / "openapi"
#: Where the bundle is served; the version is in the path, so it may be cached for long.
ASSETS_PATH = f"/schema/viewer/redoc-{REDOC_VERSION}"


def viewer_plugin() -> RedocRenderPlugin:
    """Redoc at ``/schema`` (the OpenAPI config's path), loading only this server's files."""
    return RedocRenderPlugin(path="/", js_url=f"{ASSETS_PATH}/redoc.standalone.js", google_fonts=False,
                             favicon="")


def viewer_files() -> Router:
    """The vendored bundle and its licences, public (the viewer needs no token)."""
    return create_static_files_router(path=ASSETS_PATH, directories=[ASSETS], include_in_schema=False,
                                      cache_control=CacheControlHeader(max_age=7 * 86400, public=True),
                                      name="openapi-viewer")
