"""each recipient's domain, indexed: `to:@example.org` reads it instead of every mail's recipient summary

Revision ID: 0014_recipient_domains
Revises: 0013_recipient_lookup
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_recipient_domains"
down_revision = "0013_recipient_lookup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mailroom_mail_recipients", sa.Column("domain", sa.String(length=255), nullable=True))
    # The lower-cased part after the last @, as send_mail writes it from now on.
    if op.get_context().dialect.name == "postgresql":
        op.execute("UPDATE mailroom_mail_recipients SET domain = lower(substring(email from '[^@]*$'))")
    else:  # rtrim(email, <its characters but @>) leaves everything up to the last @
        op.execute("UPDATE mailroom_mail_recipients SET domain = "
                   "lower(substr(email, length(rtrim(email, replace(email, '@', ''))) + 1))")
    op.create_index(op.f("ix_mailroom_mail_recipients_domain"), "mailroom_mail_recipients", ["domain"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mailroom_mail_recipients_domain"), table_name="mailroom_mail_recipients")
    op.drop_column("mailroom_mail_recipients", "domain")
