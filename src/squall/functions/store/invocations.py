"""Invocation records and logs: written in batches by ``RecordWriter``, queried for the console and the CLI,
and pruned in bounded batches.  Record and log writes are not fsync'd (a power failure may lose the last
fraction of a second of them; a process crash loses only what was not flushed yet)."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from squall.core.errors import InvalidParameterValue
from squall.functions.store.records import InvocationRecord, LogLine, UsageRow
from squall.functions.store.sqlite import SqliteBase

__all__ = ["BatchSink", "InvocationsMixin", "PendingLog", "RecordWriter"]

#: (request_id, function, ts, text): a log entry not written yet
PendingLog = tuple[str, str, float, str]

_RECORD_COLUMNS = (
    "request_id, function, version, trigger, start, duration_ms, billed_ms, init_ms, memory_mb, "
    "max_memory_mb, status, error_type, cold, provisioned"
)


def _record(row: Sequence[Any]) -> InvocationRecord:
    (request_id, function, version, trigger, start, duration_ms, billed_ms, init_ms, memory_mb, max_memory_mb,
     status, error_type, cold, provisioned) = row[:14]  # fmt: skip
    return InvocationRecord(
        request_id, function, version, trigger, start, duration_ms, billed_ms, init_ms, memory_mb,
        max_memory_mb, status, error_type, bool(cold), bool(provisioned),
    )  # fmt: skip


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class InvocationsMixin(SqliteBase):
    def write_batch(self, records: Sequence[InvocationRecord], logs: Sequence[PendingLog]) -> None:
        """Write records and logs in one transaction (what ``RecordWriter.flush`` calls)."""
        if not records and not logs:
            return
        with self._tx(durable=False) as conn:
            conn.executemany(
                f"INSERT INTO invocations ({_RECORD_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                [
                    (
                        r.request_id, r.function, r.version, r.trigger, r.start, r.duration_ms, r.billed_ms,
                        r.init_ms, r.memory_mb, r.max_memory_mb, r.status, r.error_type, int(r.cold),
                        int(r.provisioned),
                    )
                    for r in records
                ],
            )  # fmt: skip
            conn.executemany("INSERT INTO logs (request_id, function, ts, text) VALUES (?, ?, ?, ?)", logs)

    def get_invocation(self, request_id: str) -> InvocationRecord | None:
        """The latest record with this request id (async retries share one)."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM invocations WHERE request_id = ? ORDER BY id DESC LIMIT 1",
                (request_id,),
            ).fetchone()
        return None if row is None else _record(row)

    def list_invocations(
        self,
        function: str | None = None,
        since: float | None = None,
        until: float | None = None,
        status: str | None = None,
        limit: int = 50,
        before_cursor: str | None = None,
    ) -> tuple[list[InvocationRecord], str | None]:
        """Records newest first (by start), ``since <= start < until``.  Pass the returned cursor as
        ``before_cursor`` for the next (older) page; None means there is none."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        for clause, value in (("function = ?", function), ("start >= ?", since), ("start < ?", until),
                              ("status = ?", status)):  # fmt: skip
            if value is not None:
                where.append(clause)
                args.append(value)
        if before_cursor:
            try:
                start_s, _, id_s = before_cursor.partition("/")
                cursor = (float(start_s), int(id_s))
            except ValueError:
                raise InvalidParameterValue(f"Invalid cursor: {before_cursor}")
            where.append("(start, id) < (?, ?)")
            args += cursor
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS}, id FROM invocations WHERE {' AND '.join(where)} "
                "ORDER BY start DESC, id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        if len(rows) > limit:
            rows = rows[:limit]
            return [_record(r) for r in rows], f"{rows[-1][4]!r}/{rows[-1][14]}"
        return [_record(r) for r in rows], None

    def usage(self, since: float, until: float) -> list[UsageRow]:
        """Per-function aggregates over ``since <= start < until``, ordered by function."""
        span = (since, until)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT function, SUM(status != 'throttled'), SUM(status NOT IN ('ok', 'throttled')), "
                "SUM(status = 'throttled'), SUM(status != 'throttled' AND cold != 0), "
                "SUM(CASE WHEN status != 'throttled' THEN billed_ms ELSE 0 END), "
                "SUM(CASE WHEN status != 'throttled' THEN billed_ms * memory_mb ELSE 0 END) "
                "FROM invocations WHERE start >= ? AND start < ? GROUP BY function ORDER BY function",
                span,
            ).fetchall()
            result = []
            for function, requests, errors, throttles, cold, billed, mb_ms in rows:
                p50, p99 = (self._percentile(conn, function, span, requests, p) for p in (0.50, 0.99))
                result.append(
                    UsageRow(
                        function=function,
                        requests=requests,
                        errors=errors,
                        throttles=throttles,
                        cold_starts=cold,
                        billed_ms=billed,
                        gb_seconds=mb_ms / 1024 / 1000,
                        p50_ms=p50,
                        p99_ms=p99,
                    )
                )
        return result

    @staticmethod
    def _percentile(conn: sqlite3.Connection, function: str, span: tuple[float, float], n: int, p: float) -> float:
        """Nearest-rank percentile of duration_ms among the function's non-throttled records."""
        if n == 0:
            return 0.0
        rank = max(1, math.ceil(p * n))
        row = conn.execute(
            "SELECT duration_ms FROM invocations WHERE function = ? AND start >= ? AND start < ? "
            "AND status != 'throttled' ORDER BY duration_ms LIMIT 1 OFFSET ?",
            (function, *span, rank - 1),
        ).fetchone()
        return 0.0 if row is None else float(row[0])

    # -- logs --

    def get_logs(self, request_id: str) -> list[LogLine]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, ts, request_id, text, function FROM logs WHERE request_id = ? ORDER BY id",
                (request_id,),
            ).fetchall()
        return [LogLine(*r) for r in rows]

    def tail_logs(self, function: str | None, since_id: int = 0, limit: int = 100) -> list[LogLine]:
        """Log entries with id > ``since_id``, oldest first (follow mode: pass the last id seen)."""
        with self._read() as conn:
            if function is None:
                rows = conn.execute(
                    "SELECT id, ts, request_id, text, function FROM logs WHERE id > ? ORDER BY id LIMIT ?",
                    (since_id, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, ts, request_id, text, function FROM logs WHERE function = ? AND id > ? "
                    "ORDER BY id LIMIT ?",
                    (function, since_id, limit),
                ).fetchall()
        return [LogLine(*r) for r in rows]

    def search_logs(
        self,
        function: str | None,
        text: str,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[LogLine]:
        """Entries containing ``text`` (case-insensitive for ASCII), newest first, ``since <= ts < until``."""
        where = ["text LIKE ? ESCAPE '\\'"]
        args: list[Any] = [f"%{_like_escape(text)}%"]
        for clause, value in (("function = ?", function), ("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT id, ts, request_id, text, function FROM logs WHERE {' AND '.join(where)} "
                "ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [LogLine(*r) for r in rows]

    # -- retention --

    def prune(self, before: float, batch_size: int = 2000, max_batches: int | None = None) -> int:
        """Delete records (start < before) and logs (ts < before), ``batch_size`` rows per transaction with
        the lock released in between; stops after ``max_batches`` transactions if given.  Returns the number
        of rows deleted."""
        deleted = batches = 0
        for table, column in (("invocations", "start"), ("logs", "ts")):
            while max_batches is None or batches < max_batches:
                with self._tx(durable=False) as conn:
                    n = conn.execute(
                        f"DELETE FROM {table} WHERE id IN "
                        f"(SELECT id FROM {table} WHERE {column} < ? ORDER BY {column} LIMIT ?)",
                        (before, batch_size),
                    ).rowcount
                batches += 1
                deleted += n
                if n < batch_size:
                    break
        return deleted


class BatchSink(Protocol):
    def write_batch(self, records: Sequence[InvocationRecord], logs: Sequence[PendingLog]) -> None: ...


class RecordWriter:
    """Buffers invocation records and log entries in memory; ``flush`` writes them in one transaction.

    ``add``/``add_log`` are cheap and safe from any thread or the event loop.  The server calls ``flush``
    every ~100 ms (from a worker thread) and on shutdown.  If a flush fails its batch is put back (and the
    error raised); past ``max_pending`` entries the oldest are dropped and counted in ``dropped``.
    """

    def __init__(self, sink: BatchSink, max_pending: int = 100_000) -> None:
        self._sink = sink
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._records: list[InvocationRecord] = []
        self._logs: list[PendingLog] = []
        self.dropped = 0

    def add(self, record: InvocationRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._trim()

    def add_invocation(self, record: InvocationRecord, log: PendingLog | None) -> None:
        """A record and (if any) its log entry, under one lock acquisition (the invoker's hot path)."""
        with self._lock:
            self._records.append(record)
            if log is not None:
                self._logs.append(log)
            if len(self._records) > self._max_pending or len(self._logs) > self._max_pending:
                self._trim()

    def add_log(self, request_id: str, function: str, ts: float, text: str) -> None:
        with self._lock:
            self._logs.append((request_id, function, ts, text))
            self._trim()

    def pending(self) -> int:
        with self._lock:
            return len(self._records) + len(self._logs)

    def flush(self) -> int:
        """Write everything pending; returns the number of entries written."""
        with self._flush_lock:
            with self._lock:
                records, self._records = self._records, []
                logs, self._logs = self._logs, []
            try:
                self._sink.write_batch(records, logs)
            except BaseException:
                with self._lock:
                    self._records[:0] = records
                    self._logs[:0] = logs
                    self._trim()
                raise
            return len(records) + len(logs)

    def _trim(self) -> None:
        for buf in (self._records, self._logs):
            excess = len(buf) - self._max_pending
            if excess > 0:
                del buf[:excess]
                self.dropped += excess
