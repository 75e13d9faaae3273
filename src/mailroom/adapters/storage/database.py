"""Engine, transactions and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Dialect, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from mailroom.errors import ConfigurationError, StorageError, StorageUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "mailroom_alembic_version"  # migrations/env.py keeps its revision there
MIGRATION_LOCK = int.from_bytes(b"mailroom", "big")  # PostgreSQL advisory lock held while migrating

logger = logging.getLogger("mailroom.storage")
# PostgreSQL: a pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


class Database:
    """One engine; ``write()`` and ``read()`` open a transaction each.

    On SQLite, write transactions begin with ``BEGIN IMMEDIATE``: a deferred transaction that reads and
    then writes can meet another writer and fail with SQLITE_BUSY at once, without waiting for
    ``busy_timeout``; taking the write lock up front makes writers queue instead.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigurationError(f"MAILROOM_DATABASE_URL {url!r} is not a database URL") from exc
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigurationError(f"database {self.dialect!r} is not supported: use sqlite or postgresql")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            _create_private(parsed.database)
        else:
            kwargs.update(pool_size=10, max_overflow=10)
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            _setup_sqlite(self.engine)
        else:
            _ping_idle_connections(self.engine)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._translated(), self.engine.connect() as conn:
            conn = conn.execution_options(mailroom_write=True) if self.dialect == "sqlite" else conn
            with conn.begin():
                yield conn

    @contextmanager
    def driver_write(self, *, one_statement: bool = False, pipelined: bool = True) -> Iterator[DriverTransaction]:
        """A write transaction on the driver's own connection, for ``send_mail``'s inserts.

        A ``write()`` goes through SQLAlchemy's Connection, its begin event and an execution context for
        BEGIN: ~60 µs, as much as SQLite takes to store a mail. Here the pool's connection is used as it is.
        On PostgreSQL the transaction is one pipeline: one round trip instead of one per statement; with
        ``one_statement`` (the caller runs a single statement, atomic by itself) not even that: the statement
        runs in autocommit, without BEGIN, COMMIT and the pipeline's machinery. ``pipelined=False``: a plain
        transaction, for what a pipeline cannot carry (COPY).
        Errors are raised as SQLAlchemy's and translated like ``write()``'s; a connection the driver reports
        lost is invalidated, so the pool does not hand it out again.
        """
        with self._translated():
            dialect = self.engine.dialect
            pooled = self.engine.raw_connection()
            try:
                driver = pooled.dbapi_connection
                assert driver is not None
                if self.dialect == "sqlite":
                    driver.execute("BEGIN IMMEDIATE")
                    yield DriverTransaction(driver, dialect)
                elif one_statement:
                    driver.autocommit = True
                    try:
                        yield DriverTransaction(driver, dialect)
                    finally:
                        with contextlib.suppress(Exception):  # a lost connection is invalidated below
                            driver.autocommit = False
                elif not pipelined:
                    yield DriverTransaction(driver, dialect)
                    driver.commit()
                else:
                    # psycopg's pipeline: the statements and the COMMIT go out together, one round trip.
                    with driver.pipeline():
                        yield DriverTransaction(driver, dialect)
                        driver.commit()
                pooled.commit()
            except BaseException as exc:
                lost = _lost_connection(dialect, exc, driver)
                if lost:
                    pooled.invalidate(exc if isinstance(exc, Exception) else None)
                else:
                    with contextlib.suppress(Exception):
                        pooled.rollback()
                if isinstance(exc, dialect.loaded_dbapi.Error):
                    raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                              connection_invalidated=lost, dialect=dialect) from exc
                if lost and isinstance(exc, DBAPIError):
                    exc.connection_invalidated = True
                raise
            finally:
                pooled.close()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translated(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError, DisconnectionError) as exc:
            if _transient(exc):
                raise _storage_error("the database is unavailable, busy or full", exc, StorageUnavailable) from exc
            raise _storage_error("the database refused the operation", exc) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise _storage_error("the database connection was lost", exc, StorageUnavailable) from exc
            raise _storage_error("the database refused the operation", exc) from exc
        except SQLAlchemyError as exc:
            if isinstance(exc.__cause__, StorageError):
                raise
            raise _storage_error("the database refused the operation", exc) from exc

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``)."""
        from alembic import command

        config = _alembic_config()
        # Processes starting together (a web app and its workers) all migrate: one at a time, so the first
        # does the work and the others find it done, instead of creating the tables twice or, on SQLite,
        # meeting as two readers that both want to write (SQLITE_BUSY at once, busy_timeout or not).
        with self._translated(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(mailroom_write=True)  # BEGIN IMMEDIATE: the write lock first
            with conn.begin():
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                config.attributes["connection"] = conn
                command.upgrade(config, "head")

    def schema_revision(self) -> SchemaRevision:
        """Where the schema is against this code's migrations; one short read (a readiness probe calls it)."""
        from alembic.runtime.migration import MigrationContext

        with self.read() as conn:
            current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        known = known_revisions()
        return SchemaRevision(current=current, head=known[0], known=current is None or current in known)

    def dispose(self) -> None:
        self.engine.dispose()


# SQLite reports a missing table like a locked or full database (OperationalError): only these are worth
# trying again; PostgreSQL's OperationalError is about the connection or the server, always transient.
_SQLITE_TRANSIENT = ("locked", "busy", "disk is full", "disk i/o error", "unable to open", "readonly database")


@dataclass(frozen=True, slots=True)
class SchemaRevision:
    current: str | None
    """The revision the database is at; None before the first migration."""
    head: str
    """The newest revision of this code."""
    known: bool
    """False when the database was migrated by a newer mailroom than this one."""

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def _alembic_config() -> Config:
    from alembic.config import Config  # alembic is loaded only when migrating or checking the schema

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def known_revisions() -> tuple[str, ...]:
    """This code's revisions, the head first (read from the migration files once per process)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    return tuple(script.revision for script in scripts.walk_revisions())


def _transient(exc: SQLAlchemyError) -> bool:
    """Whether the same call may succeed in a moment (the database restarts, is busy, or has room again)."""
    if not isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    if exc.orig is not None and type(exc.orig).__module__.startswith("sqlite3"):
        return any(phrase in str(exc.orig).lower() for phrase in _SQLITE_TRANSIENT)
    return True


def _cause(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__


def _create_private(database: str | None) -> None:
    """Create a missing SQLite file readable by its owner only.

    It holds the log (recipients, subjects) and the sealed secrets; SQLite would create it with the
    umask's mode, usually world-readable. Its -wal and -shm files take the database file's mode.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or not path.parent.is_dir():
        return  # an existing file keeps its mode; a missing folder is SQLite's error to report
    # Another process may create it at the same moment, just as privately.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@dataclass(frozen=True, slots=True)
class DriverTransaction:
    """The driver's connection inside ``Database.driver_write()``, and the dialect to compile for."""

    connection: Any  # sqlite3.Connection or psycopg.Connection
    dialect: Dialect


def _lost_connection(dialect: Dialect, exc: BaseException, driver: Any) -> bool:
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(error, dialect.loaded_dbapi.Error) and dialect.is_disconnect(error, driver, None)


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping, but only for a connection that has been idle: a ping is a round trip, and
    before each send_mail it took a third of the time. A connection back in the pool less than
    PING_AFTER_IDLE_SECONDS ago was working then; one the server dropped since (a restart) fails its statement
    and is replaced, and the caller sees StorageUnavailable (the worker waits it out)."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["mailroom_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("mailroom_idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the pooled connection is gone") from exc
        if not alive:
            raise DisconnectionError("the pooled connection is gone")


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event emit BEGIN itself (pysqlite's own transaction handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("mailroom_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _storage_error(what: str, exc: SQLAlchemyError, kind: type[StorageError] = StorageError) -> StorageError:
    """A StorageError that says nothing of the statement: SQLAlchemy's text holds the SQL and every bound
    parameter (password hashes, addresses, mail text), which must not reach a web answer or a terminal.
    The detail goes to the server log under an id that the message names, so an operator can find it."""
    error_id = uuid.uuid4().hex[:12]
    # A broken constraint is mostly expected (a duplicate address) and handled by the store: no alarm.
    # An unreachable database is the callers' to retry (the worker logs that itself): a warning, no trace.
    if issubclass(kind, StorageUnavailable):
        logger.warning("storage error %s (transient): %s", error_id, _cause(exc))
    else:
        level = logging.INFO if isinstance(exc, IntegrityError) else logging.ERROR
        logger.log(level, "storage error %s: %s", error_id, exc, exc_info=exc)
    return kind(f"{what} (error id {error_id}; the server log has the details)", error_id=error_id)
