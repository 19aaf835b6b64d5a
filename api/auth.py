"""Bearer JWTs: who is calling, for which clinic, in which role.

Claims: ``sub`` (the staff member's or the client's id), ``tenant`` (the clinic),
``role`` (client, proxy, clinician, supervisor, auditor, admin), ``exp``. HS256
with a configured secret in development; RS256 through a JWKS URL in production.
Staff who were deactivated are refused even with a token that is still valid.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException

from alliance.core.errors import Forbidden
from alliance.core.identity import Actor, Role
from alliance.core.settings import Settings

API_ROLES = (Role.CLIENT, Role.PROXY, Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)
STAFF_ROLES = (Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)


@dataclass(frozen=True)
class Principal:
    id: UUID
    tenant_id: UUID
    role: Role

    @property
    def actor(self) -> Actor:
        return Actor(id=self.id, role=self.role)

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


def issue_token(settings: Settings, *, tenant: UUID, role: Role, sub: UUID, ttl_seconds: int = 8 * 3600) -> str:
    """A development token (HS256 with the configured secret)."""
    now = int(time.time())
    claims = {"sub": str(sub), "tenant": str(tenant), "role": str(role), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


class TokenVerifier:
    """Verifies bearer tokens, remembering recent ones until they expire.

    A token is immutable: once verified it stays valid until ``exp`` (deactivated staff are
    refused by a separate check on every request), so decoding it again on every request
    would only repeat the same answer at a tenth of a request's cost.
    """

    CACHE_SIZE = 10_000

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            self._verified.move_to_end(token)
            return cached[0]
        principal, expires = self._decode(token)
        self._verified[token] = (principal, expires)
        while len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            if self._jwks is not None:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                claims = jwt.decode(token, key, algorithms=["RS256"], options={"require": ["exp", "sub"]})
            else:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as exc:
            raise NotAuthorizedException(f"the bearer token is not valid ({type(exc).__name__})") from None
        try:
            role = Role(claims["role"])
            principal = Principal(id=UUID(str(claims["sub"])), tenant_id=UUID(str(claims["tenant"])), role=role)
        except (KeyError, ValueError):
            raise NotAuthorizedException("the token needs sub, tenant and role claims") from None
        if role not in API_ROLES:
            raise NotAuthorizedException("that role cannot use the API")
        return principal, float(claims["exp"])


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("send a bearer token: Authorization: Bearer <jwt>")
    return token.strip()


def require_role(principal: Principal, *roles: Role, action: str) -> None:
    if principal.role not in roles:
        allowed = ", ".join(str(r) for r in roles)
        raise Forbidden(f"{action} needs one of these roles: {allowed}", code="role_not_allowed")
