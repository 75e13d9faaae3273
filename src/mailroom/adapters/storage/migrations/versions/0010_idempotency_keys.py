"""idempotency keys: one row per (caller, key), naming the mail the key queued until the key expires

Revision ID: 0010_idempotency_keys
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0010_idempotency_keys"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailroom_idempotency_keys",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("mail_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_mailroom_idempotency_keys")),
    )
    op.create_index(op.f("ix_mailroom_idempotency_keys_expires_at"), "mailroom_idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mailroom_idempotency_keys_expires_at"), table_name="mailroom_idempotency_keys")
    op.drop_table("mailroom_idempotency_keys")
