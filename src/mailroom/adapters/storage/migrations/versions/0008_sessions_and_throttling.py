"""web sessions, login throttle counters, API token expiry; the per-user login counters go

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailroom_web_sessions",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["mailroom_users.id"], ondelete="CASCADE",
                                name=op.f("fk_mailroom_web_sessions_user_id_mailroom_users")),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_mailroom_web_sessions")),
    )
    op.create_index(op.f("ix_mailroom_web_sessions_user_id"), "mailroom_web_sessions", ["user_id"])
    op.create_index(op.f("ix_mailroom_web_sessions_expires_at"), "mailroom_web_sessions", ["expires_at"])
    op.create_table(
        "mailroom_login_throttle",
        sa.Column("account", sa.String(length=320), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("account", "client", name=op.f("pk_mailroom_login_throttle")),
    )
    with op.batch_alter_table("mailroom_api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", UtcDateTime(timezone=True), nullable=True))
    # Counted per user, any guesser could lock the owner out; mailroom_login_throttle replaces them.
    # A plain DROP COLUMN (SQLite >= 3.35), not batch mode: batch mode copies the table and drops the old
    # one, and with SQLite's foreign keys on, that drop cascades into every token, code and session row.
    op.execute("ALTER TABLE mailroom_users DROP COLUMN failed_logins")
    op.execute("ALTER TABLE mailroom_users DROP COLUMN locked_until")


def downgrade() -> None:
    op.add_column("mailroom_users", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("mailroom_users", sa.Column("locked_until", UtcDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("mailroom_api_tokens") as batch:
        batch.drop_column("expires_at")
    op.drop_table("mailroom_login_throttle")
    op.drop_table("mailroom_web_sessions")
