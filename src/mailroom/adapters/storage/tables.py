"""The one schema source: SQLAlchemy Core tables, each with the indexes its queries need.

Alembic migrations are written against this metadata; a test checks that they give the same schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
    text,
)

from mailroom.domain.outbox import CLAIMABLE_STATUSES

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CLAIMABLE = text("status IN ({})".format(", ".join(f"'{s.value}'" for s in CLAIMABLE_STATUSES)))
# Predicate of the content retention index; as text for the same reason as CLAIMABLE.
HAS_CONTENT = text("has_content = true")
FINISHED = text("finished_at IS NOT NULL")
HAS_CONTENT_FINISHED = text("has_content = true AND finished_at IS NOT NULL")
HAS_SERVER = text("server_name IS NOT NULL")
HAS_CORRELATION_ID = text("correlation_id IS NOT NULL")

mails = Table(
    "mailroom_mails", metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("subject", Text, nullable=False),
    Column("sender", Text),
    Column("envelope_sender", Text),
    Column("receiver", Text, nullable=False),  # lower-cased summary of all recipients, for search
    Column("message_id", String(255), nullable=False),
    Column("smtp_hint", String(255)),
    Column("tags", Text),  # ",a,b," so that one tag is found with LIKE '%,a,%'
    Column("correlation_id", String(255)),
    Column("template", String(255)),  # "set_id/name" when rendered from a template
    Column("locale", String(35)),  # the template locale actually used
    Column("queued_at", UtcDateTime, nullable=False),
    Column("send_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
    # When the row next needs a worker: due time while queued/deferred, lease end while sending.
    Column("next_attempt_at", UtcDateTime),
    Column("claim_token", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),  # in English, for the API, the CLI and searches
    Column("last_error_text", Text),  # the same as JSON {template, params}, for the UI to translate
    Column("server_name", String(255)),
    Column("sent_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("has_from", Boolean, nullable=False),
    Column("original_recipients", Text),  # JSON list, set when staging changed the envelope
    Column("has_content", Boolean, nullable=False, default=True),  # false once retention dropped the content
    # The content is sealed with the secret key, never read back, and dropped once the mail is final.
    Column("confidential", Boolean, nullable=False, default=False),
    # SQLite: the mail's row in the word index (word_index.py), NULL until the worker has indexed it. Unused on
    # PostgreSQL, whose trigram indexes are on the searched columns themselves.
    Column("search_key", Integer),
    Index("ix_mailroom_mails_claim", "priority", "next_attempt_at",
          sqlite_where=CLAIMABLE, postgresql_where=CLAIMABLE),
    # Content retention walks only finished mails that still have content, oldest first.
    Index("ix_mailroom_mails_content_finished", "finished_at",
          sqlite_where=HAS_CONTENT_FINISHED, postgresql_where=HAS_CONTENT_FINISHED),
    # Columns a new mail leaves NULL are indexed only once set (by the worker): send_mail writes 4 B-trees
    # fewer. Every query on them compares the column, which implies it is not NULL, so both databases still
    # read these indexes (EXPLAIN tests).
    Index(None, "status", "finished_at", sqlite_where=FINISHED, postgresql_where=FINISHED),
    Index(None, "status", "queued_at"),
    Index(None, "queued_at"),
    Index(None, "server_name", "queued_at", sqlite_where=HAS_SERVER, postgresql_where=HAS_SERVER),
    Index(None, "correlation_id", sqlite_where=HAS_CORRELATION_ID, postgresql_where=HAS_CORRELATION_ID),
)

mail_recipients = Table(
    "mailroom_mail_recipients", metadata,
    Column("mail_id", String(32), ForeignKey("mailroom_mails.id", ondelete="CASCADE"), primary_key=True),
    Column("position", SmallInteger, primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("code", SmallInteger),
    Column("reply", Text),
    # The lower-cased part after the (last) @, for `to:@example.org` from an index.
    Column("domain", String(255)),
    Index(None, "domain"),
)
# `to:` with a whole address finds that recipient case-insensitively from here, not by scanning every mail.
RECIPIENT_LOOKUP = Index("ix_mailroom_mail_recipients_email_lower", func.lower(mail_recipients.c.email))

mail_attempts = Table(
    "mailroom_mail_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mail_id", String(32), ForeignKey("mailroom_mails.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("server_name", String(255)),
    Column("outcome", String(16), nullable=False),
    Column("code", SmallInteger),
    Column("reply", Text),
    Column("reply_text", Text),  # when the reply is mailroom's own words: as JSON {template, params}
    Column("uncertain", Boolean, nullable=False, default=False),  # silence after DATA: it may have arrived
    Index(None, "mail_id"),
)

mail_contents = Table(
    "mailroom_mail_contents", metadata,
    Column("mail_id", String(32), ForeignKey("mailroom_mails.id", ondelete="CASCADE"), primary_key=True),
    Column("message", LargeBinary, nullable=False),
    # The envelope recipients, one per line, beside the message: a claim reads what it delivers from one
    # table. The row is written once and never updated, so delivering a mail rewrites no message bytes.
    Column("envelope", Text, nullable=False),
)

smtp_servers = Table(
    "mailroom_smtp_servers", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("security", String(16), nullable=False),
    Column("username", String(255), nullable=False, default=""),
    Column("password_encrypted", LargeBinary),
    Column("sender", String(320), nullable=False, default=""),
    Column("priority", Integer, nullable=False, default=0),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("timeout_seconds", Float, nullable=False),
    Column("helo_name", String(253), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


template_sets = Table(
    "mailroom_template_sets", metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("tags", Text, nullable=False, default=""),  # comma-separated
    Column("default_locale", String(35), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

templates = Table(
    "mailroom_templates", metadata,
    Column("set_id", String(100), ForeignKey("mailroom_template_sets.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("locale", String(35), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("html", Text),
    Column("text", Text),
    Column("description", Text, nullable=False, default=""),
    Column("variables", Text, nullable=False, default="{}"),  # JSON object: name -> sample value
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(255)),
)

template_versions = Table(
    "mailroom_template_versions", metadata,
    Column("set_id", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("locale", String(35), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("subject", Text, nullable=False, default=""),
    Column("html", Text),
    Column("text", Text),
    Column("description", Text, nullable=False, default=""),
    Column("variables", Text, nullable=False, default="{}"),
    Column("saved_at", UtcDateTime, nullable=False),
    Column("saved_by", String(255)),
)


users = Table(
    "mailroom_users", metadata,
    Column("id", String(32), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased: unique case-insensitively
    Column("first_name", String(200), nullable=False, default=""),
    Column("last_name", String(200), nullable=False, default=""),
    Column("title", String(200), nullable=False, default=""),
    Column("salutation", String(200), nullable=False, default=""),
    Column("preferred_language", String(35), nullable=False),
    Column("verified", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("roles", Text, nullable=False, default=""),  # comma-separated role ids
    Column("password_hash", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

roles = Table(
    "mailroom_roles", metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("permissions", Text, nullable=False, default=""),  # comma-separated permission ids
    Column("all_permissions", Boolean, nullable=False, default=False),
)

one_time_codes = Table(
    "mailroom_one_time_codes", metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("mailroom_users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("email", String(320), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
    Index(None, "user_id", "purpose"),
)

api_tokens = Table(
    "mailroom_api_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("mailroom_users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("hint", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("expires_at", UtcDateTime),
    Index(None, "user_id"),
)

web_sessions = Table(
    "mailroom_web_sessions", metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("mailroom_users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Index(None, "user_id"),
    Index(None, "expires_at"),
)

# One row per (account, client address) and per client address (account ""); the account is the
# lower-cased address as typed, known or not, so unknown addresses are throttled like known ones.
login_throttle = Table(
    "mailroom_login_throttle", metadata,
    Column("account", String(320), primary_key=True),
    Column("client", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime),
)

# Rate limits per SMTP server or recipient domain (domain.rate_limits). For each limit, one row per mail
# it allows per window, holding the time of the send that used it last: a mail may go when the oldest row
# is a full window old, which bounds every window, not just calendar ones.
rate_limits = Table(
    "mailroom_rate_limits", metadata,
    Column("scope_kind", String(16), primary_key=True),
    Column("scope_target", String(255), primary_key=True),
    Column("window_seconds", Integer, primary_key=True),
    Column("max_count", Integer, nullable=False),
)

rate_limit_sends = Table(
    "mailroom_rate_limit_sends", metadata,
    Column("scope_kind", String(16), primary_key=True),
    Column("scope_target", String(255), primary_key=True),
    Column("window_seconds", Integer, primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("sent_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["scope_kind", "scope_target", "window_seconds"],
                         [rate_limits.c.scope_kind, rate_limits.c.scope_target, rate_limits.c.window_seconds],
                         ondelete="CASCADE"),
    Index("ix_mailroom_rate_limit_sends_oldest", "scope_kind", "scope_target", "window_seconds", "sent_at"),
)

# One row per (caller, key): the unique primary key is what makes a key name one mail, also when two
# requests with it race (the second insert meets the first's row and reads it, it never writes a mail).
idempotency_keys = Table(
    "mailroom_idempotency_keys", metadata,
    Column("scope", String(64), primary_key=True),  # the caller's user id, "system" for the application
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),  # SHA-256 of the request, to refuse another mail
    # The mail the key names; no foreign key: the key keeps answering with it also after the mail was deleted.
    Column("mail_id", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),  # from then on the key may name a new mail
    Index(None, "expires_at"),
)

# What the log search's indexes add to one database only (migration 0015), left out of the comparison of the
# migrated schema with these tables: SQLite's FTS5 word index (a virtual table and its shadow tables) and the
# partial index of the mails not yet in it; PostgreSQL's trigram GIN indexes.
WORD_INDEX = "mailroom_mail_words"
SEARCH_BACKLOG_INDEX = "ix_mailroom_mails_search_backlog"
TRIGRAM_COLUMNS = ("subject", "sender", "receiver", "tags")
DIALECT_SEARCH_OBJECTS = frozenset({
    WORD_INDEX, *(f"{WORD_INDEX}_{shadow}" for shadow in ("data", "idx", "content", "docsize", "config")),
    SEARCH_BACKLOG_INDEX, *(f"ix_mailroom_mails_{column}_trigrams" for column in TRIGRAM_COLUMNS),
})
