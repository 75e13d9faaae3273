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
from typing import Any

from sqlalchemy import Connection, Dialect, Row, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase

_Processor = Callable[[Any], Any] | None


class _Compiled:
    def __init__(self, statement: UpdateBase, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql = str(compiled)
        # dialect_impl: the type as this dialect runs it (SQLite stores datetimes as text of its own format).
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for name, bind in compiled.binds.items()}
        # A positional paramstyle (SQLite's qmark) lists the names in order; a named one (psycopg's) does not.
        self.positional = compiled.positiontup is not None
        self.binds: list[tuple[str, _Processor]] = [
            (name, processors[name]) for name in (compiled.positiontup or compiled.binds)]

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if self.positional:
            return tuple(process(values[name]) if process else values[name] for name, process in self.binds)
        return {name: process(values[name]) if process else values[name] for name, process in self.binds}


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
        parameters = [compiled.row(values) for values in rows]
        # Straight to the driver: SQLAlchemy's execution context (events, result set-up) per statement
        # costs the worker's event loop more than the rows do, since both share one interpreter lock.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, parameters)  # type: ignore[arg-type]  # one kind per dialect
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
