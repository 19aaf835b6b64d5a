"""One settings object, read from the environment once, with defaults that work on a fresh machine."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from alliance.core.errors import ConfigurationError


def _default_home() -> Path:
    """Where Alliance keeps its local state (embedded database, keys, anchors).

    pgserver run as root loosens the permissions of every folder above its data
    directory, so as root we keep it in a dedicated place under /var/lib rather
    than inside a home or a checkout.
    """
    if explicit := os.environ.get("ALLIANCE_HOME"):
        return Path(explicit)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/alliance")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "alliance"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    #: Owner connection (runs migrations). Unset: an embedded PostgreSQL is started.
    database_url: str | None = None
    #: The least-privileged role the app connects as (created by the migrations).
    app_role: str = "alliance_app"
    #: Password for the app role, when the server does not trust local connections.
    app_role_password: str | None = None
    #: Home for local state; the embedded database lives in ``home/pgdata``.
    home: Path = msgspec.field(default_factory=_default_home)
    #: Database name used inside the embedded server.
    embedded_database: str = "alliance"
    #: Key-encryption key: a file holding 32 random bytes (base64), or the key itself.
    kek_file: Path | None = None
    kek: str | None = None
    log_format: str = "console"  # "json" in production
    log_level: str = "info"
    #: Origins (``scheme://host[:port]``) whose pages may call the API from a browser (CORS).
    #: None by default: a browser then refuses every cross-origin answer.
    cors_origins: tuple[str, ...] = ()
    plugins_dir: Path | None = None
    #: "development" lets the service make up its own token secret (kept in the home); any
    #: other value (the default, "production") needs ``jwt_secret`` or ``oidc_issuer``.
    env: str = "production"
    #: HS256 secret for bearer tokens (32 bytes or more). No built-in default: a public
    #: constant would let anyone mint an admin token for a deployment that forgot to set one.
    jwt_secret: str | None = None
    #: An OpenID Connect issuer: RS256/ES256 tokens verified with the keys its discovery
    #: document names, ``iss`` and ``aud`` checked, the person found by Alliance's own link.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    #: The web app's own client id at the issuer (public client, authorization code + PKCE).
    oidc_client_id: str | None = None
    #: Serve the reference web app at ``/app/`` ("off" to leave it out).
    web_app: bool = True
    #: Failed authentications one client address may make per minute before it is answered 429.
    auth_failures_per_minute: int = 20
    #: Where chain heads are anchored outside the database, and signing keys kept.
    anchor_dir: Path | None = None
    signing_key_dir: Path | None = None
    #: The erasure ledger lives outside the database, so a restore can re-apply erasures.
    erasure_ledger_dir: Path | None = None
    #: Seconds between two chain-head anchors written by the service (0: never).
    anchor_interval: float = 3600.0
    #: Seconds a worker may answer a client's own plan/progress read from its view cache
    #: (dropped at once when the change feed announces a change; 0: always read the database).
    view_cache_seconds: float = 10.0
    #: Hours an Idempotency-Key is remembered (retries later than that run as new requests).
    idempotency_hours: float = 24.0
    #: Outgoing mail for notifications (the built-in SMTP channel). No host: no email channel.
    smtp_host: str | None = None
    smtp_port: int = 25
    #: The sender address (its domain also names the message ids).
    smtp_from: str = "alliance@localhost"
    #: "none" (plain, local relay), "starttls" (upgrade on the submission port) or "tls" (implicit).
    smtp_tls: str = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: float = 20.0
    #: The address staff open Alliance at; notification links point there.
    public_url: str = "http://127.0.0.1:8000"
    #: Concurrent appends of one process share one statement and one commit (group commit,
    #: core/events/group_commit.py); off: every append is its own commit.
    group_commit: bool = True
    #: The signed webhook channel (``plugins/channels/webhook.py``): the clinic's HTTPS endpoint and its
    #: Standard Webhooks secret (``whsec_`` + base64 of 24+ random bytes). No URL: no webhook channel.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_timeout: float = 10.0
    #: Tries inside one delivery (exponential backoff with jitter) before the dispatcher retries later.
    webhook_attempts: int = 4
    #: Hours a one-time questionnaire link stays usable (at most 14 days).
    questionnaire_link_hours: float = 72.0
    #: "inline": each HTTP process also runs the background leaders (projections, notifications,
    #: reminders, alerts, anchors; one leads). "off": it only serves, and ``alliance projector`` runs them.
    background: str = "inline"
    #: Bearer token a Prometheus scraper sends to ``GET /metrics`` (32 characters or more); unset: no /metrics.
    metrics_token: str | None = None
    #: A hot standby of the same database for reads that tolerate bounded staleness (as-of views,
    #: exports, FHIR, rebuild and verify replays; core/events/replica.py). Unset: every read on the primary.
    replica_url: str | None = None
    #: Longest the standby may lag behind the primary before those reads go to the primary (seconds).
    replica_max_lag_seconds: float = 5.0

    @property
    def embedded_data_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def kek_path(self) -> Path:
        return self.kek_file or (self.home / "keys" / "kek")

    @property
    def anchor_path(self) -> Path:
        return self.anchor_dir or (self.home / "anchors")

    @property
    def erasure_ledger_path(self) -> Path:
        return self.erasure_ledger_dir or (self.home / "erasure-ledger")

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_dir or (self.home / "signing-keys")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read ``Settings`` from the environment (``ALLIANCE_*`` plus ``DATABASE_URL``)."""
    env = os.environ if environ is None else environ
    validate_environment(env)

    def path(name: str) -> Path | None:
        value = env.get(name)
        return Path(value) if value else None

    values: dict[str, object] = {
        "database_url": env.get("DATABASE_URL") or None,
        "app_role": env.get("ALLIANCE_APP_ROLE", "alliance_app"),
        "app_role_password": env.get("ALLIANCE_APP_ROLE_PASSWORD") or None,
        "kek_file": path("ALLIANCE_KEK_FILE"),
        "kek": env.get("ALLIANCE_KEK") or None,
        "log_format": env.get("ALLIANCE_LOG_FORMAT", "console"),
        "log_level": env.get("ALLIANCE_LOG_LEVEL", "info"),
        "cors_origins": tuple(_normal_origin(o) for o in _origins_in(env.get("ALLIANCE_CORS_ORIGINS", ""))),
        "plugins_dir": path("ALLIANCE_PLUGINS_DIR"),
        "env": env.get("ALLIANCE_ENV") or "production",
        "jwt_secret": env.get("ALLIANCE_JWT_SECRET") or None,
        "oidc_issuer": env.get("ALLIANCE_OIDC_ISSUER") or None,
        "oidc_audience": env.get("ALLIANCE_OIDC_AUDIENCE") or None,
        "oidc_client_id": env.get("ALLIANCE_OIDC_CLIENT_ID") or None,
        "web_app": env.get("ALLIANCE_WEB_APP", "on").lower() == "on",
        "auth_failures_per_minute": int(env.get("ALLIANCE_AUTH_FAILURES_PER_MINUTE", "20")),
        "anchor_dir": path("ALLIANCE_ANCHOR_DIR"),
        "signing_key_dir": path("ALLIANCE_SIGNING_KEY_DIR"),
        "erasure_ledger_dir": path("ALLIANCE_ERASURE_LEDGER_DIR"),
        "anchor_interval": float(env.get("ALLIANCE_ANCHOR_INTERVAL", "3600")),
        "view_cache_seconds": float(env.get("ALLIANCE_VIEW_CACHE_SECONDS", "10")),
        "idempotency_hours": float(env.get("ALLIANCE_IDEMPOTENCY_HOURS", "24")),
        "smtp_host": env.get("ALLIANCE_SMTP_HOST") or None,
        "smtp_port": int(env.get("ALLIANCE_SMTP_PORT", "25")),
        "smtp_from": env.get("ALLIANCE_SMTP_FROM", "alliance@localhost"),
        "smtp_tls": env.get("ALLIANCE_SMTP_TLS", "starttls"),
        "smtp_username": env.get("ALLIANCE_SMTP_USERNAME") or None,
        "smtp_password": env.get("ALLIANCE_SMTP_PASSWORD") or None,
        "smtp_timeout": float(env.get("ALLIANCE_SMTP_TIMEOUT", "20")),
        "public_url": env.get("ALLIANCE_PUBLIC_URL", "http://127.0.0.1:8000"),
        "group_commit": env.get("ALLIANCE_GROUP_COMMIT", "on").lower() == "on",
        "webhook_url": env.get("ALLIANCE_WEBHOOK_URL") or None,
        "webhook_secret": env.get("ALLIANCE_WEBHOOK_SECRET") or None,
        "webhook_timeout": float(env.get("ALLIANCE_WEBHOOK_TIMEOUT", "10")),
        "webhook_attempts": int(env.get("ALLIANCE_WEBHOOK_ATTEMPTS", "4")),
        "questionnaire_link_hours": float(env.get("ALLIANCE_QUESTIONNAIRE_LINK_HOURS", "72")),
        "background": env.get("ALLIANCE_BACKGROUND", "inline").lower(),
        "metrics_token": env.get("ALLIANCE_METRICS_TOKEN") or None,
        "replica_url": env.get("ALLIANCE_REPLICA_URL") or None,
        "replica_max_lag_seconds": float(env.get("ALLIANCE_REPLICA_MAX_LAG_SECONDS", "5")),
    }
    if home := env.get("ALLIANCE_HOME"):
        values["home"] = Path(home)
    return Settings(**values)  # type: ignore[arg-type]


# Validation: each variable's text is checked before anything is converted, so a bad value is
# one line naming the variable and what it may be (the CLI prints it and exits 2), never a
# ValueError from deep inside start-up. A rule answers None when the text is fine, else what
# is allowed.

def _number(*, minimum: float, inclusive: bool = True, unit: str) -> Callable[[str], str | None]:
    allowed = (f"a number of {unit}, {minimum:g} or more" if inclusive
               else f"a number of {unit} greater than {minimum:g}")

    def rule(text: str) -> str | None:
        try:
            value = float(text)
        except ValueError:
            return allowed
        ok = math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
        return None if ok else allowed
    return rule


def _integer(low: int, high: int, what: str) -> Callable[[str], str | None]:
    def rule(text: str) -> str | None:
        try:
            value = int(text)
        except ValueError:
            return f"{what} from {low} to {high}"
        return None if low <= value <= high else f"{what} from {low} to {high}"
    return rule


def _one_of(*choices: str, fold: bool = False) -> Callable[[str], str | None]:
    def rule(text: str) -> str | None:
        return None if (text.lower() if fold else text) in choices else "one of " + ", ".join(choices)
    return rule


def _url(*schemes: str) -> Callable[[str], str | None]:
    def rule(text: str) -> str | None:
        scheme, sep, rest = text.partition("://")
        ok = bool(sep) and scheme.lower() in schemes and bool(rest)
        return None if ok else "a URL starting " + " or ".join(f"{s}://" for s in schemes)
    return rule


_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?", re.IGNORECASE)
_DEFAULT_PORT = {"http": "80", "https": "443"}


def _origins_in(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _normal_origin(origin: str) -> str:
    """An origin as a browser sends it in ``Origin``: lower case, no default port (CORS compares
    the text exactly, so ``https://App.example:443`` would otherwise never match)."""
    found = _ORIGIN.fullmatch(origin)
    assert found is not None  # validated before it is read
    scheme, host, port = found.group(1).lower(), found.group(2).lower(), found.group(3)
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORT[scheme] else "")


def _origins(text: str) -> str | None:
    # "*" is refused, not translated: with bearer tokens in pages, "any origin" would let every
    # site a user visits read what that user's token can get; each origin is named instead.
    for origin in _origins_in(text):
        found = _ORIGIN.fullmatch(origin)
        if found is None or (found.group(3) is not None and not 0 < int(found.group(3)) < 65536):
            return ("comma-separated origins, each scheme://host[:port] (http or https, no path, no *: name "
                    "every origin, e.g. https://app.clinic.example,http://localhost:5173)")
    return None


def _kek(text: str) -> str | None:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    return None if len(key) == 32 else "32 random bytes, base64-encoded (make one with: openssl rand -base64 32)"


def _directory(*, must_exist: bool) -> Callable[[str], str | None]:
    def rule(text: str) -> str | None:
        p = Path(text)
        if p.exists():
            return None if p.is_dir() else "a directory (this is a file)"
        return "an existing directory" if must_exist else None
    return rule


def _file(text: str) -> str | None:
    return "a file (this is a directory)" if Path(text).is_dir() else None


def _link_hours(text: str) -> str | None:
    allowed = "a number of hours greater than 0 and at most 336 (14 days)"
    try:
        value = float(text)
    except ValueError:
        return allowed
    return None if math.isfinite(value) and 0 < value <= 336 else allowed


def _metrics_token(text: str) -> str | None:
    ok = len(text) >= 32 and text.isprintable() and " " not in text
    return None if ok else "32 characters or more, no spaces (make one with: openssl rand -hex 32)"


def _role(text: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", text) is not None
    return None if ok else "a PostgreSQL role name (letters, digits, _; at most 63)"


#: Values never repeated in an error message (they are secrets, or may carry a password).
_SECRET = frozenset({"ALLIANCE_KEK", "DATABASE_URL", "ALLIANCE_APP_ROLE_PASSWORD", "ALLIANCE_SMTP_PASSWORD",
                     "ALLIANCE_JWT_SECRET", "ALLIANCE_WEBHOOK_SECRET", "ALLIANCE_METRICS_TOKEN",
                     "ALLIANCE_REPLICA_URL"})

RULES: dict[str, Callable[[str], str | None]] = {
    "DATABASE_URL": _url("postgresql", "postgres"),
    "ALLIANCE_APP_ROLE": _role,
    "ALLIANCE_HOME": _directory(must_exist=False),
    "ALLIANCE_KEK": _kek,
    "ALLIANCE_KEK_FILE": _file,
    "ALLIANCE_LOG_FORMAT": _one_of("console", "json"),
    "ALLIANCE_LOG_LEVEL": _one_of("debug", "info", "warning", "error", "critical", fold=True),
    "ALLIANCE_CORS_ORIGINS": _origins,
    "ALLIANCE_PLUGINS_DIR": _directory(must_exist=True),
    "ALLIANCE_ANCHOR_DIR": _directory(must_exist=False),
    "ALLIANCE_SIGNING_KEY_DIR": _directory(must_exist=False),
    "ALLIANCE_ERASURE_LEDGER_DIR": _directory(must_exist=False),
    "ALLIANCE_ANCHOR_INTERVAL": _number(minimum=0, unit="seconds"),
    "ALLIANCE_VIEW_CACHE_SECONDS": _number(minimum=0, unit="seconds"),
    "ALLIANCE_IDEMPOTENCY_HOURS": _number(minimum=0, inclusive=False, unit="hours"),
    "ALLIANCE_SMTP_PORT": _integer(1, 65535, "a port number"),
    "ALLIANCE_SMTP_TLS": _one_of("starttls", "tls", "none"),
    "ALLIANCE_SMTP_TIMEOUT": _number(minimum=0, inclusive=False, unit="seconds"),
    "ALLIANCE_PUBLIC_URL": _url("http", "https"),
    "ALLIANCE_AUTH_FAILURES_PER_MINUTE": _integer(1, 1_000_000, "a whole number"),
    "ALLIANCE_GROUP_COMMIT": _one_of("on", "off", fold=True),
    "ALLIANCE_WEB_APP": _one_of("on", "off", fold=True),
    "ALLIANCE_WEBHOOK_URL": _url("https", "http"),
    "ALLIANCE_WEBHOOK_TIMEOUT": _number(minimum=0, inclusive=False, unit="seconds"),
    "ALLIANCE_WEBHOOK_ATTEMPTS": _integer(1, 10, "a whole number"),
    "ALLIANCE_QUESTIONNAIRE_LINK_HOURS": _link_hours,
    "ALLIANCE_BACKGROUND": _one_of("inline", "off", fold=True),
    "ALLIANCE_METRICS_TOKEN": _metrics_token,
    "ALLIANCE_REPLICA_URL": _url("postgresql", "postgres"),
    "ALLIANCE_REPLICA_MAX_LAG_SECONDS": _number(minimum=0, inclusive=False, unit="seconds"),
}

#: Variables where an empty value means "unset" (the loader reads them with ``or None``).
_EMPTY_IS_UNSET = frozenset({"DATABASE_URL", "ALLIANCE_HOME", "ALLIANCE_KEK", "ALLIANCE_KEK_FILE",
                             "ALLIANCE_PLUGINS_DIR", "ALLIANCE_ANCHOR_DIR", "ALLIANCE_SIGNING_KEY_DIR",
                             "ALLIANCE_ERASURE_LEDGER_DIR", "ALLIANCE_METRICS_TOKEN",
                             "ALLIANCE_REPLICA_URL"})


def validate_environment(env: Mapping[str, str]) -> None:
    """Raise ``ConfigurationError`` (``field`` = the variable) for the first value that is not allowed."""
    for name, rule in RULES.items():
        text = env.get(name)
        if text is None or (text == "" and name in _EMPTY_IS_UNSET):
            continue
        allowed = rule(text)
        if allowed is not None:
            shown = "" if name in _SECRET else f"={text!r}"
            raise ConfigurationError(f"{name}{shown} is not valid: expected {allowed}", field=name)
