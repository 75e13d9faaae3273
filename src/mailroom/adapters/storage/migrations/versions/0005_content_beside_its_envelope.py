"""content rows keep their envelope and are never updated; mails know whether they still have content

Delivering a mail used to rewrite its content row (to copy the finish time for content retention),
which rewrote the whole message, and a claim read the recipients from a table of their own. Now
the content row holds the envelope recipients and is written once; content retention walks a partial
index of finished mails that still have content.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from mailroom.adapters.storage.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HAS_CONTENT = sa.text("has_content = true")
BACKFILL_BATCH = 1000


def upgrade() -> None:
    # A plain ADD COLUMN, never a batch copy of this table: on SQLite the copy drops the old table, and
    # with foreign keys on that would cascade into the recipients, attempts and contents.
    op.add_column("mailroom_mails", sa.Column("has_content", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute("UPDATE mailroom_mails SET has_content = false WHERE NOT EXISTS "
               "(SELECT 1 FROM mailroom_mail_contents c WHERE c.mail_id = mailroom_mails.id)")
    op.create_index("ix_mailroom_mails_content_finished", "mailroom_mails", ["finished_at"], unique=False,
                    sqlite_where=HAS_CONTENT, postgresql_where=HAS_CONTENT)

    with op.batch_alter_table("mailroom_mail_contents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("envelope", sa.Text(), nullable=False, server_default=""))
        batch_op.drop_index(batch_op.f("ix_mailroom_mail_contents_finished_at"))
        batch_op.drop_column("finished_at")
    _backfill_envelopes()


def _backfill_envelopes() -> None:
    """Copy each stored mail's recipients into its content row, a batch of mails at a time."""
    conn = op.get_bind()
    recipients = sa.table("mailroom_mail_recipients", sa.column("mail_id"), sa.column("position"),
                          sa.column("email"))
    contents = sa.table("mailroom_mail_contents", sa.column("mail_id"), sa.column("envelope"))
    update = (sa.update(contents).where(contents.c.mail_id == sa.bindparam("b_mail_id"))
              .values(envelope=sa.bindparam("b_envelope")))
    after = ""
    while True:
        ids = list(conn.execute(sa.select(contents.c.mail_id).where(contents.c.mail_id > after)
                                .order_by(contents.c.mail_id).limit(BACKFILL_BATCH)).scalars())
        if not ids:
            return
        envelopes: dict[str, list[str]] = defaultdict(list)
        for mail_id, email in conn.execute(sa.select(recipients.c.mail_id, recipients.c.email)
                                           .where(recipients.c.mail_id.in_(ids))
                                           .order_by(recipients.c.mail_id, recipients.c.position)):
            envelopes[mail_id].append(email)
        conn.execute(update, [{"b_mail_id": mail_id, "b_envelope": "\n".join(envelopes[mail_id])}
                              for mail_id in ids])
        after = ids[-1]


def downgrade() -> None:
    with op.batch_alter_table("mailroom_mail_contents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finished_at", UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_mailroom_mail_contents_finished_at"), ["finished_at"], unique=False)
        batch_op.drop_column("envelope")
    op.execute("UPDATE mailroom_mail_contents SET finished_at = (SELECT m.finished_at FROM mailroom_mails m "
               "WHERE m.id = mailroom_mail_contents.mail_id)")
    op.drop_index("ix_mailroom_mails_content_finished", table_name="mailroom_mails")
    op.drop_column("mailroom_mails", "has_content")
