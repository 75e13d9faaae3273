"""a mail's last error (and an attempt's reply in mailroom's own words) also as template and values, so that
the UI shows them in the reader's language

Revision ID: 0012_error_texts
Revises: 0011_rate_limits
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_error_texts"
down_revision = "0011_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: no table rebuild, however many mails the log holds.
    op.add_column("mailroom_mails", sa.Column("last_error_text", sa.Text(), nullable=True))
    op.add_column("mailroom_mail_attempts", sa.Column("reply_text", sa.Text(), nullable=True))


def downgrade() -> None:
    # Not a batch: rebuilding the table would cascade the delete into the mails' contents on SQLite.
    op.drop_column("mailroom_mail_attempts", "reply_text")
    op.drop_column("mailroom_mails", "last_error_text")
