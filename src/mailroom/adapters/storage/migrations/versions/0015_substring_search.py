"""substring searches from an index: SQLite's FTS5 trigram word index (filled off the enqueue path), PostgreSQL's
trigram GIN indexes on the searched expressions

Revision ID: 0015_substring_search
Revises: 0014_recipient_domains
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_substring_search"
down_revision = "0014_recipient_domains"
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration stays as it was written.
TRIGRAM_COLUMNS = ("subject", "sender", "receiver", "tags")


def upgrade() -> None:
    op.add_column("mailroom_mails", sa.Column("search_key", sa.Integer(), nullable=True))
    if op.get_context().dialect.name == "postgresql":
        # The very expressions the search compares with LIKE '%...%': the planner reads an index for a rare
        # value and still walks queued_at for a common one.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in TRIGRAM_COLUMNS:
            op.execute(f"CREATE INDEX ix_mailroom_mails_{column}_trigrams ON mailroom_mails "
                       f"USING gin (lower(coalesce({column}, '')) gin_trgm_ops)")
        return
    # Filled by the worker in batches, not by send_mail: indexing a mail's trigrams at enqueue would cost
    # more than the rest of send_mail. Until then a mail is found by a scan of this (small) partial index.
    op.execute("CREATE INDEX ix_mailroom_mails_search_backlog ON mailroom_mails (queued_at) "
               "WHERE search_key IS NULL")
    op.execute("CREATE VIRTUAL TABLE mailroom_mail_words USING fts5("
               "mail_id UNINDEXED, subject, receiver, sender, tags, tokenize = 'trigram')")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for column in TRIGRAM_COLUMNS:
            op.execute(f"DROP INDEX ix_mailroom_mails_{column}_trigrams")
    else:
        op.execute("DROP TABLE mailroom_mail_words")
        op.execute("DROP INDEX ix_mailroom_mails_search_backlog")
    op.drop_column("mailroom_mails", "search_key")
