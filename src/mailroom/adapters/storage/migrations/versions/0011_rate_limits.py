"""rate limits per SMTP server and per recipient domain, shared by all workers

Revision ID: 0011_rate_limits
Revises: 0010_idempotency_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0011_rate_limits"
down_revision = "0010_idempotency_keys"
branch_labels = None
depends_on = None

_SCOPE = ["scope_kind", "scope_target", "window_seconds"]


def upgrade() -> None:
    op.create_table(
        "mailroom_rate_limits",
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_target", sa.String(length=255), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*_SCOPE, name=op.f("pk_mailroom_rate_limits")),
    )
    op.create_table(
        "mailroom_rate_limit_sends",
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_target", sa.String(length=255), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("sent_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(_SCOPE, [f"mailroom_rate_limits.{c}" for c in _SCOPE], ondelete="CASCADE",
                                name=op.f("fk_mailroom_rate_limit_sends_scope_kind_mailroom_rate_limits")),
        sa.PrimaryKeyConstraint(*_SCOPE, "slot", name=op.f("pk_mailroom_rate_limit_sends")),
    )
    op.create_index("ix_mailroom_rate_limit_sends_oldest",
                    "mailroom_rate_limit_sends", [*_SCOPE, "sent_at"])


def downgrade() -> None:
    op.drop_table("mailroom_rate_limit_sends")
    op.drop_table("mailroom_rate_limits")
