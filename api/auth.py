"""Bearer JWTs: who is calling, for which clinic, in which role.

Two kinds of token. **Alliance's own** (HS256 with ``ALLIANCE_JWT_SECRET``, 32 bytes or more):
claims ``sub`` (the staff member's or the client's id), ``tenant``, ``role``, ``exp``.
**An OpenID Connect provider's** (``ALLIANCE_OIDC_ISSUER``): RS256/ES256, keys from the
issuer's discovery document, ``iss``, ``aud``, ``exp`` and ``nbf`` checked; the token names
only the IdP's own subject, and tenant, role and Alliance id come from Alliance's link record
for (``iss``, ``sub``) (``core/identity_links.py``), never from claims the IdP may not carry.
With OIDC configured, HS256 tokens are refused (outside development mode).

There is no built-in secret: outside development mode (``ALLIANCE_ENV=development`` or
``serve --demo``, where a random secret is made up and kept in the home) the service refuses
to start without a secret or an issuer. Staff who were deactivated are refused even with a
token that is still valid. Failed authentications are counted per client address.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException

from alliance.core.errors import AllianceError, ConfigurationError, Forbidden
from alliance.core.identity import Actor, Role
from alliance.core.logging import get_logger
from alliance.core.settings import Settings

log = get_logger("alliance.auth")

API_ROLES = (Role.CLIENT, Role.PROXY, Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)
STAFF_ROLES = (Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)
MIN_SECRET_BYTES = 32
#: Clock skew tolerated between the identity provider and this server (exp, nbf, iat).
LEEWAY_SECONDS = 30
OIDC_ALGORITHMS = ["RS256", "ES256"]


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


# --- the signing secret ------------------------------------------------------------------------

def development_mode(settings: Settings) -> bool:
    return settings.env == "development"


def signing_secret(settings: Settings) -> str | None:
    """The HS256 secret in force, or ``None`` when only OIDC tokens are accepted.

    Raises ``ConfigurationError`` (naming the variable) for a short secret, or for neither a
    secret nor an issuer outside development mode.
    """
    if settings.jwt_secret is not None:
        if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"ALLIANCE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                                     f"(it has {len(settings.jwt_secret.encode())})",
                                     code="jwt_secret_too_short", field="ALLIANCE_JWT_SECRET")
        return settings.jwt_secret
    if development_mode(settings):
        return development_secret(settings.home)
    if settings.oidc_issuer:
        return None
    raise ConfigurationError("set ALLIANCE_JWT_SECRET (32 bytes or more) or ALLIANCE_OIDC_ISSUER "
                             "(or ALLIANCE_ENV=development for a local trial)",
                             code="no_token_secret", field="ALLIANCE_JWT_SECRET")


def check_auth_settings(settings: Settings) -> None:
    """Everything start-up must refuse about authentication, as one ``ConfigurationError``."""
    if settings.oidc_issuer and not settings.oidc_audience:
        raise ConfigurationError("ALLIANCE_OIDC_AUDIENCE must be set with ALLIANCE_OIDC_ISSUER (the client id "
                                 "the identity provider puts in `aud`)", field="ALLIANCE_OIDC_AUDIENCE")
    if settings.auth_failures_per_minute < 1:
        raise ConfigurationError("ALLIANCE_AUTH_FAILURES_PER_MINUTE must be a whole number of at least 1",
                                 field="ALLIANCE_AUTH_FAILURES_PER_MINUTE")
    signing_secret(settings)


def development_secret(home: Path) -> str:
    """A random secret made up once and kept in ``home/keys/jwt-secret`` (0600), so a dev server's
    workers and ``alliance token`` share it. Created with a hard link from a private temporary
    file: of several workers starting at once, exactly one file wins and all read it."""
    path = home / "keys" / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".jwt-secret.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.urlsafe_b64encode(os.urandom(48)).decode())
        try:
            os.link(tmp, path)
            log.warning("development_token_secret_created", path=str(path))
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def issue_token(settings: Settings, *, tenant: UUID, role: Role, sub: UUID, ttl_seconds: int = 8 * 3600) -> str:
    """An Alliance token (HS256 with the configured, or in development the home's, secret)."""
    secret = signing_secret(settings)
    if secret is None:
        raise ConfigurationError("tokens come from the identity provider (ALLIANCE_OIDC_ISSUER); set "
                                 "ALLIANCE_JWT_SECRET to issue Alliance tokens", field="ALLIANCE_JWT_SECRET")
    now = int(time.time())
    claims = {"sub": str(sub), "tenant": str(tenant), "role": str(role), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


# --- OpenID Connect ----------------------------------------------------------------------------

def subject_hash(issuer: str, subject: str) -> bytes:
    """What Alliance stores of an IdP account: a hash of (iss, sub), never the subject itself."""
    return hashlib.sha256(b"alliance oidc subject\x00" + issuer.encode() + b"\x00" + subject.encode()).digest()


class OidcKeys:
    """The issuer's signing keys, found through its discovery document.

    PyJWKClient keeps the key set and fetches it again when a token names a ``kid`` it does not
    hold (the provider rotated its keys), at most once per ``refresh_cooldown`` seconds, so a
    flood of tokens with made-up ``kid``s cannot turn into a flood of requests to the provider.
    Its fetches block, so they run in a thread.
    """

    def __init__(self, issuer: str, *, timeout: float = 5.0, refresh_cooldown: float = 30.0) -> None:
        self.issuer = issuer
        self._timeout = timeout
        self._cooldown = refresh_cooldown
        self._client: jwt.PyJWKClient | None = None

    def _discover(self) -> jwt.PyJWKClient:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=self._timeout) as response:
            document = json.loads(response.read())
        if document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for.
            raise jwt.InvalidIssuerError("the discovery document names another issuer")
        return jwt.PyJWKClient(str(document["jwks_uri"]), cache_jwk_set=True, lifespan=3600,
                               timeout=int(self._timeout), cooldown_duration=self._cooldown)

    def _key(self, token: str) -> Any:
        if self._client is None:
            self._client = self._discover()
        return self._client.get_signing_key_from_jwt(token).key

    async def key_for(self, token: str) -> Any:
        return await asyncio.to_thread(self._key, token)


@dataclass(frozen=True)
class LinkedAccount:
    tenant_id: UUID
    principal_id: UUID
    role: Role


#: Finds the Alliance account linked to a subject hash (``api/routes/identity.py``'s table).
LinkLookup = Callable[[bytes], Awaitable[LinkedAccount | None]]


# --- failed-authentication limit ---------------------------------------------------------------

class TooManyFailedAuthentications(AllianceError):
    code = "too_many_failed_authentications"
    status = 429


class FailureWindow:
    """Failed authentications per client address over the last minute (a sliding window).

    In-process on purpose: Litestar's ``RateLimitConfig`` counts every request, and only
    failures should count (a busy clinic's valid tokens must never be throttled). Each worker
    counts its own, so N workers allow at most N times the limit: still a hard bound on guessing.
    Bounded: the least recently failing addresses are forgotten first.
    """

    WINDOW = 60.0
    MAX_ADDRESSES = 50_000

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        cutoff = self._clock() - self.WINDOW
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def check(self, address: str) -> None:
        failures = self._recent(address)
        if failures is not None and len(failures) >= self.limit:
            wait = max(1, int(failures[0] + self.WINDOW - self._clock()) + 1)
            error = TooManyFailedAuthentications(
                f"too many failed authentications from this address; retry in {wait} s")
            error.retry_after = wait
            raise error

    def record(self, address: str) -> None:
        failures = self._recent(address) or deque()
        failures.append(self._clock())
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > self.MAX_ADDRESSES:
            self._failures.popitem(last=False)


# --- the verifier ------------------------------------------------------------------------------

class TokenVerifier:
    """Verifies bearer tokens, remembering recent ones until they expire.

    An Alliance token is immutable: once verified it stays valid until ``exp`` (deactivated
    staff are refused by a separate check on every request), so decoding it again on every
    request would only repeat the same answer at a tenth of a request's cost. For an OIDC token
    only the signature check is remembered: its link is looked up on every request, so an
    unlinking takes effect at once.
    """

    CACHE_SIZE = 10_000

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic,
                 key_refresh_cooldown: float = 30.0) -> None:
        check_auth_settings(settings)
        # With an identity provider, HS256 tokens are refused: whoever holds the shared secret
        # could otherwise bypass the IdP (development keeps both, so demo tokens still work).
        oidc_only = settings.oidc_issuer is not None and not development_mode(settings)
        self._secret = None if oidc_only else signing_secret(settings)
        self._issuer = settings.oidc_issuer
        self._audience = settings.oidc_audience
        self._oidc = OidcKeys(settings.oidc_issuer, refresh_cooldown=key_refresh_cooldown) \
            if settings.oidc_issuer else None
        #: Set in the lifespan (needs the pool); without it no OIDC token finds an account.
        self.links: LinkLookup | None = None
        self.failures = FailureWindow(settings.auth_failures_per_minute, clock=clock)
        self._verified: OrderedDict[str, tuple[Principal | bytes, float]] = OrderedDict()
        if self._secret is not None and development_mode(settings):
            log.warning("development_mode", detail="Alliance tokens signed with the secret kept in the home")

    async def authenticate(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        """The caller's principal; a failure counts against the caller's address."""
        address = connection.client.host if connection.client else "unknown"
        self.failures.check(address)
        try:
            return await self.verify(bearer_token(connection))
        except NotAuthorizedException:
            self.failures.record(address)
            raise

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            self._verified.move_to_end(token)
            held = cached[0]
        else:
            held, expires = await self._decode(token)
            self._verified[token] = (held, expires)
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        return held if isinstance(held, Principal) else await self._linked(held)

    async def subject(self, token: str) -> tuple[bytes, dict[str, Any]]:
        """An OIDC token's subject hash and claims (for redeeming an invitation: no link yet)."""
        if self._oidc is None:
            raise NotAuthorizedException("no identity provider is configured (ALLIANCE_OIDC_ISSUER)")
        claims = await self._oidc_claims(token)
        return subject_hash(str(claims["iss"]), str(claims["sub"])), claims

    async def _linked(self, hashed: bytes) -> Principal:
        found = await self.links(hashed) if self.links is not None else None
        if found is None:
            raise NotAuthorizedException("this account is not linked to anyone in Alliance (redeem an invitation)")
        return Principal(id=found.principal_id, tenant_id=found.tenant_id, role=found.role)

    async def _oidc_claims(self, token: str) -> dict[str, Any]:
        assert self._oidc is not None
        try:
            if jwt.get_unverified_header(token).get("alg") not in OIDC_ALGORITHMS:
                raise NotAuthorizedException("the identity provider's tokens are signed with RS256 or ES256")
            key = await self._oidc.key_for(token)
            return jwt.decode(token, key, algorithms=OIDC_ALGORITHMS, issuer=self._issuer, audience=self._audience,
                              leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]})
        except (jwt.PyJWTError, OSError, ValueError, KeyError) as exc:
            raise NotAuthorizedException(f"the bearer token is not valid ({type(exc).__name__})") from None

    async def _decode(self, token: str) -> tuple[Principal | bytes, float]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise NotAuthorizedException(f"the bearer token is not valid ({type(exc).__name__})") from None
        if algorithm != "HS256" or self._secret is None:
            if self._oidc is None:
                raise NotAuthorizedException("the bearer token is not valid (Alliance tokens are HS256)")
            claims = await self._oidc_claims(token)
            return subject_hash(str(claims["iss"]), str(claims["sub"])), float(claims["exp"])
        try:
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
