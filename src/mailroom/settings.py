"""Settings, read once at start-up from ``MAILROOM_*`` environment variables and/or a TOML file.

Precedence: keyword arguments, then environment variables, then the TOML file named by
``MAILROOM_CONFIG`` (keys are the field names below, at top level or under a ``[mailroom]`` table),
then the defaults. Every field ``name`` has the variable ``MAILROOM_<NAME>``; lists are comma-separated
in the environment. Units are in the names.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mailroom.domain.addresses import Address
from mailroom.domain.retry import RetryPolicy
from mailroom.domain.staging import StagingPolicy
from mailroom.domain.users import AccountPolicy
from mailroom.errors import ConfigurationError, InvalidInput

ENV_PREFIX = "MAILROOM_"


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = "sqlite:///mailroom.db"
    """SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``."""
    secret_key: str | None = field(default=None, repr=False)
    """Fernet key(s), comma-separated; the first encrypts, all decrypt (key rotation)."""
    secret_key_file: str = "mailroom.key"  # noqa: S105 - a file name, not a secret
    """Used when no secret_key is set; created with mode 0600 on first start."""
    smtp_ca_file: str | None = None
    """PEM file of extra CA certificates to trust for SMTP TLS (system CAs are used otherwise)."""
    message_id_domain: str | None = None

    max_attachment_bytes: int = 10 * 1024 * 1024
    max_message_bytes: int = 25 * 1024 * 1024

    worker_batch_size: int = 300
    """Mails a worker keeps in flight; it claims half of them at a time."""
    worker_batch_bytes: int = 32 * 1024 * 1024
    """A claim stops at this many bytes of messages (a worker holds about twice this in memory)."""
    smtp_connections_per_server: int = 4
    lease_seconds: float = 300.0
    poll_interval_seconds: float = 2.0
    """Longest idle wait between queue looks when no wake-up signal can reach the worker (SQLite across
    processes, mails scheduled in the future). PostgreSQL workers wake on NOTIFY at once."""
    shutdown_grace_seconds: float = 20.0

    retry_base_delay_seconds: float = 60.0
    retry_factor: float = 2.0
    retry_max_delay_seconds: float = 3600.0
    retry_jitter: float = 0.25
    max_attempts: int = 8

    keep_sent_days: float = 30.0
    """Delete sent mails from the log after this many days; negative keeps them forever."""
    keep_failed_days: float = 365.0
    keep_content_days: float = -1.0
    """Drop bodies and attachments of finished mails after this many days (log row kept); negative: never."""
    retention_batch_size: int = 500
    retention_interval_seconds: float = 600.0

    staging_redirect_to: str | None = None
    staging_allowed_domains: tuple[str, ...] = ()

    public_base_url: str = "http://127.0.0.1:8025"
    """Where users reach the web UI; the links in account mails start with it."""
    application_name: str = "mailroom"
    """The name account mails greet users from."""
    self_registration: bool = False
    """Whether anyone may register an account (off: administrators create users)."""
    min_password_length: int = 10
    verification_code_hours: float = 48.0
    reset_code_hours: float = 1.0
    login_max_failures: int = 5
    """Failed logins in a row before each further attempt is delayed."""
    login_lockout_base_seconds: float = 2.0
    """The first delay; it doubles with every further failure, up to 15 minutes."""
    reset_request_floor_seconds: float = 0.4
    """A password-reset request never answers faster, so known and unknown addresses look alike."""

    web_host: str = "127.0.0.1"
    web_port: int = 8025
    session_hours: float = 12.0
    """A web login lasts this long (the cookie is signed with a key derived from the secret key)."""

    dev_sink_port: int = 1025
    log_level: str = "INFO"

    # delivery engine
    smtp_helo_name: str | None = None
    """The name given in EHLO; default: this host's FQDN when it is one, else the sender's domain."""
    server_cooldown_seconds: float = 30.0
    """A server that cannot be reached rests this long (doubling with each failure in a row; 10x after a
    refused login) before the next connection; its mails go to the next server or wait, attempts unspent."""
    uncertain_delivery: str = "resend"
    """After silence following the whole message: ``resend`` after the backoff, or ``hold`` for an operator."""

    account_requests_per_address: str = "5/hour"
    """Registrations and reset requests one e-mail address may get (``limits`` notation: "5/hour");
    further ones answer 429. Counted in the web process's memory: one process, or each its own count."""
    account_requests_per_client: str = "20/hour"
    """Registrations and reset requests one client address may make, whatever the e-mail addresses."""

    # Every template render runs in a child process with these hard limits (issue #11).
    template_render_cpu_seconds: float = 2.0
    """CPU time one render (preview, save check, send) may use before it is stopped."""
    template_render_memory_mb: int = 256
    """Memory one render may take beyond the render process's own footprint."""

    def __post_init__(self) -> None:
        positive = ("max_attachment_bytes", "max_message_bytes", "worker_batch_size", "worker_batch_bytes",
                    "smtp_connections_per_server", "lease_seconds", "poll_interval_seconds",
                    "retention_batch_size", "retention_interval_seconds", "min_password_length",
                    "verification_code_hours", "reset_code_hours", "login_max_failures", "server_cooldown_seconds")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{ENV_PREFIX}{name.upper()} must be positive", field=name)
        if self.uncertain_delivery not in ("resend", "hold"):
            raise ConfigurationError(f"{ENV_PREFIX}UNCERTAIN_DELIVERY must be resend or hold, "
                                     f"not {self.uncertain_delivery!r}", field="uncertain_delivery")
        self.retry_policy  # noqa: B018 - validates the retry settings now, not at the first failure
        self.staging_policy  # noqa: B018

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(base_delay_seconds=self.retry_base_delay_seconds, factor=self.retry_factor,
                           max_delay_seconds=self.retry_max_delay_seconds, jitter=self.retry_jitter,
                           max_attempts=self.max_attempts)

    @property
    def account_policy(self) -> AccountPolicy:
        names = {f.name for f in fields(AccountPolicy)}
        return AccountPolicy(**{name: getattr(self, name) for name in names})

    @property
    def staging_policy(self) -> StagingPolicy:
        try:
            redirect = Address.parse(self.staging_redirect_to) if self.staging_redirect_to else None
        except InvalidInput as exc:
            raise ConfigurationError(f"{ENV_PREFIX}STAGING_REDIRECT_TO: {exc}") from exc
        return StagingPolicy(redirect_to=redirect,
                             allowed_domains=frozenset(d.lower().strip() for d in self.staging_allowed_domains))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment and the TOML file, with ``overrides`` winning."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_path = overrides.pop("config", None) or env.get(f"{ENV_PREFIX}CONFIG")
        if config_path:
            values.update(_read_toml(Path(config_path)))
        known = {f.name: f for f in fields(cls)}
        for name, spec in known.items():
            raw = env.get(f"{ENV_PREFIX}{name.upper()}")
            if raw is not None and raw != "":
                values[name] = _convert(name, spec, raw)
        values.update(overrides)
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name, value in list(values.items()):
            if isinstance(value, list):
                values[name] = tuple(value)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{ENV_PREFIX}CONFIG names {path}, which does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    table = data.get("mailroom", data)
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [mailroom] must be a table")
    return dict(table)


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
             "off": False}


def _convert(name: str, spec: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(spec.type)
    try:
        if kind.startswith("bool"):
            if raw.strip().lower() not in _BOOLEANS:
                raise ValueError(raw)
            return _BOOLEANS[raw.strip().lower()]
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
