"""Settings, read once at start-up from keyword arguments, ``MAILROOM_*`` environment variables and a TOML file.

Precedence: keyword arguments, then environment variables, then the TOML file named by ``MAILROOM_CONFIG``
(or the ``config`` keyword; keys are the field names below, at top level or under a ``[mailroom]`` table),
then the defaults. Every field ``name`` has the variable ``MAILROOM_<NAME>``; lists are comma-separated in
the environment (and may be in TOML and keywords too). Units are in the names.

Every source goes through the same pydantic validation, so ``self_registration = "false"`` in TOML is
false, as it is in the environment; a value that cannot be read is a ConfigurationError naming the setting
and the source it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mailroom.domain.addresses import Address
from mailroom.domain.log import COUNT_LIMIT
from mailroom.domain.retry import RetryPolicy
from mailroom.domain.staging import StagingPolicy
from mailroom.domain.users import AccountPolicy
from mailroom.errors import ConfigurationError, InvalidInput

ENV_PREFIX = "MAILROOM_"
KEYWORDS = "keyword arguments"

# Where Settings() reads from: Settings.load() points these at the mapping and file it was given.
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("mailroom_settings_environ", default=None)
_config: ContextVar[str | None] = ContextVar("mailroom_settings_config", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True,
                                      use_attribute_docstrings=True)

    database_url: str = "sqlite:///mailroom.db"
    """SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``."""
    secret_key: str | None = Field(default=None, repr=False)
    """Fernet key(s), comma-separated; the first encrypts, all decrypt (key rotation)."""
    secret_key_file: str = "mailroom.key"  # noqa: S105 - a file name, not a secret
    """Used when no secret_key is set; created with mode 0600 on first start."""
    smtp_ca_file: str | None = None
    """PEM file of extra CA certificates to trust for SMTP TLS (system CAs are used otherwise)."""
    message_id_domain: str | None = None

    max_attachment_bytes: int = 10 * 1024 * 1024
    max_message_bytes: int = 25 * 1024 * 1024
    idempotency_window_seconds: float = 24 * 3600.0
    """How long an idempotency key names its mail: a repeat within it gets the same id and queues nothing;
    after it the key may name a new mail."""

    worker_batch_size: int = 300
    """Mails a worker keeps in flight; it claims half of them at a time."""
    worker_batch_bytes: int = 32 * 1024 * 1024
    """A claim stops at this many bytes of messages (a worker holds about twice this in memory)."""
    worker_storage_process: bool = True
    """The worker claims and records in a process of its own, so that the database's Python does not hold
    the interpreter lock its SMTP connections need (about a fifth more mails/s). Off, or with an in-memory
    SQLite database, a thread of the worker does it."""
    smtp_connections_per_server: int = 4
    lease_seconds: float = 300.0
    poll_interval_seconds: float = 2.0
    """Longest idle wait between queue looks when no wake-up signal can reach the worker (SQLite across
    processes, mails scheduled in the future). PostgreSQL workers wake on NOTIFY at once."""
    shutdown_grace_seconds: float = 20.0
    """On SIGTERM a worker finishes in-flight mails this long, then gives back the rest and exits (a
    supervisor's stop timeout should allow this plus a few seconds)."""
    worker_liveness_file: str | None = None
    """A file the worker touches while it runs, for `mailroom worker --check-alive` (container HEALTHCHECK,
    a systemd timer); unset: none."""
    worker_liveness_interval_seconds: float = 10.0
    """How often the worker touches its liveness file; the check allows three times this by default."""

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
    search_index_interval_seconds: float = 2.0
    """How often the worker adds new mails to SQLite's word index for the log search (while mails are on their
    way, at most every 30 s); until then a search finds them by a scan of the mails not indexed yet."""
    log_count_limit: int = Field(default=COUNT_LIMIT, ge=1)
    """A filtered log search counts its mails up to this many (or to the end of the page shown); past it the
    log says "more than" rather than read every mail for an exact figure."""

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
    uncertain_delivery: Literal["resend", "hold"] = "resend"
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

    _POSITIVE: ClassVar[tuple[str, ...]] = (
        "max_attachment_bytes", "max_message_bytes", "worker_batch_size", "worker_batch_bytes",
        "smtp_connections_per_server", "lease_seconds", "poll_interval_seconds", "retention_batch_size",
        "retention_interval_seconds", "min_password_length", "verification_code_hours", "reset_code_hours",
        "login_max_failures", "server_cooldown_seconds", "idempotency_window_seconds",
        "worker_liveness_interval_seconds", "search_index_interval_seconds")
    _PORTS: ClassVar[tuple[str, ...]] = ("web_port", "dev_sink_port")

    def __init__(self, **values: Any) -> None:
        """Keyword arguments, the environment and the TOML file (see ``load``), validated together."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _configuration_error(exc, _origins(values)) from None

    @field_validator("staging_allowed_domains", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # "a.example, b.example" from the environment, and the same string anywhere else: one rule.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        for name in self._POSITIVE:
            value = getattr(self, name)
            if not value > 0:
                raise _Refused(name, f"must be positive, not {value!r}")
        for name in self._PORTS:
            if not 0 <= getattr(self, name) <= 65535:
                raise _Refused(name, f"must be a port between 0 and 65535, not {getattr(self, name)!r}")
        try:
            self.retry_policy  # noqa: B018 - validates the retry settings now, not at the first failure
        except ConfigurationError as exc:
            raise _Refused(exc.field or "retry_base_delay_seconds", str(exc)) from None
        try:
            self.staging_policy  # noqa: B018
        except ConfigurationError as exc:
            raise _Refused("staging_redirect_to", str(exc)) from None
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins. Our own environment and TOML sources: variables are read only for known fields (other
        # MAILROOM_* variables belong to tools around mailroom), empty ones count as unset, the TOML file may
        # keep its keys under [mailroom], and nothing is JSON-decoded, so every source gives plain values to
        # the one validation.
        return init_settings, _EnvironmentSource(settings_cls), _TomlSource(settings_cls)

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
            raise ConfigurationError(f"{ENV_PREFIX}STAGING_REDIRECT_TO: {exc}", field="staging_redirect_to") from exc
        return StagingPolicy(redirect_to=redirect,
                             allowed_domains=frozenset(d.lower().strip() for d in self.staging_allowed_domains))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``overrides``, the environment (``os.environ`` unless given) and the TOML file."""
        env = os.environ if environ is None else environ
        config_path = overrides.pop("config", None) or env.get(f"{ENV_PREFIX}CONFIG") or None
        environ_token, config_token = _environ.set(env), _config.set(config_path)
        try:
            return cls(**overrides)
        finally:
            _environ.reset(environ_token)
            _config.reset(config_token)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (keyword arguments), validated again; nothing is read anew."""
        try:
            return type(self).model_validate(self.model_dump() | changes)
        except ValidationError as exc:
            raise _configuration_error(exc, dict.fromkeys(changes, KEYWORDS)) from None


class _Refused(ValueError):
    """A whole-settings check that failed, naming the setting (pydantic reports it without a location)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


class _EnvironmentSource(PydanticBaseSettingsSource):
    """``MAILROOM_<NAME>`` for every field; empty variables count as unset."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raw = _environment().get(f"{ENV_PREFIX}{field_name.upper()}")
        return raw, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            raw, _, _ = self.get_field_value(info, name)
            if raw is not None and raw != "":
                values[name] = raw
        return values


class _TomlSource(PydanticBaseSettingsSource):
    """The file named by ``MAILROOM_CONFIG`` (or ``config=``): keys at top level or under ``[mailroom]``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _toml_values().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = _toml_values()
        unknown = set(values) - set(self.settings_cls.model_fields)
        if unknown:
            raise ConfigurationError(f"unknown setting(s) in {_config_path()}: {', '.join(sorted(unknown))}",
                                     field=sorted(unknown)[0])
        return values


def _environment() -> Mapping[str, str]:
    return _environ.get() or os.environ


def _config_path() -> str | None:
    return _config.get() or _environment().get(f"{ENV_PREFIX}CONFIG") or None


def _toml_values() -> dict[str, Any]:
    path = _config_path()
    return _read_toml(Path(path)) if path else {}


def _origins(keywords: Mapping[str, Any]) -> dict[str, str]:
    """Where each setting's value came from, by the precedence the sources have."""
    origins: dict[str, str] = {}
    try:
        toml_values = _toml_values()
    except ConfigurationError:
        toml_values = {}
    for name in toml_values:
        origins[name] = f"{_config_path()} (TOML)"
    env = _environment()
    for name in Settings.model_fields:
        if env.get(f"{ENV_PREFIX}{name.upper()}"):
            origins[name] = f"the environment variable {ENV_PREFIX}{name.upper()}"
    for name in keywords:
        origins[name] = KEYWORDS
    return origins


def _configuration_error(exc: ValidationError, origins: Mapping[str, str]) -> ConfigurationError:
    """The first problem of ``exc`` as a ConfigurationError naming the setting and its source."""
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _Refused):
        name, reason = cause.name, cause.reason
    else:
        name = str(error["loc"][0]) if error.get("loc") else ""
        reason = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
    value = error.get("input")
    shown = "" if name == "secret_key" or isinstance(value, dict) else f" (got {value!r})"
    source = origins.get(name, "the defaults")
    return ConfigurationError(f"setting {name!r} from {source}: {reason}{shown}", field=name or None)


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
