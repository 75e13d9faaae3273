"""Log search at 1,000,000 mails (issue #12 item 2): how long the mail log's searches take today.

A fresh database (an SQLite file in a temp dir; PostgreSQL: a fresh database on ``--pg-admin``) is migrated and
filled directly with ``--mails`` mails and their recipients: no MIME content (the log search reads only
mailroom_mails and mailroom_mail_recipients), each mail's row generated in the database by one
``INSERT ... SELECT`` over a number sequence (SQLite: a recursive CTE; PostgreSQL: generate_series), values
picked by multiplicative hashes of the mail's number from small lookup tables (the secondary indexes are dropped
for the inserts and created again after them from the database's own definitions):

- ids as mailroom makes them: 32 hex digits, time-ordered (the queued_at millisecond first, then the number);
- queued_at spread evenly over the last 90 days, so id order is queued_at order;
- ~50,000 recipient addresses over ~2,000 domains, 1 to 3 recipients per mail (``receiver`` as mailroom fills
  it: the lower-cased addresses joined by ", ");
- 20 senders, subjects from 400 word combinations (half with an order number), tags on 20 % of the mails;
- SQLite: every mail in the word index, as the worker leaves it (the newest 20,000 are then taken out and
  indexed again through the store, as the worker does, to time it: "indexed ...");
- statuses mostly sent, 4 % failed, 1 % partially failed, 0.5 % cancelled; queued and deferred mails only in
  the last 3 % of the time range, as a live queue has them; the server among 3.

Then ANALYZE (PostgreSQL: VACUUM ANALYZE, the state autovacuum leaves a table in; SQLite: the WAL is
checkpointed) and each query kind is run ``--runs`` times through the real store
(``SqlMailStore(Database(url)).search(LogQuery(...))``, a page of 50 with the total, as the UI asks), each run
with other values (another address, domain, word, week, ...), timed with ``time.perf_counter``. A kind whose
query took longer than 10 s is stopped after that run. ``--explain`` prints, for the first run of each kind,
the statements the store ran with their plan (SQLite: EXPLAIN QUERY PLAN and the statement's own time;
PostgreSQL: EXPLAIN (ANALYZE, BUFFERS)).

    python bench/search.py [--mails 1000000] [--runs 20] [--no-sqlite] [--no-postgres] [--explain]
                           [--pg-admin postgresql+psycopg://postgres@127.0.0.1/postgres]

bench/run.py calls ``run(args)``, which returns ``{database: {kind: [p50_ms, p95_ms]}}``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # bench/enqueue.py, also when run through runpy

from enqueue import postgres_database
from sqlalchemy import event

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.mail_store import SqlMailStore
from mailroom.adapters.storage.tables import WORD_INDEX
from mailroom.domain.log import MAX_OFFSET, LogQuery, PageCursor, SortKey
from mailroom.domain.log_search import parse_search
from mailroom.domain.outbox import MailStatus
from mailroom.worker import SEARCH_INDEX_BATCH

PAGE = 50
REINDEXED = 20_000  # SQLite: mails the worker's indexer adds again after the fill, to time it
SLOW_SECONDS = 10.0
SPAN = timedelta(days=90)
ADDRESSES = 50_000
DOMAINS = 2_000
SERVERS = ("relay-eu", "relay-us", "fallback")
SUBJECT_STARTS = ("Your", "New", "Updated", "Reminder:", "Re:", "Fwd:", "Weekly", "Monthly", "Important:",
                  "Action required:", "Welcome to your", "Confirm your", "About your", "Final", "Second",
                  "Quarterly", "Urgent:", "Pending", "Cancelled", "Shipped:")
SUBJECT_WORDS = ("invoice", "order", "account", "password reset", "newsletter", "subscription", "delivery",
                 "appointment", "receipt", "statement", "report", "payment", "booking", "ticket", "registration",
                 "contract", "offer", "survey", "shipment", "meeting")
TAG_SETS = ("billing", "newsletter", "newsletter,weekly", "password-reset", "welcome", "order", "order,shipping",
            "reminder", "report,monthly", "campaign-spring", "billing,dunning", "survey")
SENDER_ROLES = ("shop", "noreply", "billing", "support", "news", "orders", "accounts", "hello", "team", "alerts")
SENDER_BRANDS = ("example-shop.com", "mailroom-bench.org")
FIRST_NAMES = ("anna", "ben", "clara", "david", "emma", "felix", "greta", "hans", "ida", "jonas", "karla", "lukas",
               "mia", "noah", "olga", "paul", "quentin", "rosa", "sven", "tara", "ulla", "viktor", "wanda", "xaver",
               "yara", "zoe", "amir", "bela", "chen", "dana", "eli", "fatima", "gil", "hana", "igor", "jana", "kemal",
               "lea", "milan", "nora", "omar", "pia", "rafael", "sara", "tom", "uma", "vera", "wim", "yusuf", "zara")
LAST_NAMES = ("mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker", "schulz",
              "hoffmann", "koch", "richter", "klein", "wolf", "neumann", "schwarz", "braun", "zimmermann", "krueger",
              "hartmann", "lange", "werner", "krause", "lehmann", "koehler", "maier", "kaiser", "fuchs", "peters",
              "jung", "moeller", "scholz", "gross", "berger", "frank", "roth", "beck", "lorenz", "bauer", "vogel",
              "otto", "sommer", "kraus", "boehm", "winter", "haas", "graf", "heinrich", "seidel", "brandt")
SYLLABLES = ("al", "be", "co", "da", "el", "fo", "ga", "hi", "ka", "lo", "ma", "ne", "or", "pa", "qu", "ri", "sa",
             "to", "ul", "ve", "wo", "xi", "yo", "ze")
TLDS = ("com", "de", "org", "net", "eu", "io", "fr", "nl")

# Multiplicative hashes: the high bits of (i * odd constant) mod 2**32 spread consecutive numbers evenly, and two
# constants give two nearly independent picks for the same mail.
MODULUS = 2**32
HASHES = {"status": 2654435761, "a0": 2246822519, "a1": 3266489917, "a2": 668265263, "subject": 374761393,
          "sender": 3432918353, "tag": 461845907, "server": 1500450271, "number": 2869860233, "size": 1117239961,
          "recipients": 2034011593}

KINDS = ("landing page", "exact recipient (to:)", "recipient domain", "sender", "subject words", "rare subject word",
         "no match", "tag", "status + time range", "server", "deep page", "next page (cursor)", "last page")


def pick(i: int, name: str, size: int) -> int:
    """The same pick as ``_hash_sql`` makes in the database, for query values that are sure to exist."""
    return (i * HASHES[name]) % MODULUS * size // MODULUS


def _hash_sql(name: str, size: int) -> str:
    return f"((((i * {HASHES[name]}) % {MODULUS}) * {size}) / {MODULUS})"


@dataclass(frozen=True)
class Corpus:
    """The lookup values the database picks from; the same for both databases (a fixed seed)."""

    addresses: list[str]
    domains: list[str]
    senders: list[tuple[str, str]]  # (the From as stored, the bare address)
    subjects: list[str]
    tags: list[str]  # one entry per tagged bucket (20 of 100), as stored: ",a,b,"

    @classmethod
    def make(cls) -> Corpus:
        rng = random.Random(12)
        domains: list[str] = []
        seen: set[str] = set()
        while len(domains) < DOMAINS:
            name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) + "." + rng.choice(TLDS)
            if name not in seen:
                seen.add(name)
                domains.append(name)
        # first x last x number is unique by construction; the domain is a random one of the 2,000.
        addresses = [f"{FIRST_NAMES[n % 50]}.{LAST_NAMES[n // 50 % 50]}{n // 2500 or ''}@{rng.choice(domains)}"
                     for n in range(ADDRESSES)]
        senders = []
        for n in range(20):
            email = f"{SENDER_ROLES[n % 10]}@{SENDER_BRANDS[n // 10]}"
            senders.append((f"{SENDER_ROLES[n % 10].title()} <{email}>" if n % 3 else email, email))
        subjects = [f"{start} {word}" for start in SUBJECT_STARTS for word in SUBJECT_WORDS]
        tags = [f",{TAG_SETS[n % len(TAG_SETS)]}," for n in range(20)]
        return cls(addresses, domains, senders, subjects, tags)


def _timestamp_sql(dialect: str, ms: str) -> str:
    if dialect == "sqlite":  # the text SQLAlchemy stores: 'YYYY-MM-DD HH:MM:SS.ffffff', naive UTC
        return f"(strftime('%Y-%m-%d %H:%M:%f', ({ms}) / 1000.0, 'unixepoch') || '000')"
    return f"to_timestamp(({ms}) / 1000.0)"


def _base_sql(dialect: str, mails: int, start_ms: int, span_ms: int) -> str:
    """A WITH clause naming ``base``: one row per mail with its id, status, number of recipients and picks."""
    if dialect == "sqlite":
        head = f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {mails}), "
        source = "seq"
        ident = "printf('%012x%020x', ms, i)"
    else:
        head = "WITH "
        source = f"generate_series(CAST(1 AS BIGINT), CAST({mails} AS BIGINT)) AS seq(i)"
        ident = "lpad(to_hex(ms), 12, '0') || lpad(to_hex(i), 20, '0')"
    recent = mails - mails * 3 // 100
    picks = ", ".join(f"{_hash_sql(name, size)} AS h_{name}" for name, size in (
        ("status", 1000), ("a0", ADDRESSES), ("a1", ADDRESSES), ("a2", ADDRESSES), ("subject", 400),
        ("sender", 20), ("tag", 100), ("server", 100), ("number", 100_000), ("size", 60_000), ("recipients", 100)))
    return (
        f"{head}raw AS (SELECT i, {start_ms} + (i * {span_ms}) / {mails} AS ms, {picks} FROM {source}), "
        f"base AS (SELECT raw.*, {ident} AS id, "
        f"CASE WHEN i > {recent} AND h_status < 400 THEN 'queued' WHEN i > {recent} AND h_status < 600 "
        "THEN 'deferred' WHEN h_status < 40 THEN 'failed' WHEN h_status < 50 THEN 'partially_failed' "
        "WHEN h_status < 55 THEN 'cancelled' ELSE 'sent' END AS st, "
        "CASE WHEN h_recipients < 5 THEN 3 WHEN h_recipients < 12 THEN 2 ELSE 1 END AS nr FROM raw) ")


def _mails_sql(dialect: str, mails: int, start_ms: int, span_ms: int) -> str:
    def ts(ms: str) -> str:
        return _timestamp_sql(dialect, ms)

    done = "b.st IN ('sent', 'failed', 'partially_failed', 'cancelled')"
    return (
        "INSERT INTO mailroom_mails (id, status, priority, subject, sender, envelope_sender, receiver, message_id, "
        "tags, queued_at, next_attempt_at, attempts, last_error, server_name, sent_at, finished_at, updated_at, "
        "size_bytes, has_from, has_content, confidential, search_key) "
        + _base_sql(dialect, mails, start_ms, span_ms)
        + "SELECT b.id, b.st, CASE WHEN b.i % 20 = 0 THEN 3 WHEN b.i % 20 = 1 THEN 1 ELSE 2 END, "
        "s.subject || CASE WHEN b.h_number % 2 = 0 THEN ' #' || CAST(b.h_number AS TEXT) ELSE '' END, "
        "f.display, f.email, "
        "a0.email || COALESCE(', ' || a1.email, '') || COALESCE(', ' || a2.email, ''), "
        "'<' || b.id || '@bench.mailroom.invalid>', t.tags, "
        f"{ts('b.ms')}, "
        f"CASE b.st WHEN 'queued' THEN {ts('b.ms')} WHEN 'deferred' THEN {ts('b.ms + 900000')} END, "
        "CASE b.st WHEN 'queued' THEN 0 WHEN 'cancelled' THEN 0 WHEN 'failed' THEN 3 "
        "ELSE 1 + CASE WHEN b.h_number % 10 = 0 THEN 1 ELSE 0 END END, "
        "CASE b.st WHEN 'failed' THEN '550 5.1.1 <' || a0.email || '>: Recipient address rejected' "
        "WHEN 'partially_failed' THEN '550 5.1.1 some recipients were refused' "
        "WHEN 'deferred' THEN '421 4.7.0 Try again later' END, "
        "CASE WHEN b.st IN ('queued', 'cancelled') THEN NULL "
        f"WHEN b.h_server < 45 THEN '{SERVERS[0]}' WHEN b.h_server < 90 THEN '{SERVERS[1]}' "
        f"ELSE '{SERVERS[2]}' END, "
        f"CASE WHEN b.st IN ('sent', 'partially_failed') THEN {ts('b.ms + 1500')} END, "
        f"CASE WHEN {done} THEN {ts('b.ms + 1500')} END, "
        f"CASE WHEN {done} THEN {ts('b.ms + 1500')} ELSE {ts('b.ms')} END, "
        "2000 + b.h_size, TRUE, FALSE, FALSE, "
        # SQLite: every mail already in the word index (filled below), as the worker would have left it.
        + ("b.i " if dialect == "sqlite" else "NULL ") +
        "FROM base b "
        "JOIN bench_subjects s ON s.n = b.h_subject "
        "JOIN bench_senders f ON f.n = b.h_sender "
        "JOIN bench_addresses a0 ON a0.n = b.h_a0 "
        "LEFT JOIN bench_addresses a1 ON b.nr >= 2 AND a1.n = b.h_a1 "
        "LEFT JOIN bench_addresses a2 ON b.nr >= 3 AND a2.n = b.h_a2 "
        "LEFT JOIN bench_tags t ON t.n = b.h_tag")


def _recipients_sql(dialect: str, mails: int, start_ms: int, span_ms: int) -> str:
    return (
        "INSERT INTO mailroom_mail_recipients (mail_id, position, kind, email, domain, name, status, code) "
        + _base_sql(dialect, mails, start_ms, span_ms)
        + "SELECT b.id, p.p, CASE WHEN p.p = 2 THEN 'cc' ELSE 'to' END, a.email, "
        + ("lower(split_part(a.email, '@', 2)), '', " if dialect == "postgresql"
           else "lower(substr(a.email, instr(a.email, '@') + 1)), '', ")
        + "CASE b.st WHEN 'sent' THEN 'accepted' WHEN 'failed' THEN 'refused' WHEN 'deferred' THEN 'deferred' "
        "WHEN 'partially_failed' THEN CASE WHEN p.p = 0 AND b.nr > 1 THEN 'accepted' ELSE 'refused' END "
        "ELSE 'pending' END, "
        "CASE b.st WHEN 'sent' THEN 250 WHEN 'failed' THEN 550 WHEN 'deferred' THEN 421 "
        "WHEN 'partially_failed' THEN CASE WHEN p.p = 0 AND b.nr > 1 THEN 250 ELSE 550 END END "
        "FROM base b JOIN bench_positions p ON p.p < b.nr "
        "JOIN bench_addresses a ON a.n = CASE p.p WHEN 0 THEN b.h_a0 WHEN 1 THEN b.h_a1 ELSE b.h_a2 END")


def _secondary_indexes(cursor: Any, dialect: str) -> list[tuple[str, str]]:
    """Name and definition, as the database itself states them, of every index on the two filled tables other
    than the primary keys: dropped before the inserts and created again after them, because building an index
    from a full table is several times faster than growing it by a million random keys (a fresh index is also
    denser than a grown one; a few per cent fewer pages to read)."""
    if dialect == "sqlite":
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                       "AND tbl_name IN ('mailroom_mails', 'mailroom_mail_recipients') ORDER BY name")
    else:
        cursor.execute("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                       "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                       "WHERE t.relname IN ('mailroom_mails', 'mailroom_mail_recipients') "
                       "AND NOT x.indisprimary AND NOT x.indisunique ORDER BY i.relname")
    return [(name, definition) for name, definition in cursor.fetchall()]


LOOKUPS = ("bench_addresses", "bench_subjects", "bench_senders", "bench_tags", "bench_positions")


def fill(database: Database, corpus: Corpus, mails: int, end: datetime) -> None:
    """Migrate and fill; prints "generated ..." (the two INSERT ... SELECT) and "<db> filled in ..." (all)."""
    dialect = database.dialect
    started = time.perf_counter()
    database.migrate()
    span_ms = int(SPAN.total_seconds() * 1000)
    start_ms = int(end.timestamp() * 1000) - span_ms
    mark = "?" if dialect == "sqlite" else "%s"
    pooled = database.engine.raw_connection()
    try:
        driver: Any = pooled.dbapi_connection
        cursor = driver.cursor()
        if dialect == "sqlite":
            # A big page cache for the index builds (the default is 2 MB); the connection is thrown away after
            # the fill, so the searches run on connections as mailroom opens them.
            cursor.execute("PRAGMA cache_size = -262144")
            cursor.execute("BEGIN")
        else:
            # Room for the index builds' sorts (the default 64 MB spills at 1,000,000 rows); this transaction only.
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cursor.execute("CREATE TABLE bench_addresses (n INTEGER PRIMARY KEY, email TEXT NOT NULL)")
        cursor.execute("CREATE TABLE bench_subjects (n INTEGER PRIMARY KEY, subject TEXT NOT NULL)")
        cursor.execute("CREATE TABLE bench_senders (n INTEGER PRIMARY KEY, display TEXT NOT NULL, email TEXT)")
        cursor.execute("CREATE TABLE bench_tags (n INTEGER PRIMARY KEY, tags TEXT NOT NULL)")
        cursor.execute("CREATE TABLE bench_positions (p INTEGER PRIMARY KEY)")
        cursor.executemany(f"INSERT INTO bench_addresses VALUES ({mark}, {mark})", list(enumerate(corpus.addresses)))
        cursor.executemany(f"INSERT INTO bench_subjects VALUES ({mark}, {mark})", list(enumerate(corpus.subjects)))
        cursor.executemany(f"INSERT INTO bench_senders VALUES ({mark}, {mark}, {mark})",
                           [(n, display, email) for n, (display, email) in enumerate(corpus.senders)])
        cursor.executemany(f"INSERT INTO bench_tags VALUES ({mark}, {mark})", list(enumerate(corpus.tags)))
        cursor.executemany(f"INSERT INTO bench_positions VALUES ({mark})", [(0,), (1,), (2,)])
        generating = time.perf_counter()
        indexes = _secondary_indexes(cursor, dialect)
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(_mails_sql(dialect, mails, start_ms, span_ms))
        cursor.execute(_recipients_sql(dialect, mails, start_ms, span_ms))
        recipients = cursor.rowcount
        if dialect == "sqlite":  # the word index, keyed as the worker keys it (word_index.index_new_mails)
            cursor.execute(f"INSERT INTO {WORD_INDEX} (rowid, mail_id, subject, receiver, sender, tags) "
                           "SELECT search_key, id, subject, receiver, sender, tags FROM mailroom_mails")
        indexing = time.perf_counter()
        for _name, definition in indexes:
            cursor.execute(definition)
        indexed = time.perf_counter() - indexing
        generated = time.perf_counter() - generating
        for table in LOOKUPS:
            cursor.execute(f"DROP TABLE {table}")
        if dialect == "sqlite":
            cursor.execute("COMMIT")
        else:
            driver.commit()
        print(f"generated {mails:,} mails ({recipients:,} recipients) in {generated:.1f} s on {_label(dialect)} "
              f"(of which rebuilding {len(indexes)} indexes {indexed:.1f} s)", flush=True)
        analysing = time.perf_counter()
        if dialect == "sqlite":
            cursor.execute("ANALYZE")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            step = "ANALYZE"
        else:
            driver.autocommit = True  # VACUUM refuses to run inside a transaction
            cursor.execute("VACUUM ANALYZE")
            driver.autocommit = False
            step = "VACUUM ANALYZE"
        cursor.close()
    finally:
        pooled.invalidate()  # not back into the pool: its settings are the fill's, not mailroom's
        pooled.close()
    print(f"{_label(dialect)} filled in {time.perf_counter() - started:.1f} s "
          f"(migrate, lookups, inserts, {step} {time.perf_counter() - analysing:.1f} s)", flush=True)


def _label(dialect: str) -> str:
    return "sqlite" if dialect == "sqlite" else "postgresql"


@dataclass
class Queries:
    """The query of each kind for run ``number``: other values each run, all of them present in the data."""

    corpus: Corpus
    mails: int
    end: datetime
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def _some_address(self) -> str:
        # The first recipient of a mail that exists: the same hash the database used.
        return self.corpus.addresses[pick(self.rng.randint(1, self.mails), "a0", ADDRESSES)]

    def build(self, kind: str) -> LogQuery:
        rng = self.rng
        if kind == "landing page":
            return LogQuery(limit=PAGE)
        if kind == "exact recipient (to:)":
            return parse_search(f"to:{self._some_address()}")
        if kind == "recipient domain":
            return parse_search(f"to:@{self._some_address().split('@', 1)[1]}")
        if kind == "sender":
            return parse_search(f"from:{rng.choice(self.corpus.senders)[1]}")
        if kind == "subject words":
            return parse_search(f'"{rng.choice(SUBJECT_WORDS)}"')
        if kind == "rare subject word":  # an order number: about one mail in 100,000 has it
            return parse_search(f'"#{rng.randrange(10_000, 100_000, 2)}"')
        if kind == "no match":  # a typo
            return parse_search(f"invoice{rng.randint(100, 999)}x")
        if kind == "tag":
            return parse_search(f"tag:{rng.choice(rng.choice(TAG_SETS).split(','))}")
        if kind == "status + time range":
            start = self.end - SPAN + timedelta(seconds=rng.uniform(0, (SPAN - timedelta(days=7)).total_seconds()))
            return LogQuery(statuses=frozenset({MailStatus.FAILED}), queued_after=start,
                            queued_before=start + timedelta(days=7), limit=PAGE)
        if kind == "server":  # the log page's server menu: an exact name
            return LogQuery(server=rng.choice(SERVERS), limit=PAGE)
        if kind == "deep page":
            return LogQuery(offset=5000, limit=PAGE)
        if kind == "next page (cursor)":  # the page after a cursor somewhere in the log: keyset, any depth
            middle = self.end - SPAN * rng.uniform(0.2, 0.8)
            return LogQuery(after=PageCursor(SortKey.QUEUED_AT, True, middle, "f" * 32).encode(), limit=PAGE)
        if kind == "last page":
            return LogQuery(offset=min((self.mails - 1) // PAGE * PAGE, MAX_OFFSET), limit=PAGE)
        raise ValueError(kind)


@contextmanager
def captured(database: Database) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and parameters) the store sends to the driver while the block runs."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def explain(database: Database, kind: str, statements: list[tuple[str, Any]]) -> None:
    pooled = database.engine.raw_connection()
    try:
        driver: Any = pooled.dbapi_connection
        cursor = driver.cursor()
        for statement, parameters in statements:
            if "mailroom_mail_recipients" in statement or not statement.lstrip().upper().startswith("SELECT"):
                continue  # the page's recipients: a primary key lookup of 50 ids
            print(f"\n--- {_label(database.dialect)}, {kind}: {' '.join(statement.split())}\n    {parameters}")
            if database.dialect == "sqlite":
                took = time.perf_counter()
                cursor.execute(statement, parameters).fetchall()
                took = time.perf_counter() - took
                for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall():
                    print(f"    {row[3]}")
                print(f"    (the statement alone: {took * 1000:,.1f} ms)")
            else:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                for (line,) in cursor.fetchall():
                    print(f"    {line}")
        cursor.close()
        pooled.rollback()
    finally:
        pooled.close()


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in ms of ``samples`` in seconds (the highest when there are too few for a 95th)."""
    ms = sorted(s * 1000 for s in samples)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) >= 2 else ms[0]
    return statistics.median(ms), p95


def reindex(database: Database, store: SqlMailStore, count: int) -> None:
    """Take the newest ``count`` mails out of SQLite's word index and let the store add them again, as the
    worker does (its batches of 1,000); prints "indexed ..." with the time per mail."""
    with database.write() as conn:
        newest = "SELECT id FROM mailroom_mails ORDER BY queued_at DESC LIMIT ?"
        conn.exec_driver_sql(f"DELETE FROM {WORD_INDEX} WHERE rowid IN "
                             f"(SELECT search_key FROM mailroom_mails WHERE id IN ({newest}))", (count,))
        conn.exec_driver_sql(f"UPDATE mailroom_mails SET search_key = NULL WHERE id IN ({newest})", (count,))
    began, cpu = time.perf_counter(), time.process_time()
    indexed = 0
    while done := store.index_for_search(SEARCH_INDEX_BATCH):
        indexed += done
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(f"indexed {indexed:,} mails for search as the worker does in {seconds:.1f} s: "
          f"{seconds / max(indexed, 1) * 1e6:.0f} µs per mail ({cpu / max(indexed, 1) * 1e6:.0f} µs CPU)", flush=True)


def measure(url: str, corpus: Corpus, args: argparse.Namespace, end: datetime,
            report: Callable[[str, list[float]], None]) -> dict[str, list[float]]:
    database = Database(url)
    try:
        fill(database, corpus, args.mails, end)
        store = SqlMailStore(database)
        if database.dialect == "sqlite":
            reindex(database, store, min(REINDEXED, args.mails))
        store.search(LogQuery(limit=PAGE))  # the pool's first connection and the first statements' compiling
        queries = Queries(corpus, args.mails, end)
        table: dict[str, list[float]] = {}
        for kind in KINDS:
            samples: list[float] = []
            for number in range(args.runs):
                query = queries.build(kind)
                with captured(database) as statements:
                    began = time.perf_counter()
                    store.search(query)
                    samples.append(time.perf_counter() - began)
                if number == 0 and getattr(args, "explain", False):
                    explain(database, kind, statements)
                if samples[-1] > SLOW_SECONDS:
                    print(f"{_label(database.dialect)}: {kind}: stopped after run {number + 1} "
                          f"({samples[-1]:.1f} s > {SLOW_SECONDS:.0f} s)", flush=True)
                    break
            report(kind, samples)
            table[kind] = list(percentiles(samples))
        return table
    finally:
        database.dispose()


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """``{database: {kind: [p50_ms, p95_ms]}}``; bench/run.py's search section reads it."""
    corpus = Corpus.make()
    end = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, dict[str, list[float]]] = {}

    def report(database: str) -> Callable[[str, list[float]], None]:
        def line(kind: str, samples: list[float]) -> None:
            p50, p95 = percentiles(samples)
            print(f"  {database:<10} {kind:<22} p50 {p50:>9,.1f} ms  p95 {p95:>9,.1f} ms  "
                  f"max {max(samples) * 1000:>9,.1f} ms  ({len(samples)} runs)", flush=True)
        return line

    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="mailroom-search-") as folder:
            results["sqlite"] = measure(f"sqlite:///{folder}/search.db", corpus, args, end, report("sqlite"))
    if not args.no_postgres:
        admin = args.pg_admin.replace("postgresql+psycopg://", "postgresql://", 1)  # psycopg's own URL form
        with postgres_database(admin) as url:
            if url is None:
                raise RuntimeError(f"PostgreSQL is not reachable at {args.pg_admin}")
            url = url.replace("postgresql://", "postgresql+psycopg://", 1)
            results["postgresql"] = measure(url, corpus, args, end, report("postgresql"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--explain", action="store_true", help="the plan of each kind's first query")
    parser.add_argument("--pg-admin", default="postgresql+psycopg://postgres@127.0.0.1/postgres")
    args = parser.parse_args()
    results = run(args)
    print(f"\nlog search, {args.mails:,} mails, {args.runs} runs per kind, a page of {PAGE} with the total; ms")
    databases = list(results)
    print(f"{'kind':<22}" + "".join(f"  {db + ' p50':>15}  {db + ' p95':>15}" for db in databases))
    for kind in KINDS:
        cells = [results[db].get(kind) for db in databases]
        print(f"{kind:<22}" + "".join(f"  {c[0]:>15,.1f}  {c[1]:>15,.1f}" if c else f"  {'-':>15}  {'-':>15}"
                                      for c in cells))


if __name__ == "__main__":
    main()
