"""drop the index on the recipients' address as written: since 0013 every lookup by address reads the
lower-cased one, and send_mail paid for both

Revision ID: 0016_one_recipient_lookup
Revises: 0015_substring_search
"""

from __future__ import annotations

from alembic import op

revision = "0016_one_recipient_lookup"
down_revision = "0015_substring_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_mailroom_mail_recipients_email", table_name="mailroom_mail_recipients")


def downgrade() -> None:
    op.create_index("ix_mailroom_mail_recipients_email", "mailroom_mail_recipients", ["email"])
