"""Durable schedule rules: one SQLite file (``schedules.db``) holding each function's schedules and last fired tick.

A rule is identified by ``(function, name)``.  ``created_at`` anchors ``rate()`` ticks and is kept when a rule is
re-put with the same expression (so replacing a function's schedules does not reset their phase); ``last_fire``
is the most recent tick the runner fired, written durably *after* the tick's event is enqueued (embedded mode).

Cluster mode (``outbox=True``, PostgreSQL): ``fire`` claims ticks by a compare-and-set of ``last_fire`` and writes
their events into the event outbox in the same transaction (``squall.store.outbox``), so exactly one node fires
each tick and a claimed tick is always delivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from squall.core.ports import NewEvent
from squall.store.db import DbTarget, migrate
from squall.store.outbox import ensure_outbox, write_outbox
from squall.store.sqlite_conn import SqliteDb

__all__ = ["ScheduleRule", "ScheduleStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    expression TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    input TEXT,
    catch_up INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_fire REAL,
    PRIMARY KEY (function, name)
);
"""

_COLUMNS = "function, name, expression, enabled, input, catch_up, created_at, last_fire"


@dataclass(frozen=True)
class ScheduleRule:
    """One schedule of one function.  ``input`` is the JSON text of the fixed payload, or None."""

    function: str
    name: str
    expression: str
    enabled: bool = True
    input: str | None = None
    catch_up: bool = False
    created_at: float = 0.0
    last_fire: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "name": self.name,
            "expression": self.expression,
            "enabled": self.enabled,
            "input": None if self.input is None else json.loads(self.input),
            "catch_up": self.catch_up,
            "created_at": self.created_at,
            "last_fire": self.last_fire,
        }


def _row(r: tuple[Any, ...]) -> ScheduleRule:
    return ScheduleRule(
        function=r[0],
        name=r[1],
        expression=r[2],
        enabled=bool(r[3]),
        input=r[4],
        catch_up=bool(r[5]),
        created_at=float(r[6]),
        last_fire=None if r[7] is None else float(r[7]),
    )


class ScheduleStore(SqliteDb):
    """Schedules in their own SQLite file; thread-safe (one connection behind a lock)."""

    def __init__(self, path: DbTarget, *, outbox: bool = False) -> None:
        """``outbox``: cluster mode (``path`` a PostgreSQL target): ticks are fired with ``fire``."""
        self._open_db(path, durable_by_default=True)
        migrate(self._conn, "schedules", [_SCHEMA])
        self.outbox = outbox
        if outbox:
            ensure_outbox(self._conn)

    def replace(self, function: str, rules: Sequence[ScheduleRule], now: float) -> list[ScheduleRule]:
        """Make ``rules`` the function's schedules.  A rule kept with the same expression keeps its
        ``created_at`` and ``last_fire``; new or changed rules start at ``now``."""
        with self._tx() as db:
            old = {
                r[1]: _row(r) for r in db.execute(f"SELECT {_COLUMNS} FROM schedules WHERE function = ?", (function,))
            }
            db.execute("DELETE FROM schedules WHERE function = ?", (function,))
            out = []
            for rule in rules:
                prev = old.get(rule.name)
                keep = prev is not None and prev.expression == rule.expression
                created = prev.created_at if keep and prev else now
                last = prev.last_fire if keep and prev else None
                db.execute(
                    f"INSERT INTO schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (function, rule.name, rule.expression, int(rule.enabled), rule.input, int(rule.catch_up),
                     created, last),
                )  # fmt: skip
                out.append(
                    ScheduleRule(function, rule.name, rule.expression, rule.enabled, rule.input, rule.catch_up,
                                 created, last)
                )  # fmt: skip
        return out

    def list(self, function: str | None = None) -> list[ScheduleRule]:
        with self._lock:
            if function is None:
                rows = self._conn.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY function, name").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM schedules WHERE function = ? ORDER BY name", (function,)
                ).fetchall()
        return [_row(r) for r in rows]

    def delete_function(self, function: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM schedules WHERE function = ?", (function,)).rowcount

    def set_last_fire(self, function: str, name: str, last_fire: float) -> bool:
        """Durably record the last fired tick; False when the rule no longer exists."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE schedules SET last_fire = ? WHERE function = ? AND name = ?", (last_fire, function, name)
            )
            return cur.rowcount > 0

    def fire(self, rule: ScheduleRule, last_fire: float, events: Sequence[NewEvent], now: float) -> bool:
        """Cluster mode: claim the ticks up to ``last_fire`` of ``rule`` as read (a compare-and-set: the rule still
        has the ``last_fire``, expression and ``created_at`` the ticks were computed from) and put ``events`` in the
        event outbox, in one transaction.  False (nothing written) when another node claimed them first or the
        rule was replaced or deleted meanwhile.  No store lock: the row's own lock orders two nodes' updates, and
        the second re-checks the condition on the first's committed row (PostgreSQL's READ COMMITTED)."""
        if not self.outbox:
            raise RuntimeError("ScheduleStore.fire needs the event outbox (cluster mode)")
        same = "last_fire IS NULL" if rule.last_fire is None else "last_fire = ?"
        params: tuple[Any, ...] = (last_fire, rule.function, rule.name, rule.expression, rule.created_at)
        if rule.last_fire is not None:
            params += (rule.last_fire,)
        with self._tx(lock="") as db:
            cur = db.execute(
                "UPDATE schedules SET last_fire = ? WHERE function = ? AND name = ? AND enabled = 1 "
                f"AND expression = ? AND created_at = ? AND {same}",
                params,
            )
            if cur.rowcount != 1:
                return False
            write_outbox(db, events, now)
        return True
