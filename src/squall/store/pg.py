"""The PostgreSQL side of the store seam: ``PgConnection`` speaks the part of ``sqlite3.Connection`` the stores use.

Translation (cached per statement text):

- ``?`` placeholders become ``%s`` (a literal ``%`` becomes ``%%``; string literals are left alone);
- ``INSERT OR IGNORE INTO ...`` becomes ``INSERT INTO ... ON CONFLICT DO NOTHING``;
- ``CAST(x AS INTEGER)`` truncates (``TRUNC``) as SQLite's does, and ``SUM(<condition>)`` counts the rows where it
  holds (an aggregate ``sum(boolean)`` created by the first migration), as SQLite's booleans are 0/1;
- ``LIKE`` is ``ILIKE`` (SQLite's ignores case);
- ``x COLLATE NOCASE`` in a query compares with the ``nocase`` collation (ICU, case-insensitive, created by the
  first migration), and so do columns declared ``COLLATE NOCASE``;
- DDL: ``INTEGER`` is ``BIGINT``, ``REAL`` is ``DOUBLE PRECISION``, ``BLOB`` is ``BYTEA``, ``INTEGER PRIMARY KEY``
  (SQLite's rowid alias) is ``BIGSERIAL PRIMARY KEY``; every other table gets a trailing ``rowid BIGSERIAL`` column,
  so ``ORDER BY rowid`` (insertion order) means the same on both;
- ``BEGIN IMMEDIATE`` is ``BEGIN`` plus ``pg_advisory_xact_lock(<the store's key>)``: a store's write transactions
  are serialised across every node as SQLite serialises them in one process, so each read-modify-write (version
  numbers, revision ids, sequence numbers) stays correct with many writers; reads take no lock;
- ``PRAGMA synchronous``/``wal_checkpoint`` are no-ops (a PostgreSQL commit is durable when it returns).

Errors: unique/foreign-key violations are raised as ``sqlite3.IntegrityError`` (what the stores catch); a lost or
refused connection is ``DatabaseUnavailable`` (503 in each service's shape).  The connection is re-opened at the next
statement outside a transaction, so a restarted PostgreSQL is picked up without restarting Squall.

Values: booleans are stored as integers (SQLite's 0/1) and ``numeric`` results (``SUM`` of integers) come back as
``int``/``float``, so rows look the same as SQLite's.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from squall.store.targets import DatabaseUnavailable

__all__ = ["PgConnection", "PgCursor", "PgListener", "lock_key", "translate", "translate_ddl"]

_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_LIKE = re.compile(r"(?<![\w.])LIKE\b", re.IGNORECASE)
_NOCASE = re.compile(r"\bCOLLATE\s+NOCASE\b", re.IGNORECASE)
_CONNECT_TIMEOUT_S = 3


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for store ``name`` (stable across nodes and versions)."""
    return int.from_bytes(hashlib.sha1(f"squall:{name}".encode()).digest()[:8], "big", signed=True)


_MIGRATE_KEY = lock_key("squall_schema")


@lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """A statement as PostgreSQL spells it (see the module doc)."""
    out = _TOKENS.sub(lambda m: "%s" if m.group(0) == "?" else "%%" if m.group(0) == "%" else m.group(0), sql)
    if _OR_IGNORE.match(out):
        out = _OR_IGNORE.sub("INSERT INTO", out, count=1)
        ret = _RETURNING.search(out)
        out = (
            f"{out[: ret.start()]} ON CONFLICT DO NOTHING {out[ret.start() :]}"
            if ret
            else f"{out.rstrip().rstrip(';')} ON CONFLICT DO NOTHING"
        )
    out = _LIKE.sub("ILIKE", out)  # SQLite's LIKE ignores (ASCII) case
    return _NOCASE.sub("COLLATE nocase", _trunc_casts(out))


def _trunc_casts(sql: str) -> str:
    """``CAST(x AS INTEGER)`` truncates toward zero in SQLite and rounds in PostgreSQL: truncate in both."""
    out, pos = [], 0
    upper = sql.upper()
    while (start := upper.find("CAST(", pos)) >= 0:
        depth, i = 1, start + 5
        while depth and i < len(sql):
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            i += 1
        inner = sql[start + 5 : i - 1]
        m = re.match(r"(?s)(.*)\s+AS\s+INTEGER\s*$", inner, re.IGNORECASE)
        out.append(sql[pos:start])
        out.append(f"CAST(TRUNC({m.group(1)}) AS BIGINT)" if m else sql[start:i])
        pos = i
    out.append(sql[pos:])
    return "".join(out)


_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\w+\s*\(", re.IGNORECASE)
_ROWID_ALIAS = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(?:\s+AUTOINCREMENT)?\b", re.IGNORECASE)
_COLUMN_NOCASE = re.compile(r"\b(TEXT)\b([^,\n]*?)\s+COLLATE\s+NOCASE\b", re.IGNORECASE)


def _add_rowid(ddl: str) -> str:
    """Give each CREATE TABLE without a rowid alias a trailing ``rowid BIGSERIAL`` column."""
    out: list[str] = []
    pos = 0
    for m in _CREATE.finditer(ddl):
        depth, i = 1, m.end()
        while depth and i < len(ddl):
            depth += {"(": 1, ")": -1}.get(ddl[i], 0)
            i += 1
        body = ddl[m.end() : i - 1]
        out.append(ddl[pos : m.end()])
        out.append(body if _ROWID_ALIAS.search(body) else f"{body.rstrip()},\n    rowid BIGSERIAL\n")
        pos = i - 1
    out.append(ddl[pos:])
    return "".join(out)


@lru_cache(maxsize=256)
def translate_ddl(ddl: str) -> str:
    """A schema script written for SQLite, as PostgreSQL types and spells it."""
    out = _add_rowid(ddl)
    out = _ROWID_ALIAS.sub("BIGSERIAL PRIMARY KEY", out)
    out = re.sub(r"\bINTEGER\b", "BIGINT", out, flags=re.IGNORECASE)
    out = re.sub(r"\bREAL\b", "DOUBLE PRECISION", out, flags=re.IGNORECASE)
    out = re.sub(r"\bBLOB\b", "BYTEA", out, flags=re.IGNORECASE)
    out = re.sub(r"\bWITHOUT\s+ROWID\b", "", out, flags=re.IGNORECASE)
    out = _COLUMN_NOCASE.sub(lambda m: f"{m.group(1)} COLLATE nocase{m.group(2)}", out)
    return out


def _param(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, memoryview):
        return bytes(v)
    return v


def _value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, memoryview):
        return bytes(v)
    return v


def _row(row: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return None if row is None else tuple(_value(v) for v in row)


class PgCursor:
    """The result of one statement: rows fetched eagerly (the stores read small results)."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class PgConnection:
    """One psycopg connection (autocommit; transactions opened explicitly, as the SQLite stores do)."""

    def __init__(self, url: str, name: str, *, bulk: bool = False) -> None:
        """``bulk``: bind parameters on the server and fetch in binary (a 1 MiB bytea travels as 1 MiB, not as a
        2 MiB hex literal): for chunked object data.  Otherwise parameters are bound client-side, which tolerates
        SQLite's loose typing in shared statements."""
        self.url = url
        self.name = name
        self.bulk = bulk
        self.key = lock_key(name)
        self._conn: psycopg.Connection[Any] | None = None
        self._in_tx = False
        self._broken_tx = False
        self._lock = threading.RLock()  # the stores serialise with their own lock; this guards reconnects
        self._connect()

    def __str__(self) -> str:
        return f"postgresql store {self.name!r}"

    # -- the connection ---------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT_S,
                cursor_factory=psycopg.Cursor if self.bulk else psycopg.ClientCursor,
                application_name=f"squall:{self.name}",
            )
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(self, _first_line(e)) from e
        self._conn = conn
        return conn

    def raw(self) -> psycopg.Connection[Any]:
        """The live psycopg connection (re-opened if it was lost and no transaction is open)."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if self._in_tx:
                self._broken_tx = True
                raise DatabaseUnavailable(self, "the connection was lost in a transaction")
            conn = self._connect()
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- statements ---------------------------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        head = sql.lstrip()[:20].upper()
        if head.startswith("BEGIN"):
            return self.begin(None)
        if head.startswith(("COMMIT", "ROLLBACK")):
            return self._end(head.startswith("COMMIT"))
        if head.startswith("PRAGMA"):
            if head.startswith(("PRAGMA SYNCHRONOUS", "PRAGMA WAL_CHECKPOINT")):
                return PgCursor([], 0)
            raise sqlite3.OperationalError(f"{sql.strip()!r} is SQLite-only; write it per dialect (is_pg)")
        return self._run(translate(sql), [_param(p) for p in params])

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        """One statement over many parameter rows, pipelined (one round trip for the batch, not one per row)."""
        rows = [[_param(p) for p in params] for params in seq]
        if not rows:
            return PgCursor([], 0)
        conn = self.raw()
        try:
            with psycopg.Cursor(conn) as cur:  # server-side binding: pipelined (a ClientCursor sends row by row)
                cur.executemany(translate(sql), rows)
                return PgCursor([], cur.rowcount)
        except pg_errors.IntegrityError as e:
            raise sqlite3.IntegrityError(_first_line(e)) from e
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            if conn.broken or conn.closed:
                if self._in_tx:
                    self._broken_tx = True
                raise DatabaseUnavailable(self, _first_line(e)) from e
            raise sqlite3.OperationalError(_first_line(e)) from e
        except psycopg.Error as e:
            raise sqlite3.OperationalError(f"{_first_line(e)} (in: {sql.strip()[:200]})") from e

    def executescript(self, script: str) -> None:
        """Run a schema script (SQLite DDL) as PostgreSQL DDL, in one transaction."""
        self._run(translate_ddl(script), None, script=True)

    def _run(self, sql: str, params: list[Any] | None, *, script: bool = False) -> PgCursor:
        had = self._conn is not None and not self._conn.broken  # (a refused connect is not retried)
        try:
            return self._run_once(sql, params, script=script)
        except DatabaseUnavailable:
            # a plain read outside a transaction on a connection gone stale (PostgreSQL restarted while it sat
            # idle): nothing was done, so it runs once more on a new connection (see begin)
            if not had or self._in_tx or script or not sql.lstrip()[:6].upper().startswith("SELECT"):
                raise
            self.close()
            return self._run_once(sql, params, script=script)

    def _run_once(self, sql: str, params: list[Any] | None, *, script: bool = False) -> PgCursor:
        conn = self.raw()
        try:
            cur = conn.execute(sql) if script else conn.execute(sql, params, prepare=False, binary=self.bulk)
            rows = [_row(r) for r in cur.fetchall()] if cur.description is not None else []
            return PgCursor(rows, cur.rowcount)  # type: ignore[arg-type]
        except pg_errors.IntegrityError as e:
            raise sqlite3.IntegrityError(_first_line(e)) from e
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            if conn.broken or conn.closed:
                if self._in_tx:
                    self._broken_tx = True
                raise DatabaseUnavailable(self, _first_line(e)) from e
            raise sqlite3.OperationalError(_first_line(e)) from e
        except psycopg.Error as e:
            raise sqlite3.OperationalError(f"{_first_line(e)} (in: {sql.strip()[:200]})") from e

    def begin(self, lock: str | None) -> PgCursor:
        """Open a transaction holding the store's advisory lock (``lock`` None), the lock named ``lock`` within
        this store, or (``lock`` "") none: see ``SqliteDb._tx``.

        A connection that went stale while idle (PostgreSQL restarted meanwhile) fails at its first statement; at
        BEGIN nothing was done yet, so that case is retried once on a new connection instead of refusing the
        request (the first request after an outage succeeds, rather than one 503 per idle connection)."""
        for attempt in (1, 2):
            conn = self.raw()
            try:
                self._in_tx, self._broken_tx = True, False
                if lock == "":
                    conn.execute("BEGIN")
                else:  # one round trip: a statement without parameters goes as a simple query, both in one
                    key = self.key if lock is None else lock_key(f"{self.name}:{lock}")
                    conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({int(key)})".encode())
                return PgCursor([], 0)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                self._in_tx = False
                if attempt == 1 and (conn.broken or conn.closed):
                    self.close()
                    continue
                raise DatabaseUnavailable(self, _first_line(e)) from e
        raise AssertionError("unreachable")

    def _end(self, commit: bool) -> PgCursor:
        conn, broken = self._conn, self._broken_tx
        self._in_tx = self._broken_tx = False
        if conn is None or conn.closed or conn.broken or broken:
            if commit:
                raise DatabaseUnavailable(self, "the connection was lost before the commit")
            return PgCursor([], 0)
        try:
            conn.execute("COMMIT" if commit else "ROLLBACK")
        except pg_errors.IntegrityError as e:  # a deferred constraint
            raise sqlite3.IntegrityError(_first_line(e)) from e
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            if commit:
                raise DatabaseUnavailable(self, _first_line(e)) from e
        return PgCursor([], 0)

    # -- schema -------------------------------------------------------------------------------------------------

    def migrate(self, store: str, migrations: Sequence[str]) -> None:
        """Apply store ``store``'s missing migrations, each in its own transaction, under the cluster-wide
        migration lock (two nodes starting at once: the second waits, then finds them applied)."""
        conn = self.raw()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS squall_schema (store TEXT PRIMARY KEY, version BIGINT NOT NULL, "
                "updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            conn.execute(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'nocase') THEN "
                "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false); "
                "END IF; END $$"
            )
            conn.execute(
                "CREATE OR REPLACE FUNCTION squall_sum_bool(bigint, boolean) RETURNS bigint LANGUAGE sql IMMUTABLE "
                "STRICT AS 'SELECT $1 + CASE WHEN $2 THEN 1 ELSE 0 END'"
            )
            conn.execute(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE p.proname = 'sum' AND n.nspname = current_schema() AND p.prokind = 'a') THEN "
                "CREATE AGGREGATE sum(boolean) (SFUNC = squall_sum_bool, STYPE = bigint, INITCOND = '0'); "
                "END IF; END $$"
            )
            row = conn.execute("SELECT version FROM squall_schema WHERE store = %s", (store,)).fetchone()
            current = int(row[0]) if row else 0
            if current > len(migrations):
                raise sqlite3.OperationalError(
                    f"the {store!r} tables have schema version {current}, newer than this Squall "
                    f"({len(migrations)}); upgrade Squall"
                )
            for version in range(current, len(migrations)):
                conn.execute(translate_ddl(migrations[version]))
                conn.execute(
                    "INSERT INTO squall_schema (store, version) VALUES (%s, %s) ON CONFLICT (store) "
                    "DO UPDATE SET version = excluded.version, updated_at = now()",
                    (store, version + 1),
                )

    def advisory_lock(self, name: str, take: bool) -> None:
        """Take (waiting) or release the session advisory lock ``name`` of this store."""
        fn = "pg_advisory_lock" if take else "pg_advisory_unlock"
        self._run(f"SELECT {fn}(%s)", [lock_key(f"{self.name}:{name}")])

    def listen(self, channel: str, callback: Callable[[str | None], None]) -> PgListener:
        """Call ``callback`` with every payload NOTIFY'd on ``channel`` by any node (see ``PgListener``)."""
        return PgListener(self.url, channel, callback)

    def notify(self, channel: str, payload: str) -> None:
        """NOTIFY ``channel`` (delivered to every listening node once this connection's transaction commits)."""
        self._run("SELECT pg_notify(%s, %s)", [channel, payload])

    def schema_version(self, store: str) -> int:
        row = self.raw().execute("SELECT version FROM squall_schema WHERE store = %s", (store,)).fetchone()
        return int(row[0]) if row else 0


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class PgListener:
    """A thread that LISTENs on ``channel`` (its own connection) and calls ``callback(payload)`` for each
    NOTIFY, from that thread.  A lost connection is re-opened every second; after a reconnect ``callback(None)``
    is called once (notifications may have been missed meanwhile: wake everything).  ``close()`` stops it."""

    def __init__(self, url: str, channel: str, callback: Callable[[str | None], None]) -> None:
        self.url = url
        self.channel = channel
        self.callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pg-listen-{channel}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    if not first:
                        self.callback(None)
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.callback(note.payload)
            except psycopg.Error:
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
