"""The mail store on SQLAlchemy Core: the queue (Outbox), the log (MailLog) and retention."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Dialect,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import ReturningInsert

from mailroom.adapters.storage import word_index
from mailroom.adapters.storage.bulk import BulkStatement, IdQuery, _Compiled, _Processor, _processor
from mailroom.adapters.storage.claiming import claim_due, resume_claimed
from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.log_queries import LogSearch
from mailroom.adapters.storage.tables import (
    HAS_CONTENT,
    UtcDateTime,
    idempotency_keys,
    mail_attempts,
    mail_contents,
    mail_recipients,
    mails,
)
from mailroom.domain.addresses import domain_of
from mailroom.domain.idempotency import IdempotencyRecord
from mailroom.domain.log import COUNT_LIMIT, HourlyCount, LogPage, LogQuery
from mailroom.domain.outbox import (
    CANCELLABLE_STATUSES,
    CLAIMABLE_STATUSES,
    RETRYABLE_STATUSES,
    DeliveryAttempt,
    MailStatus,
    OutgoingMail,
    RecipientKind,
    RecipientResult,
    RecipientStatus,
    new_claim_token,
)
from mailroom.errors import (
    ConfidentialContent,
    ConfidentialContentGone,
    ConfigurationError,
    InvalidTransition,
    MailNotFound,
    SecretError,
    Text,
    english,
)
from mailroom.ports import ClaimedMail, ContentSealer, DeliveryResult, NewOutgoing

_Rows = list[dict[str, Any]]

_CLAIMABLE = [s.value for s in CLAIMABLE_STATUSES]
_FINAL = sorted(s.value for s in MailStatus if s.is_final)
# Marks a sealed content row. A MIME message starts with a header name, never with a NUL byte, so a
# claim tells sealed from plain content by its first bytes, without reading the mail row again.
SEALED = b"\x00mailroom-sealed-v1\x00"
# A sealed content that no configured key opens waits this long before the next claim tries again.
UNOPENED_RETRY_SECONDS = 300


# The worker's statements, built once: they run for every batch, and building and hashing a statement
# costs more than SQLite takes to run it.
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
_CONTENTS = (select(mail_contents.c.mail_id, mail_contents.c.message, mail_contents.c.envelope)
             .where(mail_contents.c.mail_id.in_(_IDS)))
_INSERT_ATTEMPTS = BulkStatement(insert(mail_attempts))
_ATTEMPT_NUMBERS = select(mail_attempts.c.mail_id, mail_attempts.c.number).where(mail_attempts.c.mail_id.in_(_IDS))
# Finished mails that still have content, oldest first: a range of the partial index of that name.
CONTENT_TO_PURGE = (
    select(mails.c.id).where(HAS_CONTENT, mails.c.finished_at < bindparam("finished_before"))
    .order_by(mails.c.finished_at).limit(bindparam("limit"))
)
# Finished mails of one status, oldest first: a range of the (status, finished_at) index.
MAILS_TO_PURGE = (
    select(mails.c.id).where(mails.c.status == bindparam("status"), mails.c.finished_at < bindparam("finished_before"))
    .order_by(mails.c.finished_at).limit(bindparam("limit"))
)
# The claim token fences the write: a worker whose lease ran out (and whose mail another worker took
# over) must not overwrite the newer state.
_RECORD_OUTCOMES = BulkStatement(
    update(mails)
    .where(mails.c.id == bindparam("b_id"), mails.c.claim_token == bindparam("b_token"))
    .values(status=bindparam("status"), next_attempt_at=bindparam("next_attempt_at"),
            last_error=bindparam("last_error"), last_error_text=bindparam("last_error_text"),
            server_name=bindparam("server_name"),
            updated_at=bindparam("updated_at"), sent_at=bindparam("sent_at"),
            finished_at=bindparam("finished_at"), attempts=bindparam("attempts"), claim_token=null())
)
_HOLDERS_QUERY = select(mails.c.id, mails.c.claim_token, mails.c.confidential).where(mails.c.id.in_(_IDS))
_HOLDERS = IdQuery(_HOLDERS_QUERY)
_HOLDERS_LOCKED = IdQuery(_HOLDERS_QUERY.with_for_update())  # PostgreSQL: no re-claim by others mid-write
_EXTEND_LEASES = (
    update(mails)
    .where(mails.c.id.in_(_IDS), mails.c.claim_token == bindparam("token"),
           mails.c.status == MailStatus.SENDING.value)
    .values(next_attempt_at=bindparam("until", type_=mails.c.next_attempt_at.type))
    .returning(mails.c.id)
)
_SETTLED_RECIPIENTS = (
    select(mail_recipients.c.mail_id, mail_recipients.c.email, mail_recipients.c.status)
    .where(mail_recipients.c.mail_id.in_(_IDS),
           mail_recipients.c.status.in_([s.value for s in RecipientStatus if s.is_done]))
)
_DELIVERED = frozenset({MailStatus.SENT, MailStatus.PARTIALLY_FAILED})
_RECORD_ANSWER_TO_ALL = BulkStatement(
    update(mail_recipients).where(mail_recipients.c.mail_id == bindparam("b_mail_id"))
    .values(status=bindparam("status"), code=bindparam("code"), reply=bindparam("reply"))
)
_RECORD_ANSWER_TO_ONE = BulkStatement(
    update(mail_recipients)
    .where(mail_recipients.c.mail_id == bindparam("b_mail_id"), mail_recipients.c.email == bindparam("b_email"))
    .values(status=bindparam("status"), code=bindparam("code"), reply=bindparam("reply"))
)


class SqlMailStore:
    """Implements the Outbox, MailLog and Retention ports over one Database."""

    def __init__(self, database: Database, sealer: ContentSealer | None = None, *,
                 count_limit: int = COUNT_LIMIT) -> None:
        """``sealer`` encrypts the content of confidential mails; without it they are refused. A filtered
        search counts its mails up to ``count_limit`` (or the end of its page)."""
        self._db = database
        self._sealer = sealer
        self._count_limit = count_limit

    # --- Outbox --------------------------------------------------------------------------------

    def add(self, new_mails: Sequence[NewOutgoing]) -> None:
        if not new_mails:
            return
        rows = self._rows(new_mails)
        if self._db.is_postgres and len(new_mails) == 1 and len(rows[1]) <= _ONE_STATEMENT_RECIPIENTS:
            with self._db.driver_write(one_statement=True) as transaction:
                _ONE_MAIL.execute(transaction.connection, transaction.dialect, *rows)
            return
        copy = self._db.is_postgres and len(new_mails) >= _COPY_FROM
        with self._db.driver_write(pipelined=not copy) as transaction:
            if copy:
                for statement, table_rows in zip(_INSERTS, rows, strict=True):
                    _copy_many(transaction.connection, transaction.dialect, statement, table_rows)
            else:
                _write_mails(transaction.connection, transaction.dialect, *rows)

    def add_once(self, mail: NewOutgoing, record: IdempotencyRecord) -> IdempotencyRecord:
        rows = self._rows([mail])  # built (and sealed) before the transaction: it holds SQLite's write lock
        with self._db.write() as conn:
            # One statement decides: the key's row is inserted, or an expired one taken over; a live one is
            # left alone and returns nothing. On PostgreSQL a concurrent insert of the same key makes this
            # wait for that transaction, then see its row; on SQLite the write lock orders the callers.
            taken = conn.execute(_claim_key(conn.dialect.name, record)).scalar()
            if taken is None:
                held = conn.execute(select(idempotency_keys).where(
                    idempotency_keys.c.scope == record.scope, idempotency_keys.c.key == record.key)).one()
                return IdempotencyRecord(scope=held.scope, key=held.key, request_hash=held.request_hash,
                                         mail_id=held.mail_id, created_at=held.created_at,
                                         expires_at=held.expires_at)
            _write_mails(conn.connection.dbapi_connection, conn.dialect, *rows)
        return record

    def _rows(self, new_mails: Sequence[NewOutgoing]) -> tuple[_Rows, _Rows, _Rows]:
        """The rows of mails, recipients and contents for ``new_mails``."""
        mail_rows: list[dict[str, Any]] = []
        recipient_rows: list[dict[str, Any]] = []
        content_rows: list[dict[str, Any]] = []
        errors: dict[int, tuple[str | None, str | None]] = {}  # a batch's mails share their Text: stored once
        for new in new_mails:
            mail = new.mail
            sender = mail.sender
            error = errors.get(id(new.last_error))
            if error is None:
                error = errors[id(new.last_error)] = (english(new.last_error), _stored_text(new.last_error))
            mail_rows.append({
                "id": new.id,
                "status": _QUEUED,
                "priority": mail.priority.rank,
                "subject": mail.subject,
                "sender": str(sender) if sender else None,
                "envelope_sender": sender.ascii_email if sender else None,
                "receiver": ", ".join([r.email for r in new.recipients]).lower(),
                "message_id": new.message_id,
                "smtp_hint": mail.smtp_hint,
                "tags": "," + ",".join(mail.tags) + "," if mail.tags else None,
                "correlation_id": mail.correlation_id,
                "template": mail.template,
                "locale": mail.locale,
                "queued_at": new.queued_at,
                "send_at": mail.send_at,
                "expires_at": mail.expires_at,
                "next_attempt_at": max(new.queued_at, mail.send_at) if mail.send_at else new.queued_at,
                "attempts": 0,
                "last_error": error[0],
                "last_error_text": error[1],
                "updated_at": new.queued_at,
                "size_bytes": len(new.message),
                "has_from": sender is not None,
                "original_recipients": json.dumps(list(new.original_recipients))
                if new.original_recipients else None,
                "has_content": True,
                "confidential": mail.confidential,
            })
            recipient_rows.extend({
                "mail_id": new.id, "position": position, "kind": r.kind.value, "email": r.email,
                "domain": domain_of(r.email),
                "name": r.name, "status": r.status.value, "code": r.code, "reply": r.reply,
            } for position, r in enumerate(new.recipients))
            content_rows.append({"mail_id": new.id, "message": self._sealed(new) if mail.confidential else new.message,
                                 "envelope": "\n".join([r.email for r in new.recipients])})
        return mail_rows, recipient_rows, content_rows

    def claim(self, *, worker_id: str, limit: int, now: datetime, lease_seconds: float,
              max_bytes: int | None = None, token: str | None = None) -> list[ClaimedMail]:
        token = token or new_claim_token(worker_id)
        with self._db.write() as conn:
            rows = claim_due(conn, token=token, limit=limit, now=now, lease_seconds=lease_seconds)
            if not rows:
                return []
            if max_bytes is not None:
                rows, surplus = _within_bytes(rows, max_bytes)
                # Over the budget: given back in the same transaction, due as they were.
                _give_back(conn, [(row.id, token, row.attempts) for row in surplus], retry_at=now, error=None)
            return self._claimed(conn, rows, token=token, now=now)

    def resume_claim(self, token: str, *, now: datetime, lease_seconds: float) -> list[ClaimedMail]:
        with self._db.write() as conn:
            rows = resume_claimed(conn, token=token, now=now, lease_seconds=lease_seconds)
            return self._claimed(conn, rows, token=token, now=now) if rows else []

    def _claimed(self, conn: Connection, rows: list[Row[Any]], *, token: str, now: datetime) -> list[ClaimedMail]:
        """What the worker needs of the claimed rows: their message, and the recipients still to send to."""
        contents = {mail_id: (message, envelope) for mail_id, message, envelope
                    in conn.execute(_CONTENTS, {"ids": [row.id for row in rows]})}
        rows = self._open_sealed(conn, rows, contents, token=token, now=now)
        # A retry goes only to the recipients earlier attempts did not settle (a 4xx at RCPT defers one).
        retried = [row.id for row in rows if row.attempts > 1]
        settled: dict[str, dict[str, str]] = defaultdict(dict)
        if retried:
            for mail_id, email, status in conn.execute(_SETTLED_RECIPIENTS, {"ids": retried}):
                settled[mail_id][email] = status
        claims = []
        for row in rows:
            message, envelope = contents.get(row.id, (None, ""))  # no content: retention dropped it
            recipients = tuple(envelope.split("\n")) if envelope else ()
            done = settled.get(row.id)
            if done:
                recipients = tuple(r for r in recipients if r not in done)
            statuses = list(done.values()) if done else []
            claims.append(ClaimedMail(
                id=row.id, claim_token=token, message=message, envelope_sender=row.envelope_sender,
                recipients=recipients, smtp_hint=row.smtp_hint,
                attempts=row.attempts, expires_at=row.expires_at, has_from_header=row.has_from,
                accepted_before=statuses.count(RecipientStatus.ACCEPTED.value),
                refused_before=statuses.count(RecipientStatus.REFUSED.value)))
        return claims

    def record(self, results: Sequence[DeliveryResult], *, again: bool = False) -> None:
        if not results:
            return
        with self._db.write() as conn:
            # Every attempt is kept, also one whose claim was lost: it happened. The mail's state and its
            # recipients' answers are written only under the claim token that is still the mail's (a worker
            # whose lease ran out must not overwrite what the worker that took over found).
            attempted = [r for r in results if r.attempted]
            if again and attempted:
                written = {(mail_id, number) for mail_id, number in conn.execute(
                    _ATTEMPT_NUMBERS, {"ids": [r.mail_id for r in attempted]})}
                attempted = [r for r in attempted if (r.mail_id, r.attempt.number) not in written]
            _INSERT_ATTEMPTS.execute(conn, [{
                "mail_id": r.mail_id, "number": r.attempt.number, "started_at": r.attempt.started_at,
                "duration_ms": r.attempt.duration_ms, "server_name": r.attempt.server_name,
                "outcome": r.attempt.outcome.value, "code": r.attempt.code, "reply": r.attempt.reply,
                "reply_text": _stored_text(r.attempt.reply_text), "uncertain": r.attempt.uncertain,
            } for r in attempted])
            holders = _HOLDERS_LOCKED if self._db.is_postgres else _HOLDERS
            rows = holders.rows(conn, [r.mail_id for r in results])
            tokens = {row.id: row.claim_token for row in rows}
            confidential = {row.id for row in rows if row.confidential}
            current = [r for r in results if tokens.get(r.mail_id) == r.claim_token]
            if not current:
                return
            _RECORD_OUTCOMES.execute(conn, [{
                "b_id": r.mail_id, "b_token": r.claim_token, "status": r.status.value,
                "attempts": r.attempt.number if r.attempted else r.attempt.number - 1,
                "next_attempt_at": r.next_attempt_at, "last_error": english(r.error),
                "last_error_text": _stored_text(r.error),
                "server_name": r.attempt.server_name, "updated_at": r.attempt.started_at,
                "sent_at": r.attempt.started_at if r.status in _DELIVERED else None,
                "finished_at": r.attempt.started_at if r.status.is_final else None,
            } for r in current])
            _drop_confidential_contents(conn, [r.mail_id for r in current
                                               if r.mail_id in confidential and r.status.is_final])
            # Rare (a mail queued while no server could lend it a From): one statement each. A confidential mail's
            # content stays sealed as it was; it is dropped once final anyway.
            for r in current:
                if r.lent_from is not None and r.mail_id not in confidential:
                    sender, message, message_id = r.lent_from
                    conn.execute(update(mail_contents).where(mail_contents.c.mail_id == r.mail_id)
                                 .values(message=message))
                    lent: dict[str, Any] = {"sender": sender, "has_from": True}
                    if not self._db.is_postgres:  # indexed again with its new sender
                        word_index.forget(conn, [r.mail_id])
                        lent["search_key"] = None
                    if message_id is not None:
                        lent["message_id"] = message_id
                    conn.execute(update(mails).where(mails.c.id == r.mail_id).values(**lent))
            # Most mails end with every recipient given the same answer (all accepted with one 250): one row
            # per mail then, instead of one per recipient; both on the DBAPI's executemany.
            to_all: list[dict[str, Any]] = []
            one_by_one: list[dict[str, Any]] = []
            for r in current:
                answers = set(r.recipients.values())
                if len(answers) == 1 and r.all_recipients:
                    status, code, reply = answers.pop()
                    to_all.append({"b_mail_id": r.mail_id, "status": status, "code": code, "reply": reply})
                else:
                    one_by_one += [{"b_mail_id": r.mail_id, "b_email": email, "status": status, "code": code,
                                    "reply": reply} for email, (status, code, reply) in r.recipients.items()]
            _RECORD_ANSWER_TO_ALL.execute(conn, to_all)
            _RECORD_ANSWER_TO_ONE.execute(conn, one_by_one)

    def extend_leases(self, claims: Sequence[ClaimedMail], *, until: datetime) -> set[str]:
        if not claims:
            return set()
        by_token: dict[str, list[str]] = defaultdict(list)
        for claim in claims:
            by_token[claim.claim_token].append(claim.id)
        still: set[str] = set()
        with self._db.write() as conn:
            for token, ids in by_token.items():
                still.update(conn.execute(_EXTEND_LEASES, {"ids": ids, "token": token, "until": until}).scalars())
        return still

    def release(self, claims: Sequence[ClaimedMail], *, retry_at: datetime, error: Text | None = None) -> None:
        if not claims:
            return
        with self._db.write() as conn:
            _give_back(conn, [(c.id, c.claim_token, c.attempts) for c in claims], retry_at=retry_at, error=error)

    def next_due_at(self) -> datetime | None:
        with self._db.read() as conn:
            found: datetime | None = conn.execute(
                select(func.min(mails.c.next_attempt_at)).where(mails.c.status.in_(_CLAIMABLE))
            ).scalar()
            return found

    def requeue(self, mail_id: str, now: datetime) -> OutgoingMail:
        with self._db.write() as conn:
            status = self._status(conn, mail_id)
            if status not in RETRYABLE_STATUSES:
                raise InvalidTransition(mail_id, status, "retry", "failed, cancelled or deferred mails", "retried")
            has_content, confidential = conn.execute(
                select(mails.c.has_content, mails.c.confidential).where(mails.c.id == mail_id)).one()
            if confidential and not has_content:
                raise ConfidentialContentGone(mail_id, status)
            if not has_content:
                raise InvalidTransition(mail_id, Text("{status} and its content was dropped by retention",
                                                      {"status": Text(status)}),
                                        "retry", "mails that still have their content", "retried")
            if status == MailStatus.DEFERRED.value:
                # "Retry now": due at once, as the next attempt it was waiting for. Its attempts so far and the
                # recipients that already answered stay, so the retry policy's limit and a partial delivery hold.
                conn.execute(update(mails).where(mails.c.id == mail_id).values(next_attempt_at=now, updated_at=now))
                return self._load(conn, mail_id)
            conn.execute(update(mails).where(mails.c.id == mail_id).values(
                status=MailStatus.QUEUED.value, attempts=0, next_attempt_at=now, finished_at=None,
                last_error=None, last_error_text=None, updated_at=now, claim_token=None))
            conn.execute(update(mail_recipients).where(mail_recipients.c.mail_id == mail_id).values(
                status=RecipientStatus.PENDING.value, code=None, reply=None))
            return self._load(conn, mail_id)

    def cancel(self, mail_id: str, now: datetime) -> OutgoingMail:
        with self._db.write() as conn:
            status = self._status(conn, mail_id)
            if status not in CANCELLABLE_STATUSES:
                raise InvalidTransition(mail_id, status, "cancel", "queued or deferred mails", "cancelled")
            conn.execute(update(mails).where(mails.c.id == mail_id).values(
                status=MailStatus.CANCELLED.value, next_attempt_at=None, finished_at=now, updated_at=now,
                last_error="cancelled", last_error_text=None))
            _drop_confidential_contents(conn, [mail_id])
            return self._load(conn, mail_id)

    # --- MailLog -------------------------------------------------------------------------------

    def get(self, mail_id: str) -> OutgoingMail:
        with self._db.read() as conn:
            return self._load(conn, mail_id, with_attempts=True)

    def raw_message(self, mail_id: str) -> bytes | None:
        with self._db.read() as conn:
            confidential = conn.execute(select(mails.c.confidential).where(mails.c.id == mail_id)).scalar()
            if confidential is None:
                raise MailNotFound(mail_id)
            if confidential:
                raise ConfidentialContent(mail_id)
            message: bytes | None = conn.execute(
                select(mail_contents.c.message).where(mail_contents.c.mail_id == mail_id)).scalar()
            return message

    def search(self, query: LogQuery) -> LogPage:
        with self._db.read() as conn:
            search = LogSearch(conn, query, with_word_index=not self._db.is_postgres)
            total, exact = search.count(self._count_limit) if query.with_total else (None, True)
            known = total if exact else None
            rows = search.rows(known)
            recipients = self._recipients(conn, [row.id for row in rows])
        items = [_to_outgoing(row, recipients.get(row.id, ()), ()) for row in rows]
        return LogPage(items=items, total=total, offset=query.offset, limit=query.limit, total_exact=exact,
                       next_after=search.next_after(rows, known))

    def index_for_search(self, limit: int) -> int:
        """Add up to ``limit`` new mails to SQLite's word index; returns how many (0 on PostgreSQL, whose
        indexes keep themselves)."""
        if self._db.is_postgres:
            return 0
        with self._db.write() as conn:
            return word_index.index_new_mails(conn, limit)

    def delete(self, mail_ids: Sequence[str]) -> int:
        if not mail_ids:
            return 0
        with self._db.write() as conn:
            return _delete_mails(conn, list(mail_ids))

    def counts_by_status(self) -> dict[MailStatus, int]:
        with self._db.read() as conn:
            rows = conn.execute(select(mails.c.status, func.count()).group_by(mails.c.status)).all()
        return {MailStatus(status): count for status, count in rows}

    def statuses(self, mail_ids: Sequence[str]) -> dict[str, MailStatus]:
        if not mail_ids:
            return {}
        with self._db.read() as conn:
            rows = conn.execute(select(mails.c.id, mails.c.status).where(mails.c.id.in_(set(mail_ids)))).all()
        return {mail_id: MailStatus(status) for mail_id, status in rows}

    def hourly_counts(self, since: datetime) -> list[HourlyCount]:
        # Filtering on (status, finished_at) first lets the index of that name pick the recent rows;
        # old mails are never read however large the log grows.
        hour = type_coerce(self._hour_of(mails.c.finished_at), UtcDateTime())
        statuses = [MailStatus.SENT.value, MailStatus.FAILED.value]
        with self._db.read() as conn:
            rows = conn.execute(
                select(hour.label("hour"), mails.c.status, func.count())
                .where(mails.c.status.in_(statuses), mails.c.finished_at >= since)
                .group_by(hour, mails.c.status)
            ).all()
        counts: dict[datetime, dict[str, int]] = defaultdict(dict)
        for moment, status, count in rows:
            counts[moment][status] = count
        return [HourlyCount(hour=moment, sent=by_status.get(MailStatus.SENT.value, 0),
                            failed=by_status.get(MailStatus.FAILED.value, 0))
                for moment, by_status in sorted(counts.items())]

    def _hour_of(self, column: ColumnElement[datetime]) -> ColumnElement[Any]:
        """The start of the UTC hour of a timestamp column, as the dialect spells it.

        Constants are literal SQL, not bound parameters: PostgreSQL would otherwise see the expression in
        SELECT and in GROUP BY as two different ones (``$1`` vs ``$3``) and refuse the query.
        """
        if self._db.is_postgres:
            return func.date_trunc(literal_column("'hour'"), func.timezone(literal_column("'UTC'"), column))
        # SQLite keeps UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
        return func.strftime(literal_column("'%Y-%m-%d %H:00:00'"), column)

    # --- Retention -----------------------------------------------------------------------------

    def purge_mails(self, *, status: MailStatus, finished_before: datetime, batch_size: int) -> int:
        with self._db.write() as conn:
            ids = list(conn.execute(MAILS_TO_PURGE, {"status": status.value, "finished_before": finished_before,
                                                     "limit": batch_size}).scalars())
            return _delete_mails(conn, ids) if ids else 0

    def purge_idempotency_keys(self, *, expired_before: datetime, batch_size: int) -> int:
        with self._db.write() as conn:
            expired = (select(idempotency_keys.c.scope, idempotency_keys.c.key)
                       .where(idempotency_keys.c.expires_at < expired_before)
                       .order_by(idempotency_keys.c.expires_at).limit(batch_size))
            pairs = [tuple(row) for row in conn.execute(expired)]
            if pairs:
                conn.execute(delete(idempotency_keys).where(
                    tuple_(idempotency_keys.c.scope, idempotency_keys.c.key).in_(pairs)))
            return len(pairs)

    def purge_contents(self, *, finished_before: datetime, batch_size: int) -> int:
        with self._db.write() as conn:
            ids = list(conn.execute(CONTENT_TO_PURGE, {"finished_before": finished_before, "limit": batch_size})
                       .scalars())
            if ids:
                conn.execute(delete(mail_contents).where(mail_contents.c.mail_id.in_(ids)))
                conn.execute(update(mails).where(mails.c.id.in_(ids)).values(has_content=False))
            return len(ids)

    # --- helpers -------------------------------------------------------------------------------

    def _sealed(self, new: NewOutgoing) -> bytes:
        if self._sealer is None:
            raise ConfigurationError(f"mail {new.id} is confidential, and this mail store has no secret key "
                                     "to seal its content: build SqlMailStore with the secret box")
        return SEALED + self._sealer.seal(new.message)

    def _open_sealed(self, conn: Connection, rows: list[Row[Any]], contents: dict[str, tuple[bytes, str]], *,
                     token: str, now: datetime) -> list[Row[Any]]:
        """Open the sealed contents among a claim's (in ``contents``, in place), so that the worker gets
        the message it sends; the rows whose content no configured key opens go back to the queue with
        the reason as last error, to go out once the old key is configured again."""
        unopened: list[Row[Any]] = []
        for row in rows:
            message, envelope = contents.get(row.id, (b"", ""))
            if not message.startswith(SEALED):
                continue
            try:
                if self._sealer is None:
                    raise SecretError("a claimed mail is confidential, and this mail store has no secret key to "
                                      "open its content: build SqlMailStore with the secret box")
                contents[row.id] = (self._sealer.open(message[len(SEALED):]), envelope)
            except SecretError as exc:
                unopened.append(row)
                error = exc.text
        if not unopened:
            return rows
        _give_back(conn, [(row.id, token, row.attempts) for row in unopened],
                   retry_at=now + timedelta(seconds=UNOPENED_RETRY_SECONDS), error=error)
        given_back = {row.id for row in unopened}
        return [row for row in rows if row.id not in given_back]

    @staticmethod
    def _status(conn: Connection, mail_id: str) -> MailStatus:
        status = conn.execute(select(mails.c.status).where(mails.c.id == mail_id)).scalar()
        if status is None:
            raise MailNotFound(mail_id)
        return MailStatus(status)

    def _load(self, conn: Connection, mail_id: str, *, with_attempts: bool = False) -> OutgoingMail:
        row = conn.execute(select(mails).where(mails.c.id == mail_id)).first()
        if row is None:
            raise MailNotFound(mail_id)
        attempts: tuple[DeliveryAttempt, ...] = ()
        if with_attempts:
            attempts = tuple(
                DeliveryAttempt(number=a.number, started_at=a.started_at, duration_ms=a.duration_ms,
                                server_name=a.server_name, outcome=MailStatus(a.outcome), code=a.code,
                                reply=a.reply, uncertain=a.uncertain, reply_text=_loaded_text(a.reply_text))
                for a in conn.execute(select(mail_attempts).where(mail_attempts.c.mail_id == mail_id)
                                      .order_by(mail_attempts.c.id))
            )
        return _to_outgoing(row, self._recipients(conn, [mail_id]).get(mail_id, ()), attempts)

    @staticmethod
    def _recipients(conn: Connection, ids: list[str]) -> dict[str, tuple[RecipientResult, ...]]:
        if not ids:
            return {}
        found: dict[str, list[RecipientResult]] = defaultdict(list)
        for r in conn.execute(select(mail_recipients).where(mail_recipients.c.mail_id.in_(ids))
                              .order_by(mail_recipients.c.mail_id, mail_recipients.c.position)):
            found[r.mail_id].append(RecipientResult(email=r.email, kind=RecipientKind(r.kind), name=r.name,
                                                    status=RecipientStatus(r.status), code=r.code,
                                                    reply=r.reply))
        return {k: tuple(v) for k, v in found.items()}


def _write_mails(driver: Any, dialect: Dialect, mail_rows: _Rows, recipient_rows: _Rows,
                 content_rows: _Rows) -> None:
    """Inside a transaction of ``driver`` (the DBAPI connection)."""
    _insert_many(driver, dialect, _INSERT_MAILS, mail_rows)
    _insert_many(driver, dialect, _INSERT_RECIPIENTS, recipient_rows)
    _insert_many(driver, dialect, _INSERT_CONTENTS, content_rows)


def _claim_key(dialect: str, record: IdempotencyRecord) -> ReturningInsert[tuple[str]]:
    """INSERT the key, or take over its row when that one expired; RETURNING the mail id when either
    happened (nothing when a live key holds the name). Both dialects spell the upsert alike."""
    insert_for = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_for(idempotency_keys).values(
        scope=record.scope, key=record.key, request_hash=record.request_hash, mail_id=record.mail_id,
        created_at=record.created_at, expires_at=record.expires_at)
    return statement.on_conflict_do_update(
        index_elements=[idempotency_keys.c.scope, idempotency_keys.c.key],
        set_={name: statement.excluded[name] for name in ("request_hash", "mail_id", "created_at", "expires_at")},
        where=idempotency_keys.c.expires_at <= record.created_at,
    ).returning(idempotency_keys.c.mail_id)


def _insert_many(driver: Any, dialect: Dialect, statement: _InsertStatement, rows: list[dict[str, Any]]) -> None:
    """One executemany on the DBAPI cursor of ``conn``'s transaction (psycopg pipelines it).

    Going through ``Connection.execute`` cost more per mail than the database takes to store it: a new
    Core statement, its cache key, an execution context and each row's parameters processed per call.
    DBAPI errors are raised as SQLAlchemy's, so that the Database translates them like any other.
    """
    compiled = statement.compiled(dialect, tuple(rows[0]))
    params: Any = compiled.rows(rows)
    cursor = driver.cursor()
    try:
        with _raised_as_sqlalchemy(compiled.sql, dialect):
            cursor.executemany(compiled.sql, params)
    finally:
        cursor.close()


@contextmanager
def _raised_as_sqlalchemy(sql: str, dialect: Dialect) -> Iterator[None]:
    """A DBAPI error on the driver's connection raised as SQLAlchemy's (parameters hidden: they hold addresses
    and contents), so that the Database translates it like any other."""
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  dialect=dialect) from exc


def _copy_many(driver: Any, dialect: Dialect, statement: _InsertStatement, rows: list[dict[str, Any]]) -> None:
    """The rows by PostgreSQL's COPY (psycopg's ``write_row``): per row about half the client's CPU of an
    executemany's, whose every row is a Bind and an Execute. Same values, same bind processors."""
    compiled = statement.compiled(dialect, tuple(rows[0]))
    quote = dialect.identifier_preparer.quote
    sql = (f"COPY {quote(statement.table.name)} ({', '.join(quote(name) for name, _ in compiled.binds)}) "
           "FROM STDIN")
    with _raised_as_sqlalchemy(sql, dialect), driver.cursor() as cursor, cursor.copy(sql) as copy:
        for values in compiled.tuples(rows):
            copy.write_row(values)


class _InsertStatement:
    """An INSERT of a table's rows, compiled once per dialect and set of columns (see bulk.py)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._statement = insert(table)
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            found = self._compiled[(dialect.name, keys)] = _Compiled(self._statement, dialect, keys)
        return found


class _OneMailStatement:
    """One mail's three INSERTs as one PostgreSQL statement (data-modifying CTEs), compiled once per set of
    columns and number of recipients. A statement is atomic: run in autocommit it stores the mail in one
    round trip, without BEGIN, COMMIT and psycopg's pipeline, which cost ~80 µs of send_mail's CPU."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[Any, ...], tuple[str, list[tuple[str, int, int, str, _Processor]]]] = {}

    def execute(self, driver: Any, dialect: Dialect, mail_rows: _Rows, recipient_rows: _Rows,
                content_rows: _Rows) -> None:
        tables = (mail_rows, recipient_rows, content_rows)
        key = tuple((len(rows), tuple(rows[0])) for rows in tables)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(dialect, tables)
        sql, binds = found
        parameters = {}
        for name, table, number, column, process in binds:
            value = tables[table][number][column]
            parameters[name] = process(value) if process else value
        with _raised_as_sqlalchemy(sql, dialect):
            driver.execute(sql, parameters)

    @staticmethod
    def _compile(dialect: Dialect, tables: tuple[_Rows, _Rows, _Rows]
                 ) -> tuple[str, list[tuple[str, int, int, str, _Processor]]]:
        sources: dict[str, tuple[int, int, str]] = {}
        ctes: list[Any] = []
        for number, (table, rows) in enumerate(zip((mails, mail_recipients, mail_contents), tables, strict=True)):
            values: list[dict[str, Any]] = []
            for row_number, row in enumerate(rows):
                names: dict[str, Any] = {}
                for column in row:
                    name = f"t{number}_{row_number}_{column}"
                    sources[name] = (number, row_number, column)
                    names[column] = bindparam(name, type_=table.c[column].type)
                values.append(names)
            ctes.append(insert(table).values(values).cte(f"new_{table.name}"))
        compiled = select(literal_column("1")).add_cte(*ctes).compile(dialect=dialect)
        binds = [(name, *sources[name], _processor(bind.type, dialect)) for name, bind in compiled.binds.items()]
        return str(compiled), binds


# More recipients than this: the three INSERTs go the general way (one compiled statement per number of them).
_ONE_STATEMENT_RECIPIENTS = 16
_ONE_MAIL = _OneMailStatement()
_QUEUED = MailStatus.QUEUED.value
_INSERT_MAILS = _InsertStatement(mails)
_INSERT_RECIPIENTS = _InsertStatement(mail_recipients)
_INSERT_CONTENTS = _InsertStatement(mail_contents)
_INSERTS = (_INSERT_MAILS, _INSERT_RECIPIENTS, _INSERT_CONTENTS)
# A batch of this many mails or more goes into PostgreSQL by COPY: three round trips more than a pipeline,
# worth it from a few dozen rows on.
_COPY_FROM = 32


# A confidential mail that has reached a final status (by the worker's result or a cancel) loses its
# content at once. The status is read from the row, not from the result: a worker whose lease was lost
# wrote nothing, and must not take the content away from the worker now delivering the mail.
_FINISHED_CONFIDENTIAL = (
    select(mails.c.id)
    .where(mails.c.id.in_(_IDS), mails.c.confidential.is_(True), mails.c.has_content.is_(True),
           mails.c.status.in_(_FINAL))
)
_DROP_CONFIDENTIAL_CONTENTS = delete(mail_contents).where(mail_contents.c.mail_id.in_(_FINISHED_CONFIDENTIAL))
_MARK_CONFIDENTIAL_DROPPED = (
    update(mails).where(mails.c.id.in_(_FINISHED_CONFIDENTIAL)).values(has_content=False)
)


def _drop_confidential_contents(conn: Connection, mail_ids: list[str]) -> None:
    """Delete the contents of those of ``mail_ids`` that are confidential and final (in the caller's
    transaction): nothing needs them any more, and a content that is gone cannot leak."""
    if mail_ids:
        conn.execute(_DROP_CONFIDENTIAL_CONTENTS, {"ids": mail_ids})
        conn.execute(_MARK_CONFIDENTIAL_DROPPED, {"ids": mail_ids})


def _delete_mails(conn: Connection, ids: list[str]) -> int:
    if conn.dialect.name == "sqlite":
        word_index.forget(conn, ids)
    # Children first: SQLite only cascades with foreign_keys=ON, and not every engine is ours.
    for child, column in ((mail_recipients, mail_recipients.c.mail_id), (mail_attempts, mail_attempts.c.mail_id),
                          (mail_contents, mail_contents.c.mail_id)):
        conn.execute(delete(child).where(column.in_(ids)))
    return conn.execute(delete(mails).where(mails.c.id.in_(ids))).rowcount


def _to_outgoing(row: Row[Any], recipients: tuple[RecipientResult, ...],
                 attempts: tuple[DeliveryAttempt, ...]) -> OutgoingMail:
    priority = {3: "high", 2: "normal", 1: "low"}.get(row.priority, "normal")
    return OutgoingMail(
        id=row.id, status=MailStatus(row.status), subject=row.subject, sender=row.sender,
        recipients=recipients, priority=priority, queued_at=row.queued_at,
        next_attempt_at=row.next_attempt_at, attempts=row.attempts, last_error=row.last_error,
        last_error_text=_loaded_text(row.last_error_text),
        server_name=row.server_name, message_id=row.message_id, sent_at=row.sent_at,
        finished_at=row.finished_at, send_at=row.send_at, expires_at=row.expires_at,
        smtp_hint=row.smtp_hint, tags=tuple(t for t in (row.tags or "").split(",") if t),
        correlation_id=row.correlation_id, template=row.template, locale=row.locale,
        original_recipients=tuple(json.loads(row.original_recipients)) if row.original_recipients else (),
        size_bytes=row.size_bytes, has_content=row.has_content, confidential=row.confidential,
        attempt_log=attempts,
    )


def _within_bytes(rows: list[Row[Any]], max_bytes: int) -> tuple[list[Row[Any]], list[Row[Any]]]:
    """The leading rows whose messages add up to at most ``max_bytes`` (the first always), and the rest."""
    total = 0
    for count, row in enumerate(rows):
        total += row.size_bytes
        if total > max_bytes and count > 0:
            return rows[:count], rows[count:]
    return rows, []


def _stored_text(text: Text | None) -> str | None:
    """A last error as its template and values (JSON), so that each edge shows it in its own language."""
    return None if text is None else json.dumps(text.to_json(), ensure_ascii=False)


def _loaded_text(stored: str | None) -> Text | None:
    return Text.from_json(json.loads(stored)) if stored else None


def _give_back(conn: Connection, claims: list[tuple[str, str, int]], *, retry_at: datetime,
               error: Text | None) -> None:
    """Return claimed mails (id, claim token, attempts) to the queue without counting the attempt."""
    if not claims:
        return
    values: dict[str, Any] = {"status": bindparam("status"), "attempts": bindparam("attempts"),
                              "next_attempt_at": retry_at, "claim_token": None}
    if error is not None:
        values["last_error"] = str(error)
        values["last_error_text"] = _stored_text(error)
    conn.execute(
        update(mails)
        .where(mails.c.id == bindparam("b_id"), mails.c.claim_token == bindparam("b_token"))
        .values(**values),
        [{"b_id": mail_id, "b_token": token, "attempts": attempts - 1,
          "status": (MailStatus.QUEUED if attempts <= 1 else MailStatus.DEFERRED).value}
         for mail_id, token, attempts in claims],
    )
