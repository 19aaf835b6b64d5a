"""A small OpenID Connect issuer for tests: a discovery document and a JWKS served over real HTTP
(stdlib ``http.server`` in a thread), and RS256 tokens signed with ``cryptography`` keys it can rotate."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "alliance-test-client"


@dataclass
class Issuer:
    url: str
    keys: list[tuple[str, rsa.RSAPrivateKey]] = field(default_factory=list)
    #: How often the JWKS was fetched (a rotation must show as one more fetch).
    jwks_fetches: int = 0

    def rotate(self) -> str:
        """A new signing key (the old one leaves the JWKS): later tokens name its ``kid``."""
        kid = uuid.uuid4().hex[:12]
        self.keys = [(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))]
        return kid

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys:
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(self, sub: str, *, aud: str | None = AUDIENCE, iss: str | None = None, ttl: int = 600,
              nbf: float | None = None, key: rsa.RSAPrivateKey | None = None, kid: str | None = None,
              **extra: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iss": iss or self.url, "iat": now, "exp": now + ttl, **extra}
        if aud is not None:
            claims["aud"] = aud
        if nbf is not None:
            claims["nbf"] = int(nbf)
        own_kid, own_key = self.keys[0]
        return jwt.encode(claims, key or own_key, algorithm="RS256", headers={"kid": kid or own_kid})

    def bearer(self, sub: str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token(sub, **kwargs)}


@contextmanager
def running_issuer() -> Iterator[Issuer]:
    issuer = Issuer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"]}
            elif self.path == "/jwks":
                issuer.jwks_fetches += 1
                body = issuer.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    issuer.rotate()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
