"""A small OpenID Connect provider a browser can sign in with: the test issuer's discovery
document and keys (tests/api/oidc_issuer.py) plus an authorization endpoint that approves the
subject the test names (no login form) and a token endpoint that checks the PKCE verifier
(RFC 7636, S256) before it hands out an RS256 token. Answers carry
``Access-Control-Allow-Origin`` for the web app's origin, as a real provider configured for a
single-page app does."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.api.oidc_issuer import AUDIENCE, Issuer

CLIENT_ID = "alliance-web"


@dataclass
class Provider:
    issuer: Issuer
    app_origin: str = ""
    #: The account the next authorization request signs in (the test's choice: no login form).
    next_subject: str | None = None
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Token requests answered, and refused (a wrong verifier, code, client or redirect).
    exchanged: int = 0
    refused: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.issuer.url


def _b64url_sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


@contextmanager
def running_provider() -> Iterator[Provider]:
    provider = Provider(Issuer(url=""))

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.headers.get("Origin") == provider.app_origin:
                self.send_header("Access-Control-Allow-Origin", provider.app_origin)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # the name http.server calls
            parts = urlsplit(self.path)
            if parts.path == "/.well-known/openid-configuration":
                self._send(200, {"issuer": provider.url, "jwks_uri": provider.url + "/jwks",
                                 "authorization_endpoint": provider.url + "/authorize",
                                 "token_endpoint": provider.url + "/token",
                                 "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
                                 "id_token_signing_alg_values_supported": ["RS256"]})
            elif parts.path == "/jwks":
                self._send(200, provider.issuer.jwks())
            elif parts.path == "/authorize":
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                ok = (q.get("response_type") == "code" and q.get("client_id") == CLIENT_ID
                      and q.get("code_challenge_method") == "S256" and q.get("code_challenge")
                      and q.get("redirect_uri", "").startswith(provider.app_origin + "/")
                      and provider.next_subject)
                if not ok:
                    provider.refused.append("authorize")
                    self._send(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                                        "sub": provider.next_subject or ""}
                target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
                self._send(302, None, {"Location": target})
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # the name http.server calls
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != "/token":
                self._send(404, {"error": "not_found"})
                return
            grant = provider.codes.pop(form.get("code", ""), None)  # a code works once
            if (grant is None or form.get("grant_type") != "authorization_code" or form.get("client_id") != CLIENT_ID
                    or form.get("redirect_uri") != grant["redirect_uri"]
                    or _b64url_sha256(form.get("code_verifier", "")) != grant["challenge"]):
                provider.refused.append("token")
                self._send(400, {"error": "invalid_grant"})
                return
            provider.exchanged += 1
            token = provider.issuer.token(grant["sub"], aud=AUDIENCE)
            self._send(200, {"access_token": token, "id_token": token, "token_type": "Bearer", "expires_in": 600},
                       {"Cache-Control": "no-store"})

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    provider.issuer.rotate()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
