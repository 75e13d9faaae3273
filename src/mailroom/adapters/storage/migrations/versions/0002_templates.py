"""templates: sets, templates per locale with their versions; template and locale on mails

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailroom_mails") as batch:
        batch.add_column(sa.Column("template", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=True))
    op.create_table(
        "mailroom_template_sets",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("default_locale", sa.String(length=35), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailroom_template_sets")),
    )
    op.create_table(
        "mailroom_templates",
        sa.Column("set_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("locale", sa.String(length=35), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["set_id"], ["mailroom_template_sets.id"], ondelete="CASCADE",
                                name=op.f("fk_mailroom_templates_set_id_mailroom_template_sets")),
        sa.PrimaryKeyConstraint("set_id", "name", "locale", name=op.f("pk_mailroom_templates")),
    )
    op.create_table(
        "mailroom_template_versions",
        sa.Column("set_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("locale", sa.String(length=35), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False),
        sa.Column("saved_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("saved_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("set_id", "name", "locale", "version", name=op.f("pk_mailroom_template_versions")),
    )


def downgrade() -> None:
    op.drop_table("mailroom_template_versions")
    op.drop_table("mailroom_templates")
    op.drop_table("mailroom_template_sets")
    with op.batch_alter_table("mailroom_mails") as batch:
        batch.drop_column("locale")
        batch.drop_column("template")
