"""Settings read from the environment once, at start-up, and validated.

Every problem raises `SettingsError` naming the variable, so `gateway` can print one line and exit 2
(DESIGN section 8). Without Twilio or SMTP settings the dev transports are used; a production start
(`GATEWAY_ENV=production`) refuses a missing or placeholder secret.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

# A fixed key for development and tests only: tokens stay valid across restarts of `gateway demo`.
DEV_SECRET_KEY = "dev-only-secret-key-not-for-production-use-0000"
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "password", "xxx", "todo", DEV_SECRET_KEY}
ENVIRONMENTS = ("development", "test", "production")


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message starts with the variable's name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    api_base_url: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    username: str
    password: str


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    database_url: str = "sqlite://gateway.sqlite3"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    secret_key: str = DEV_SECRET_KEY
    reply_domain: str = "reply.localhost"
    inbound_email_secret: str | None = None
    smtp_from: str = "school@reply.localhost"
    twilio: TwilioSettings | None = None
    smtp: SmtpSettings | None = None
    imap: ImapSettings | None = None
    # Outbox
    worker_enabled: bool = True
    worker_batch_size: int = 100
    worker_poll_seconds: float = 1.0
    lease_seconds: float = 120.0
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    # Messages per second per sending number (US long codes: 1/s) and for SMTP; 0 turns a limit off.
    sms_rate_per_number: float = 1.0
    smtp_rate: float = 20.0
    max_request_bytes: int = 1024 * 1024
    max_email_bytes: int = 25 * 1024 * 1024  # inbound e-mail, attachments included
    max_body_chars: int = 20_000
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def uses_dev_sms(self) -> bool:
        return self.twilio is None

    @property
    def uses_dev_email(self) -> bool:
        return self.smtp is None


def _get(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(env: Mapping[str, str], key: str, default: int, *, low: int, high: int) -> int:
    raw = _get(env, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(key, f"must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(key, f"must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float, *, low: float, high: float) -> float:
    raw = _get(env, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(key, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise SettingsError(key, f"must be between {low:g} and {high:g}, got {raw}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _get(env, key)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(key, f"must be true or false, got {raw!r}")


def _http_url(env: Mapping[str, str], key: str, default: str | None) -> str | None:
    raw = _get(env, key)
    if raw is None:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(key, f"must be an http(s) URL such as https://gateway.example.org, got {raw!r}")
    if parts.query or parts.fragment:
        raise SettingsError(key, "must not carry a query string or fragment")
    return raw.rstrip("/")


def _database_url(env: Mapping[str, str]) -> str:
    raw = _get(env, "GATEWAY_DATABASE_URL") or "sqlite://gateway.sqlite3"
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in ("sqlite", "postgres", "postgresql", "asyncpg"):
        raise SettingsError(
            "GATEWAY_DATABASE_URL", f"must start with sqlite:// or postgres://, got {raw.split('://')[0]!r}"
        )
    if scheme == "sqlite":
        path = raw.split("://", 1)[1].split("?", 1)[0]
        if not path:
            raise SettingsError("GATEWAY_DATABASE_URL", "names no SQLite file; use sqlite:///absolute/path.sqlite3")
        folder = Path(path).parent
        if path != ":memory:" and not folder.is_dir():
            # Checked here because tortoise 1.1.9 hangs (a lock is never released) when SQLite
            # cannot open the file, instead of raising.
            raise SettingsError("GATEWAY_DATABASE_URL", f"the folder {str(folder)!r} of the SQLite file does not exist")
    return raw


def _secret(env: Mapping[str, str], key: str, environment: str, *, default: str | None) -> str | None:
    value = _get(env, key)
    if environment == "production":
        if value is None:
            raise SettingsError(key, "is required when GATEWAY_ENV=production")
        if value.lower() in PLACEHOLDER_SECRETS or len(value) < 32:
            raise SettingsError(key, "looks like a placeholder; use at least 32 random characters")
    return value if value is not None else default


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from `env` (default: os.environ); raise SettingsError naming a bad variable."""
    env = os.environ if env is None else env
    environment = (_get(env, "GATEWAY_ENV") or "development").lower()
    if environment not in ENVIRONMENTS:
        raise SettingsError("GATEWAY_ENV", f"must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")

    host = _get(env, "GATEWAY_HOST") or "127.0.0.1"
    port = _int(env, "GATEWAY_PORT", 8080, low=1, high=65535)
    public_url = _http_url(env, "GATEWAY_PUBLIC_URL", None)
    if public_url is None:
        if environment == "production":
            raise SettingsError("GATEWAY_PUBLIC_URL", "is required when GATEWAY_ENV=production")
        public_url = f"http://{host}:{port}"

    reply_domain = (_get(env, "GATEWAY_REPLY_DOMAIN") or "reply.localhost").lower()
    if "@" in reply_domain or "/" in reply_domain or " " in reply_domain or "." not in reply_domain:
        raise SettingsError("GATEWAY_REPLY_DOMAIN", f"must be a bare domain such as reply.example.org, got {reply_domain!r}")

    twilio = None
    sid, token = _get(env, "TWILIO_ACCOUNT_SID"), _get(env, "TWILIO_AUTH_TOKEN")
    if sid or token:
        if not sid:
            raise SettingsError("TWILIO_ACCOUNT_SID", "is required when TWILIO_AUTH_TOKEN is set")
        if not token:
            raise SettingsError("TWILIO_AUTH_TOKEN", "is required when TWILIO_ACCOUNT_SID is set")
        if not sid.startswith("AC"):
            raise SettingsError("TWILIO_ACCOUNT_SID", "must start with AC")
        twilio = TwilioSettings(sid, token, _http_url(env, "TWILIO_API_BASE_URL", None))

    smtp = None
    smtp_host = _get(env, "SMTP_HOST")
    # Checked even without SMTP_HOST: a wrong value is reported, not silently ignored.
    smtp_port = _int(env, "SMTP_PORT", 25, low=1, high=65535)
    smtp_starttls = _bool(env, "SMTP_STARTTLS", False)
    if smtp_host:
        smtp = SmtpSettings(
            host=smtp_host,
            port=smtp_port,
            username=_get(env, "SMTP_USERNAME"),
            password=_get(env, "SMTP_PASSWORD"),
            starttls=smtp_starttls,
        )
        if smtp.username and not smtp.password:
            raise SettingsError("SMTP_PASSWORD", "is required when SMTP_USERNAME is set")

    imap = None
    imap_host = _get(env, "IMAP_HOST")
    imap_port = _int(env, "IMAP_PORT", 993, low=1, high=65535)
    if imap_host:
        user, password = _get(env, "IMAP_USERNAME"), _get(env, "IMAP_PASSWORD")
        if not user:
            raise SettingsError("IMAP_USERNAME", "is required when IMAP_HOST is set")
        if not password:
            raise SettingsError("IMAP_PASSWORD", "is required when IMAP_HOST is set")
        imap = ImapSettings(imap_host, imap_port, user, password)

    smtp_from = _get(env, "SMTP_FROM") or f"school@{reply_domain}"
    if "@" not in smtp_from or "\n" in smtp_from or "\r" in smtp_from:
        raise SettingsError("SMTP_FROM", f"must be an e-mail address, got {smtp_from!r}")

    values: dict[str, object] = dict(
        environment=environment,
        database_url=_database_url(env),
        host=host,
        port=port,
        public_url=public_url,
        secret_key=_secret(env, "GATEWAY_SECRET_KEY", environment, default=DEV_SECRET_KEY),
        reply_domain=reply_domain,
        inbound_email_secret=_secret(env, "GATEWAY_INBOUND_EMAIL_SECRET", environment, default=None)
        if _get(env, "GATEWAY_INBOUND_EMAIL_SECRET") or environment != "production"
        else None,
        smtp_from=smtp_from,
        twilio=twilio,
        smtp=smtp,
        imap=imap,
        worker_batch_size=_int(env, "GATEWAY_WORKER_BATCH_SIZE", 100, low=1, high=5000),
        lease_seconds=_float(env, "GATEWAY_LEASE_SECONDS", 120.0, low=5, high=86400),
        max_attempts=_int(env, "GATEWAY_MAX_ATTEMPTS", 8, low=1, high=100),
        sms_rate_per_number=_float(env, "GATEWAY_SMS_RATE_PER_NUMBER", 1.0, low=0, high=10000),
        smtp_rate=_float(env, "GATEWAY_SMTP_RATE", 20.0, low=0, high=100000),
        max_request_bytes=_int(env, "GATEWAY_MAX_REQUEST_BYTES", 1024 * 1024, low=1024, high=64 * 1024 * 1024),
        max_email_bytes=_int(env, "GATEWAY_MAX_EMAIL_BYTES", 25 * 1024 * 1024, low=64 * 1024, high=256 * 1024 * 1024),
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
