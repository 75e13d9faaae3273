"""delivery engine: uncertain attempts, a per-server EHLO name

Attempts record whether the server went silent after the whole message (the mail may have arrived);
servers get an optional EHLO name. Plain ADD COLUMN with server defaults, so that SQLite never copies
the tables (a batch copy of a parent table would cascade deletes into its children).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mailroom_mail_attempts",
                  sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("mailroom_smtp_servers",
                  sa.Column("helo_name", sa.String(length=253), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("mailroom_smtp_servers", "helo_name")
    op.drop_column("mailroom_mail_attempts", "uncertain")
