"""users, roles and one-time codes

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailroom_users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("salutation", sa.String(length=200), nullable=False),
        sa.Column("preferred_language", sa.String(length=35), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailroom_users")),
        sa.UniqueConstraint("email_key", name=op.f("uq_mailroom_users_email_key")),
    )
    op.create_table(
        "mailroom_roles",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("all_permissions", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailroom_roles")),
    )
    op.create_table(
        "mailroom_one_time_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["mailroom_users.id"], ondelete="CASCADE",
                                name=op.f("fk_mailroom_one_time_codes_user_id_mailroom_users")),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_mailroom_one_time_codes")),
    )
    op.create_index(op.f("ix_mailroom_one_time_codes_user_id_purpose"), "mailroom_one_time_codes",
                    ["user_id", "purpose"])


def downgrade() -> None:
    op.drop_table("mailroom_one_time_codes")
    op.drop_table("mailroom_roles")
    op.drop_table("mailroom_users")
