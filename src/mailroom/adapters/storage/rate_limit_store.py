"""Rate limits in the database, shared by every worker on every machine.

Each limit keeps one row per mail it allows in a window (``mailroom_rate_limit_sends``), holding the time
that row was last used. A reservation takes the oldest row of each limit and may go when every one of them
is at least a window old; it then stamps them with now, all in one transaction. Once the mail is out, its
rows are stamped again with the time the server had it (``sent``): a mail's arrival and the arrival of the
next mail on the same row are then a full window apart, so the server never sees more than the limit in
any window, however long each send took. The limit rows are locked
first, in one order (PostgreSQL ``FOR UPDATE``; SQLite has one writer at a time), so concurrent workers
queue for a scope instead of both taking its last free row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, bindparam, delete, func, insert, select, tuple_, update

from mailroom.adapters.storage.database import Database
from mailroom.adapters.storage.tables import rate_limit_sends, rate_limits
from mailroom.domain.rate_limits import Denial, LimitScope, LimitUse, RateLimit, ScopeKind, Window, oldest_allows

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)
_SCOPE_COLUMNS = (rate_limits.c.scope_kind, rate_limits.c.scope_target)
_OLDEST = (
    select(rate_limit_sends.c.slot, rate_limit_sends.c.sent_at)
    .where(rate_limit_sends.c.scope_kind == bindparam("kind"), rate_limit_sends.c.scope_target == bindparam("target"),
           rate_limit_sends.c.window_seconds == bindparam("window"))
    .order_by(rate_limit_sends.c.sent_at, rate_limit_sends.c.slot)
    .limit(1)
)
_STAMP = (
    update(rate_limit_sends)
    .where(rate_limit_sends.c.scope_kind == bindparam("kind"), rate_limit_sends.c.scope_target == bindparam("target"),
           rate_limit_sends.c.window_seconds == bindparam("window"), rate_limit_sends.c.slot == bindparam("b_slot"))
    .values(sent_at=bindparam("now", type_=rate_limit_sends.c.sent_at.type))
)


class SqlRateLimits:
    """Implements the RateLimits port."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def rules(self) -> dict[LimitScope, tuple[RateLimit, ...]]:
        with self._db.read() as conn:
            rows = conn.execute(select(rate_limits).order_by(*_SCOPE_COLUMNS, rate_limits.c.window_seconds)).all()
        found: dict[LimitScope, list[RateLimit]] = defaultdict(list)
        for row in rows:
            found[_scope(row.scope_kind, row.scope_target)].append(RateLimit(row.max_count, Window(row.window_seconds)))
        return {scope: tuple(limits) for scope, limits in found.items()}

    def set_limits(self, scope: LimitScope, limits: Sequence[RateLimit]) -> None:
        wanted = {limit.window.seconds: limit.count for limit in limits}
        key = {"kind": scope.kind.value, "target": scope.target}
        with self._db.write() as conn:
            current = {row.window_seconds: row.max_count for row in conn.execute(
                select(rate_limits.c.window_seconds, rate_limits.c.max_count)
                .where(rate_limits.c.scope_kind == key["kind"], rate_limits.c.scope_target == key["target"]))}
            for window in current:
                if window not in wanted:
                    _delete_limit(conn, key, window)
            for window, count in wanted.items():
                if current.get(window) == count:
                    continue
                # The newest sends are kept: changing a limit must not forget what went out just now.
                recent = [] if window not in current else list(conn.execute(
                    select(rate_limit_sends.c.sent_at).where(*_is(key, window))
                    .order_by(rate_limit_sends.c.sent_at.desc()).limit(count)).scalars())
                _delete_limit(conn, key, window)
                conn.execute(insert(rate_limits), {"scope_kind": key["kind"], "scope_target": key["target"],
                                                   "window_seconds": window, "max_count": count})
                stamps = recent + [_NEVER] * (count - len(recent))
                conn.execute(insert(rate_limit_sends), [
                    {"scope_kind": key["kind"], "scope_target": key["target"], "window_seconds": window,
                     "slot": slot, "sent_at": sent_at} for slot, sent_at in enumerate(stamps)])

    def reserve(self, scopes: Sequence[LimitScope], now: datetime) -> Denial | None:
        if not scopes:
            return None
        wanted = sorted(set(scopes))
        with self._db.write() as conn:
            query = (select(rate_limits)
                     .where(tuple_(*_SCOPE_COLUMNS).in_([(s.kind.value, s.target) for s in wanted]))
                     .order_by(*_SCOPE_COLUMNS, rate_limits.c.window_seconds))
            if self._db.is_postgres:
                query = query.with_for_update()
            limits = conn.execute(query).all()
            free: list[dict[str, object]] = []
            denials: list[Denial] = []
            for row in limits:
                params = {"kind": row.scope_kind, "target": row.scope_target, "window": row.window_seconds}
                oldest = conn.execute(_OLDEST, params).first()
                if oldest is None:
                    continue
                limit = RateLimit(row.max_count, Window(row.window_seconds))
                until = oldest_allows(oldest.sent_at, limit, now)
                if until is None:
                    free.append({**params, "b_slot": oldest.slot, "now": now})
                else:
                    denials.append(Denial(_scope(row.scope_kind, row.scope_target), limit, until))
            if denials:
                return max(denials, key=lambda d: d.until)
            if free:
                conn.execute(_STAMP, free)
        return None

    def sent(self, scopes: Sequence[LimitScope], reserved_at: datetime, now: datetime) -> None:
        if not scopes:
            return
        with self._db.write() as conn:
            conn.execute(update(rate_limit_sends)
                         .where(tuple_(rate_limit_sends.c.scope_kind, rate_limit_sends.c.scope_target)
                                .in_([(s.kind.value, s.target) for s in sorted(set(scopes))]),
                                rate_limit_sends.c.sent_at == reserved_at)
                         .values(sent_at=now))

    def usage(self, now: datetime) -> list[LimitUse]:
        with self._db.read() as conn:
            rows = conn.execute(select(rate_limits).order_by(*_SCOPE_COLUMNS, rate_limits.c.window_seconds)).all()
            uses = []
            for row in rows:
                limit = RateLimit(row.max_count, Window(row.window_seconds))
                since = now.timestamp() - limit.window.seconds
                used = conn.execute(select(func.count()).select_from(rate_limit_sends).where(
                    *_is({"kind": row.scope_kind, "target": row.scope_target}, row.window_seconds),
                    rate_limit_sends.c.sent_at > datetime.fromtimestamp(since, UTC))).scalar_one()
                uses.append(LimitUse(_scope(row.scope_kind, row.scope_target), limit, used))
        return uses


def _scope(kind: str, target: str) -> LimitScope:
    return LimitScope(ScopeKind(kind), target)


def _is(key: dict[str, str], window: int) -> tuple[ColumnElement[bool], ...]:
    return (rate_limit_sends.c.scope_kind == key["kind"], rate_limit_sends.c.scope_target == key["target"],
            rate_limit_sends.c.window_seconds == window)


def _delete_limit(conn: Connection, key: dict[str, str], window: int) -> None:
    conn.execute(delete(rate_limit_sends).where(*_is(key, window)))
    conn.execute(delete(rate_limits).where(rate_limits.c.scope_kind == key["kind"],
                                           rate_limits.c.scope_target == key["target"],
                                           rate_limits.c.window_seconds == window))



