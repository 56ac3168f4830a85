"""Durable SQS-compatible queues in their own SQLite file.

One connection (WAL), serialised by a lock, so a ``QueueStore`` may be shared by threads.  Sends commit with
``synchronous=FULL`` (fsync'd before ``send`` returns); receives, deletes and visibility changes commit with
``synchronous=NORMAL`` — losing one of those to a power failure only means a message is delivered again, which
at-least-once delivery allows.

Semantics follow standard SQS queues:

* a message is visible when ``visible_at <= now``; sending with a delay or receiving it moves ``visible_at``;
* each receive hands out a new opaque receipt handle; deleting with an older handle of a message that has been
  received again succeeds but deletes nothing (as AWS documents), a handle for a message already gone succeeds;
* retention is measured from the original send time (also after a move to a dead-letter queue); expired
  messages are dropped lazily (on receive and by ``sweep``);
* a message already received ``maxReceiveCount`` times is moved to the dead-letter queue when a receive would
  hand it out again (as SQS does), keeping its id, body, attributes and send time;
* receives prefer the oldest messages (send order).

Listeners (``add_listener``) are called with a queue name, outside the lock and after the commit, whenever
messages were added to that queue or made visible early; ``squall.sqs.store.wait.QueueWaiter`` turns that
into an asyncio wake-up for long polling.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from squall.core.arn import queue_arn, queue_of_arn
from squall.core.clock import Clock, SystemClock
from squall.core.errors import InvalidParameterValue, ServiceError, SquallError
from squall.sqs.errors import (
    InvalidAttributeName,
    MessageNotInflight,
    PurgeQueueInProgress,
    QueueDoesNotExist,
    QueueNameExists,
    ReceiptHandleIsInvalid,
)
from squall.sqs.store.attrs import (
    DEFAULT_ATTRIBUTES,
    QUEUE_ATTRIBUTE_NAMES,
    check_body,
    message_size,
    normalize_message_attributes,
    normalize_system_attributes,
    redrive_policy,
    validate_queue_attributes,
    validate_queue_name,
)
from squall.sqs.store.md5 import md5_of_attributes, md5_of_body
from squall.sqs.store.records import QueueInfo, QueueMessage, SendEntry, SentMessage
from squall.store.sqlite_conn import SqliteDb

__all__ = ["QueueStore", "parse_queue_arn"]

log = logging.getLogger(__name__)

Listener = Callable[[str], None]

_SCHEMA = [
    """
    CREATE TABLE queues (
        name TEXT PRIMARY KEY,
        attributes TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        modified_at REAL NOT NULL,
        purged_at REAL
    );
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        md5 TEXT NOT NULL,
        attributes TEXT NOT NULL,
        system TEXT NOT NULL,
        sent_at REAL NOT NULL,
        visible_at REAL NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        first_receive_at REAL,
        receipt TEXT
    );
    CREATE UNIQUE INDEX messages_id ON messages (queue, id);
    CREATE INDEX messages_visible ON messages (queue, visible_at);
    CREATE INDEX messages_order ON messages (queue, seq);
    """,
]

_MSG_COLUMNS = "seq, id, body, md5, attributes, system, sent_at, receive_count, first_receive_at"
_MAX_REDRIVES_PER_RECEIVE = 1000
_PURGE_INTERVAL_S = 60.0


def parse_queue_arn(arn: str) -> tuple[str, str, str]:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` -> (region, account, name); QueueDoesNotExist if malformed."""
    parsed = queue_of_arn(arn)
    if parsed is None:
        raise QueueDoesNotExist(f"The specified queue does not exist: {arn}")
    return parsed


def _encode_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    out: dict[str, dict[str, str]] = {}
    for name, value in attributes.items():
        if "BinaryValue" in value:
            out[name] = {"DataType": value["DataType"], "BinaryValue": base64.b64encode(value["BinaryValue"]).decode()}
        else:
            out[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
    return json.dumps(out, separators=(",", ":"))


def _decode_attributes(text: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in json.loads(text).items():
        if "BinaryValue" in value:
            out[name] = {"DataType": value["DataType"], "BinaryValue": base64.b64decode(value["BinaryValue"])}
        else:
            out[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
    return out


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


class QueueStore(SqliteDb):
    """Queues and their messages.  ``region``/``account_id`` make the queue ARNs."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        region: str = "us-east-1",
        account_id: str = "000000000000",
    ) -> None:
        self.path = str(path)
        self.region = region
        self.account_id = account_id
        self._clock: Clock = clock or SystemClock()
        self._listeners: list[Listener] = []
        self._open_db(self.path, durable_by_default=False)
        self._migrate()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            current = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if current > len(_SCHEMA):
                raise ServiceError(
                    f"queue database {self.path} has schema version {current}, newer than this Squall "
                    f"({len(_SCHEMA)}); upgrade Squall"
                )
            for version in range(current, len(_SCHEMA)):
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{_SCHEMA[version]};\nPRAGMA user_version = {version + 1};\nCOMMIT;"
                )

    def now(self) -> float:
        """The store's clock (visibility, delays and retention are measured on it)."""
        return self._clock.now()

    # -- listeners ------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(queue_name)`` (from the thread that made the change, after its commit) whenever
        messages are added to a queue or made visible before their time.  Must be quick and must not raise."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self, names: Iterable[str]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for name in set(names):
            for listener in listeners:
                try:
                    listener(name)
                except Exception:  # a broken listener must not fail a send
                    log.exception("queue listener failed")

    # -- queues ---------------------------------------------------------------------------------------------

    def queue_arn(self, name: str) -> str:
        return queue_arn(self.region, self.account_id, name)

    def name_from_arn(self, arn: str) -> str:
        """The queue name an ARN of this region and account names; QueueDoesNotExist otherwise."""
        region, account, name = parse_queue_arn(arn)
        if region != self.region or account != self.account_id:
            raise QueueDoesNotExist(f"The specified queue does not exist: {arn}")
        return name

    def _info(self, row: tuple[Any, ...]) -> QueueInfo:
        return QueueInfo(
            name=row[0],
            arn=self.queue_arn(row[0]),
            attributes=json.loads(row[1]),
            tags=json.loads(row[2]),
            created_at=row[3],
            modified_at=row[4],
        )

    def _queue(self, conn: sqlite3.Connection, name: str) -> QueueInfo:
        row = conn.execute(
            "SELECT name, attributes, tags, created_at, modified_at FROM queues WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise QueueDoesNotExist()
        return self._info(row)

    def get_queue(self, name: str) -> QueueInfo:
        with self._lock:
            return self._queue(self._conn, name)

    def queue_exists(self, name: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM queues WHERE name = ?", (name,)).fetchone() is not None

    def _check_redrive(self, conn: sqlite3.Connection, attributes: Mapping[str, str]) -> None:
        text = attributes.get("RedrivePolicy")
        if not text:
            return
        arn, _ = redrive_policy(text)
        try:
            target = self.name_from_arn(arn)
            self._queue(conn, target)
        except QueueDoesNotExist:
            raise InvalidParameterValue(
                f"Value {text} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist."
            )

    def create_queue(
        self, name: str, attributes: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None
    ) -> QueueInfo:
        """Create a queue, or return the existing one if every given attribute matches it (QueueNameExists
        otherwise).  FIFO queues raise UnsupportedOperation."""
        validate_queue_name(name)
        given = validate_queue_attributes(attributes or {})
        now = self._clock.now()
        with self._tx(durable=True) as conn:
            row = conn.execute(
                "SELECT name, attributes, tags, created_at, modified_at FROM queues WHERE name = ?", (name,)
            ).fetchone()
            if row is not None:
                existing = self._info(row)
                for key, value in given.items():
                    if existing.attributes.get(key, DEFAULT_ATTRIBUTES.get(key, "")) != value:
                        raise QueueNameExists(
                            f"A queue already exists with the same name and a different value for attribute {key}"
                        )
                return existing
            self._check_redrive(conn, given)
            stored = {**DEFAULT_ATTRIBUTES, **{k: v for k, v in given.items() if v != "" or k != "RedrivePolicy"}}
            conn.execute(
                "INSERT INTO queues (name, attributes, tags, created_at, modified_at) VALUES (?, ?, ?, ?, ?)",
                (name, json.dumps(stored), json.dumps(dict(tags or {})), now, now),
            )
            return self._queue(conn, name)

    def delete_queue(self, name: str) -> None:
        with self._tx(durable=True, write=False) as conn:
            self._queue(conn, name)
            conn.execute("DELETE FROM messages WHERE queue = ?", (name,))
            conn.execute("DELETE FROM queues WHERE name = ?", (name,))

    def list_queues(self, prefix: str = "") -> list[str]:
        """Queue names starting with ``prefix``, sorted."""
        with self._lock:
            rows = self._conn.execute("SELECT name FROM queues ORDER BY name").fetchall()
        return [r[0] for r in rows if r[0].startswith(prefix)]

    def set_attributes(self, name: str, attributes: Mapping[str, Any]) -> QueueInfo:
        given = validate_queue_attributes(attributes)
        now = self._clock.now()
        with self._tx(durable=True) as conn:
            queue = self._queue(conn, name)
            self._check_redrive(conn, given)
            merged = {**queue.attributes, **given}
            if merged.get("RedrivePolicy") == "":
                del merged["RedrivePolicy"]
            conn.execute(
                "UPDATE queues SET attributes = ?, modified_at = ? WHERE name = ?", (json.dumps(merged), now, name)
            )
            return self._queue(conn, name)

    def get_attributes(self, name: str, names: Iterable[str] = ("All",)) -> dict[str, str]:
        """The requested attributes ("All" for every one), computed ones included; InvalidAttributeName for
        unknown names.  Attributes a queue does not have (RedrivePolicy unset, FIFO ones) are left out."""
        wanted = list(names)
        for item in wanted:
            if item not in QUEUE_ATTRIBUTE_NAMES:
                raise InvalidAttributeName(f"Unknown Attribute {item}.")
        now = self._clock.now()
        with self._lock:
            conn = self._conn
            queue = self._queue(conn, name)
            retention = queue.int_attribute("MessageRetentionPeriod")
            counts = conn.execute(
                "SELECT "
                "  COALESCE(SUM(visible_at <= ?), 0), "
                "  COALESCE(SUM(visible_at > ? AND receive_count > 0), 0), "
                "  COALESCE(SUM(visible_at > ? AND receive_count = 0), 0) "
                "FROM messages WHERE queue = ? AND sent_at > ?",
                (now, now, now, name, now - retention),
            ).fetchone()
        everything: dict[str, str] = dict(queue.attributes)
        everything.update(
            {
                "ApproximateNumberOfMessages": str(counts[0]),
                "ApproximateNumberOfMessagesNotVisible": str(counts[1]),
                "ApproximateNumberOfMessagesDelayed": str(counts[2]),
                "CreatedTimestamp": str(int(queue.created_at)),
                "LastModifiedTimestamp": str(int(queue.modified_at)),
                "QueueArn": queue.arn,
            }
        )
        if "All" in wanted:
            return everything
        return {k: everything[k] for k in wanted if k in everything}

    def tag(self, name: str, tags: Mapping[str, str]) -> None:
        with self._tx(durable=True) as conn:
            queue = self._queue(conn, name)
            merged = {**queue.tags, **tags}
            conn.execute("UPDATE queues SET tags = ? WHERE name = ?", (json.dumps(merged), name))

    def untag(self, name: str, keys: Iterable[str]) -> None:
        with self._tx(durable=True) as conn:
            queue = self._queue(conn, name)
            remaining = {k: v for k, v in queue.tags.items() if k not in set(keys)}
            conn.execute("UPDATE queues SET tags = ? WHERE name = ?", (json.dumps(remaining), name))

    def tags(self, name: str) -> dict[str, str]:
        return self.get_queue(name).tags

    def dead_letter_sources(self, name: str) -> list[str]:
        """Names of the queues whose RedrivePolicy targets ``name``."""
        with self._lock:
            target = self._queue(self._conn, name).arn
            rows = self._conn.execute("SELECT name, attributes FROM queues ORDER BY name").fetchall()
        out = []
        for row_name, text in rows:
            policy = json.loads(text).get("RedrivePolicy")
            if policy and redrive_policy(policy)[0] == target:
                out.append(row_name)
        return out

    def purge(self, name: str) -> None:
        """Delete every message; once per 60 s per queue (PurgeQueueInProgress otherwise)."""
        now = self._clock.now()
        with self._tx(durable=True, write=False) as conn:
            self._queue(conn, name)
            row = conn.execute("SELECT purged_at FROM queues WHERE name = ?", (name,)).fetchone()
            if row[0] is not None and now - row[0] < _PURGE_INTERVAL_S:
                raise PurgeQueueInProgress(f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.")
            conn.execute("DELETE FROM messages WHERE queue = ?", (name,))
            conn.execute("UPDATE queues SET purged_at = ? WHERE name = ?", (now, name))

    # -- sending --------------------------------------------------------------------------------------------

    def _prepare(self, queue: QueueInfo, entry: SendEntry, now: float) -> tuple[tuple[Any, ...], SentMessage]:
        body = check_body(entry.body)
        attributes = normalize_message_attributes(entry.message_attributes)
        system = normalize_system_attributes(entry.system_attributes)
        limit = queue.int_attribute("MaximumMessageSize")
        if message_size(body, attributes) > limit:
            raise InvalidParameterValue(
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )
        delay = queue.int_attribute("DelaySeconds") if entry.delay_seconds is None else entry.delay_seconds
        if not 0 <= delay <= 900:
            raise InvalidParameterValue(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided."
            )
        sent = SentMessage(
            message_id=str(uuid.uuid4()),
            md5_of_body=md5_of_body(body),
            md5_of_message_attributes=md5_of_attributes(attributes),
            md5_of_system_attributes=md5_of_attributes(system),
        )
        extra: dict[str, str] = {"SenderId": entry.sender_id or self.account_id}
        if "AWSTraceHeader" in system:
            extra["AWSTraceHeader"] = system["AWSTraceHeader"]["StringValue"]
        if entry.message_group_id:
            extra["MessageGroupId"] = entry.message_group_id
        row = (
            queue.name,
            sent.message_id,
            body,
            sent.md5_of_body,
            _encode_attributes(attributes),
            json.dumps(extra),
            now,
            now + delay,
        )
        return row, sent

    def send_batch(self, name: str, entries: list[SendEntry]) -> list[SentMessage | SquallError]:
        """Send several messages in one durable transaction.  Each result is the sent message, or the error that
        refused that entry (the others are still sent).  QueueDoesNotExist fails the whole call."""
        now = self._clock.now()
        results: list[SentMessage | SquallError] = []
        with self._tx(durable=True) as conn:
            queue = self._queue(conn, name)
            rows = []
            for entry in entries:
                try:
                    row, sent = self._prepare(queue, entry, now)
                except SquallError as e:
                    results.append(e)
                    continue
                rows.append(row)
                results.append(sent)
            conn.executemany(
                "INSERT INTO messages (queue, id, body, md5, attributes, system, sent_at, visible_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if rows:
            self._notify([name])
        return results

    def send(self, name: str, entry: SendEntry | str) -> SentMessage:
        """Send one message (a ``SendEntry`` or just a body); durable (fsync'd) when this returns."""
        if isinstance(entry, str):
            entry = SendEntry(body=entry)
        (result,) = self.send_batch(name, [entry])
        if isinstance(result, SquallError):
            raise result
        return result

    def send_to_queue_arn(self, arn: str, body: str, **options: Any) -> SentMessage:
        """Send to the queue an ARN names (Lambda destinations and DLQs); ``options`` are ``SendEntry`` fields."""
        return self.send(self.name_from_arn(arn), SendEntry(body=body, **options))

    # -- receiving ------------------------------------------------------------------------------------------

    def _handle(self, queue: str, message_id: str, token: str) -> str:
        raw = f"{queue}\n{message_id}\n{token}".encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _parse_handle(handle: str) -> tuple[str, str, str]:
        try:
            parts = base64.urlsafe_b64decode(handle.encode("ascii")).decode("utf-8").split("\n")
        except (binascii.Error, UnicodeError, ValueError):
            parts = []
        if len(parts) != 3 or not all(parts):
            raise ReceiptHandleIsInvalid(f'The input receipt handle "{handle}" is not a valid receipt handle.')
        return parts[0], parts[1], parts[2]

    def _redrive_target(self, conn: sqlite3.Connection, queue: QueueInfo) -> tuple[str, int] | None:
        policy = queue.attributes.get("RedrivePolicy")
        if not policy:
            return None
        arn, count = redrive_policy(policy)
        try:
            target = self.name_from_arn(arn)
        except QueueDoesNotExist:
            return None
        if target == queue.name or conn.execute("SELECT 1 FROM queues WHERE name = ?", (target,)).fetchone() is None:
            return None
        return target, count

    def _move(self, conn: sqlite3.Connection, seq: int, source: QueueInfo, target: str, now: float) -> None:
        row = conn.execute(
            "SELECT id, body, md5, attributes, system, sent_at FROM messages WHERE seq = ?", (seq,)
        ).fetchone()
        system = json.loads(row[4])
        system["DeadLetterQueueSourceArn"] = source.arn
        conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        conn.execute(
            "INSERT OR REPLACE INTO messages (queue, id, body, md5, attributes, system, sent_at, visible_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (target, row[0], row[1], row[2], row[3], json.dumps(system), row[5], now),
        )

    def receive(self, name: str, max_messages: int = 1, visibility_timeout: int | None = None) -> list[QueueMessage]:
        """Take up to ``max_messages`` (1..10) visible messages, oldest first, hiding them for
        ``visibility_timeout`` seconds (default: the queue's VisibilityTimeout).  Never waits."""
        if not 1 <= max_messages <= 10:
            raise InvalidParameterValue(
                f"Value {max_messages} for parameter MaxNumberOfMessages is invalid. "
                "Reason: Must be between 1 and 10, if provided."
            )
        if visibility_timeout is not None and not 0 <= visibility_timeout <= 43200:
            raise InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Must be between 0 and 43200, if provided."
            )
        now = self._clock.now()
        moved_to: set[str] = set()
        out: list[QueueMessage] = []
        with self._tx(durable=False) as conn:
            queue = self._queue(conn, name)
            timeout = queue.int_attribute("VisibilityTimeout") if visibility_timeout is None else visibility_timeout
            retention = queue.int_attribute("MessageRetentionPeriod")
            conn.execute("DELETE FROM messages WHERE queue = ? AND sent_at <= ?", (name, now - retention))
            redrive = self._redrive_target(conn, queue)
            moves = 0
            while len(out) < max_messages and moves <= _MAX_REDRIVES_PER_RECEIVE:
                rows = conn.execute(
                    f"SELECT {_MSG_COLUMNS} FROM messages WHERE queue = ? AND visible_at <= ? ORDER BY seq LIMIT ?",
                    (name, now, max_messages - len(out)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    seq, receive_count = row[0], row[7]
                    if redrive is not None and receive_count >= redrive[1]:
                        self._move(conn, seq, queue, redrive[0], now)
                        moved_to.add(redrive[0])
                        moves += 1
                        continue
                    out.append(self._take(conn, name, row, now, timeout))
        if moved_to:
            self._notify(moved_to)
        return out

    def receive_batch(
        self, queue_name: str, max_messages: int = 10, visibility_timeout: int | None = None
    ) -> list[QueueMessage]:
        """``receive`` for pollers (event source mappings): up to ``max_messages`` at once."""
        return self.receive(queue_name, max_messages, visibility_timeout)

    def _take(
        self, conn: sqlite3.Connection, name: str, row: tuple[Any, ...], now: float, timeout: int
    ) -> QueueMessage:
        seq, message_id, body, md5, attributes, system, sent_at, receive_count, first = row
        token = secrets.token_hex(16)
        receive_count += 1
        first = now if first is None else first
        conn.execute(
            "UPDATE messages SET receive_count = ?, first_receive_at = ?, visible_at = ?, receipt = ? WHERE seq = ?",
            (receive_count, first, now + timeout, token, seq),
        )
        extra = json.loads(system)
        attrs = {
            "SenderId": extra.pop("SenderId", self.account_id),
            "SentTimestamp": _ms(sent_at),
            "ApproximateReceiveCount": str(receive_count),
            "ApproximateFirstReceiveTimestamp": _ms(first),
            **extra,
        }
        return QueueMessage(
            queue_name=name,
            message_id=message_id,
            receipt_handle=self._handle(name, message_id, token),
            body=body,
            md5_of_body=md5,
            attributes=attrs,
            message_attributes=_decode_attributes(attributes),
            sent_at=sent_at,
            receive_count=receive_count,
        )

    def next_visible_at(self, name: str) -> float | None:
        """When the next message of ``name`` is (or was) visible, in clock seconds, or None if the queue is empty.
        Long polling sleeps until then at most.  A time already past is returned too: a message that became
        visible between a receive and this call must wake the poller at once, not after the whole wait."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(visible_at) FROM messages WHERE queue = ?", (name,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- acknowledging --------------------------------------------------------------------------------------

    def _locate(self, conn: sqlite3.Connection, name: str, handle: str) -> tuple[tuple[Any, ...] | None, str]:
        queue_name, message_id, token = self._parse_handle(handle)
        if queue_name != name:
            raise ReceiptHandleIsInvalid(f'The input receipt handle "{handle}" is not a valid receipt handle.')
        row = conn.execute(
            "SELECT seq, receipt, visible_at FROM messages WHERE queue = ? AND id = ?", (name, message_id)
        ).fetchone()
        return row, token

    def delete_message(self, name: str, receipt_handle: str) -> bool:
        """Delete the message received with ``receipt_handle``.  True if it was deleted; False (no error) if it
        was already gone or has been received again since (the handle is stale), as SQS does."""
        with self._tx(durable=False, write=False) as conn:
            self._queue(conn, name)
            row, token = self._locate(conn, name, receipt_handle)
            if row is None or row[1] != token:
                return False
            conn.execute("DELETE FROM messages WHERE seq = ?", (row[0],))
            return True

    def change_visibility(self, name: str, receipt_handle: str, visibility_timeout: int) -> None:
        """Hide an in-flight message for ``visibility_timeout`` seconds from now (0 makes it visible)."""
        if not 0 <= visibility_timeout <= 43200:
            raise InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Must be between 0 and 43200, if provided."
            )
        now = self._clock.now()
        with self._tx(durable=False) as conn:
            self._queue(conn, name)
            row, token = self._locate(conn, name, receipt_handle)
            if row is None or row[1] != token:
                raise InvalidParameterValue(
                    f"Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist "
                    "or is not available for visibility timeout change."
                )
            if row[2] <= now:
                raise MessageNotInflight()
            conn.execute("UPDATE messages SET visible_at = ? WHERE seq = ?", (now + visibility_timeout, row[0]))
        if visibility_timeout == 0:
            self._notify([name])

    # -- housekeeping ---------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Drop the messages past their queue's retention period; returns how many."""
        now = self._clock.now()
        dropped = 0
        with self._tx(durable=False) as conn:
            for name, text in conn.execute("SELECT name, attributes FROM queues").fetchall():
                retention = int(json.loads(text)["MessageRetentionPeriod"])
                cur = conn.execute("DELETE FROM messages WHERE queue = ? AND sent_at <= ?", (name, now - retention))
                dropped += cur.rowcount
        return dropped
