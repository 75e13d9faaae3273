"""Executemany without SQLAlchemy's per-row parameter handling, for the worker's hot statements.

For each row of an executemany SQLAlchemy builds a parameter dict and runs every value through its
type's processors; for a batch of delivery results that costs more than the database takes to write
them. A BulkStatement is compiled once per dialect from a Core statement (the SQL is SQLAlchemy's,
not hand-written) and runs on the DBAPI cursor; each value still goes through its column type's own
bind processor, looked up once instead of once per row. It runs inside the connection's transaction,
and a driver error is raised as SQLAlchemy would raise it, so the callers' error handling is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Row, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

from mailroom.adapters.storage.tables import UtcDateTime

_Processor = Callable[[Any], Any] | None
_COLUMNWISE_FROM = 4  # rows


def sqlite_utc_text(value: datetime | None) -> str | None:
    """An aware datetime as UtcDateTime and SQLAlchemy's SQLite DATETIME store it (naive UTC text with
    microseconds), in one step instead of two type layers: the result writer binds five per mail."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware datetimes")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00"


def _processor(bind_type: TypeEngine[Any], dialect: Dialect) -> _Processor:
    if isinstance(bind_type, UtcDateTime) and dialect.name == "sqlite":
        return sqlite_utc_text
    # dialect_impl: the type as this dialect runs it (SQLite stores datetimes as text of its own format).
    return bind_type.dialect_impl(dialect).bind_processor(dialect)


class _Compiled:
    def __init__(self, statement: UpdateBase, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql = str(compiled)
        processors = {name: _processor(bind.type, dialect) for name, bind in compiled.binds.items()}
        # A positional paramstyle (SQLite's qmark) lists the names in order; a named one (psycopg's) does not.
        self.positional = compiled.positiontup is not None
        self.binds: list[tuple[str, _Processor]] = [
            (name, processors[name]) for name in (compiled.positiontup or compiled.binds)]

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]] | list[dict[str, Any]]:
        """The driver's parameters, built a column at a time (each processor mapped over its column), or
        row by row for a few rows, where a list per column costs more than it saves (one ``send_mail``)."""
        if len(rows) < _COLUMNWISE_FROM:
            if self.positional:
                return [tuple(process(values[name]) if process else values[name] for name, process in self.binds)
                        for values in rows]
            return [{name: process(values[name]) if process else values[name] for name, process in self.binds}
                    for values in rows]
        if self.positional:
            return self.tuples(rows)
        names = [name for name, _ in self.binds]
        return [dict(zip(names, row, strict=True)) for row in self.tuples(rows)]

    def tuples(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Each row's values in the order of ``binds``, processed a column at a time."""
        columns: list[list[Any]] = []
        for name, process in self.binds:
            column = [values[name] for values in rows]
            columns.append(list(map(process, column)) if process else column)
        return list(zip(*columns, strict=True))


class BulkStatement:
    """An INSERT or UPDATE run for many rows of plain values (one dict per row, keyed by bind name)."""

    def __init__(self, statement: UpdateBase) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        keys = tuple(rows[0])
        compiled = self._compiled.get((conn.dialect.name, keys))
        if compiled is None:
            compiled = self._compiled[(conn.dialect.name, keys)] = _Compiled(self._statement, conn.dialect, keys)
        parameters = compiled.rows(rows)
        # Straight to the driver: SQLAlchemy's execution context (events, result set-up) per statement
        # costs the worker's event loop more than the rows do, since both share one interpreter lock.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, parameters)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(compiled.sql, parameters, exc, conn.dialect.loaded_dbapi.Error,
                                      dialect=conn.dialect) from exc
        finally:
            cursor.close()


class IdQuery:
    """A SELECT of rows by a list of ids (``IN``), compiled once per dialect and list length.

    SQLAlchemy renders an expanding ``IN`` anew at every execution; for the worker's small per-batch
    reads that costs more than the query. The SQL is still SQLAlchemy's, run on the DBAPI cursor.
    """

    def __init__(self, statement: Select[Any], name: str = "ids") -> None:
        self._statement = statement
        self._name = name
        self._compiled: dict[tuple[str, int], tuple[str, list[str] | None]] = {}

    def rows(self, conn: Connection, ids: Sequence[str]) -> list[Row[Any]]:
        if not ids:
            return []
        key = (conn.dialect.name, len(ids))
        found = self._compiled.get(key)
        if found is None:
            compiled = self._statement.params({self._name: list(ids)}).compile(
                dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
            names = list(compiled.positiontup) if compiled.positiontup is not None else None
            found = self._compiled[key] = (str(compiled), names)
        sql, positional = found
        if positional is not None:
            parameters: tuple[Any, ...] | dict[str, Any] = tuple(ids)
        else:
            parameters = {f"{self._name}_{n}": value for n, value in enumerate(ids, start=1)}
        return list(conn.exec_driver_sql(sql, parameters).all())
