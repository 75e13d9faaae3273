"""an index on the recipients' lower-cased address: `to:` with a whole address reads it instead of every mail

Revision ID: 0013_recipient_lookup
Revises: 0012_error_texts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_recipient_lookup"
down_revision = "0012_error_texts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mailroom_mail_recipients_email_lower", "mailroom_mail_recipients", [sa.text("lower(email)")])


def downgrade() -> None:
    op.drop_index("ix_mailroom_mail_recipients_email_lower", table_name="mailroom_mail_recipients")
