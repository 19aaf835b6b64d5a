"""CORS: which other origins' pages may call the API from a browser (``ALLIANCE_CORS_ORIGINS``).

Only the named origins (none by default) get ``Access-Control-Allow-Origin``; a browser hands
any other origin's page nothing. Credentials mode is not offered: a page authenticates with a
bearer token in the ``Authorization`` header (and a stream ticket for EventSource), never with
cookies, so there is nothing for another site to ride on.
"""

from __future__ import annotations

from litestar.config.cors import CORSConfig

from alliance.core.settings import Settings

#: The methods the API's routes use.
METHODS = ["GET", "POST"]
#: What a page sends: the token, JSON bodies, a retry key, a goal's ETag, a stream's resume
#: point (EventSource sends ``Last-Event-ID`` itself), and a request id for support.
REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "Last-Event-ID", "X-Request-ID"]
#: What a page may read back beyond the CORS-safelisted ones.
EXPOSED_HEADERS = ["ETag", "Location", "Idempotent-Replayed", "Retry-After", "X-Request-ID"]
#: Seconds a browser may reuse a preflight's answer (Chromium caps it at 7200, Firefox at 86400).
PREFLIGHT_MAX_AGE = 600


def cors_config(settings: Settings) -> CORSConfig | None:
    """Litestar's CORS handling for the allow-list, or ``None`` (no CORS headers at all)."""
    if not settings.cors_origins:
        return None
    return CORSConfig(allow_origins=list(settings.cors_origins), allow_methods=list(METHODS),  # type: ignore[arg-type]
                      allow_headers=list(REQUEST_HEADERS), expose_headers=list(EXPOSED_HEADERS),
                      allow_credentials=False, max_age=PREFLIGHT_MAX_AGE)
