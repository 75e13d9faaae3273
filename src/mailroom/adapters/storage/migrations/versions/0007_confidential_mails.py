"""mails can be confidential: their content is sealed with the secret key and dropped once final

Account mails (password reset, e-mail verification, ...) carry one-time codes; anyone who reads the
log could use them. The flag tells every read path to refuse the content, and the worker's claim to
open the sealed message.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy of this table (see 0005): existing mails are not confidential.
    op.add_column("mailroom_mails", sa.Column("confidential", sa.Boolean(), nullable=False,
                                              server_default=sa.false()))


def downgrade() -> None:
    # Older code cannot open sealed contents and would hand the sealed bytes to the SMTP server (or show
    # the mail's content, were it plain): drop them, as retention would.
    op.execute("DELETE FROM mailroom_mail_contents WHERE mail_id IN "
               "(SELECT id FROM mailroom_mails WHERE confidential = true)")
    op.execute("UPDATE mailroom_mails SET has_content = false WHERE confidential = true")
    op.drop_column("mailroom_mails", "confidential")
