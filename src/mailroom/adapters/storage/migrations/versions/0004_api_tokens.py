"""api tokens

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailroom_api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["mailroom_users.id"], ondelete="CASCADE",
                                name=op.f("fk_mailroom_api_tokens_user_id_mailroom_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailroom_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_mailroom_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_mailroom_api_tokens_user_id"), "mailroom_api_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("mailroom_api_tokens")
