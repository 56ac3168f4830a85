"""Roles, managed policies, their attachments and Lambda functions' resource-based policies, in one SQLite file
(``<data dir>/iam.db``, created 0600; every write fsync'd before it returns, like the rest of the control plane).

``generation`` grows with every write, so evaluators can cache parsed policies and notice any change.  In a
cluster the writes made through other nodes count too: every write here calls the ``on_write`` hooks (the cluster
announces it), and a write announced by another node calls ``invalidate`` (the generation grows, the caches of
this node miss once and read the shared database again).
"""

from __future__ import annotations

import json
import os
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squall.store.db import DbTarget, PgTarget, migrate
from squall.store.sqlite_conn import SqliteDb

__all__ = ["FunctionPolicy", "IamStore", "ManagedPolicy", "Role", "new_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS roles (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    path TEXT NOT NULL,
    role_id TEXT NOT NULL,
    assume_role_policy TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    max_session INTEGER NOT NULL DEFAULT 3600,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS role_policies (
    role TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (role, name)
);
CREATE TABLE IF NOT EXISTS policies (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    path TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    document TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    role TEXT NOT NULL COLLATE NOCASE,
    policy_arn TEXT NOT NULL,
    PRIMARY KEY (role, policy_arn)
);
CREATE TABLE IF NOT EXISTS function_policies (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    statements TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
"""


def new_id(prefix: str) -> str:
    """An IAM unique id: a 4-letter prefix (AROA for roles, ANPA for policies) and 17 upper-case letters/digits."""
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17))


@dataclass(frozen=True)
class Role:
    name: str
    path: str
    role_id: str
    assume_role_policy: str
    description: str = ""
    max_session: int = 3600
    tags: list[dict[str, str]] = field(default_factory=list)
    created_at: float = 0.0


@dataclass(frozen=True)
class ManagedPolicy:
    name: str
    path: str
    policy_id: str
    document: str
    description: str = ""
    tags: list[dict[str, str]] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class FunctionPolicy:
    """A function's (or one qualifier's) resource-based policy: its statements (JSON objects) and revision."""

    function: str
    qualifier: str
    statements: list[dict[str, Any]]
    revision_id: str


_ROLE_COLUMNS = "name, path, role_id, assume_role_policy, description, max_session, tags, created_at"


def _role(r: Sequence[Any]) -> Role:
    return Role(r[0], r[1], r[2], r[3], r[4], int(r[5]), json.loads(r[6]), float(r[7]))


class IamStore(SqliteDb):
    """Thread-safe (one connection behind a lock)."""

    def __init__(self, path: DbTarget) -> None:
        if not isinstance(path, PgTarget):
            path = Path(path)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._open_db(path, durable_by_default=True)
        migrate(self._conn, "iam", [_SCHEMA], self._migrate_sqlite)
        self.generation = 0
        #: called (in the writer's thread) after every committed write: a cluster tells the other nodes
        self.on_write: list[Callable[[], None]] = []

    def invalidate(self) -> None:
        """Something changed that this process did not write (another node of the cluster did): whoever caches
        what it read here reads again."""
        self.generation += 1

    def _migrate_sqlite(self) -> None:
        with self._tx() as conn:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)

    def _bump(self) -> None:
        self.generation += 1
        for hook in self.on_write:
            hook()

    # -- roles --

    def create_role(self, role: Role) -> bool:
        """False if a role of that name (case-insensitively) exists."""
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM roles WHERE name = ?", (role.name,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO roles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (role.name, role.path, role.role_id, role.assume_role_policy, role.description, role.max_session,
                 json.dumps(role.tags), role.created_at or time.time()),
            )  # fmt: skip
        self._bump()
        return True

    def get_role(self, name: str) -> Role | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_ROLE_COLUMNS} FROM roles WHERE name = ?", (name,)).fetchone()
        return _role(row) if row else None

    def list_roles(self) -> list[Role]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_ROLE_COLUMNS} FROM roles ORDER BY name COLLATE NOCASE").fetchall()
        return [_role(r) for r in rows]

    def update_assume_role_policy(self, name: str, document: str) -> bool:
        with self._tx() as conn:
            n = conn.execute("UPDATE roles SET assume_role_policy = ? WHERE name = ?", (document, name)).rowcount
        self._bump()
        return n > 0

    def role_dependents(self, name: str) -> tuple[int, int]:
        """(inline policies, attached policies) of a role."""
        with self._lock:
            inline = self._conn.execute("SELECT COUNT(*) FROM role_policies WHERE role = ?", (name,)).fetchone()[0]
            attached = self._conn.execute("SELECT COUNT(*) FROM attachments WHERE role = ?", (name,)).fetchone()[0]
        return int(inline), int(attached)

    def delete_role(self, name: str) -> bool:
        with self._tx() as conn:
            n = conn.execute("DELETE FROM roles WHERE name = ?", (name,)).rowcount
        self._bump()
        return n > 0

    # -- inline policies --

    def put_role_policy(self, role: str, name: str, document: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO role_policies VALUES (?, ?, ?) ON CONFLICT (role, name) DO UPDATE SET document = ?",
                (role, name, document, document),
            )
        self._bump()

    def get_role_policy(self, role: str, name: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT document FROM role_policies WHERE role = ? AND name = ?", (role, name)
            ).fetchone()
        return str(row[0]) if row else None

    def list_role_policies(self, role: str) -> list[tuple[str, str]]:
        """(name, document) of each inline policy, by name."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, document FROM role_policies WHERE role = ? ORDER BY name", (role,)
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def delete_role_policy(self, role: str, name: str) -> bool:
        with self._tx() as conn:
            n = conn.execute("DELETE FROM role_policies WHERE role = ? AND name = ?", (role, name)).rowcount
        self._bump()
        return n > 0

    # -- managed policies --

    def create_policy(self, policy: ManagedPolicy) -> bool:
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM policies WHERE name = ?", (policy.name,)).fetchone():
                return False
            now = policy.created_at or time.time()
            conn.execute(
                "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (policy.name, policy.path, policy.policy_id, policy.description, policy.document,
                 json.dumps(policy.tags), now, now),
            )  # fmt: skip
        self._bump()
        return True

    def _policies(self, where: str = "", args: tuple[Any, ...] = ()) -> list[ManagedPolicy]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT p.name, p.path, p.policy_id, p.document, p.description, p.tags, p.created_at, p.updated_at"
                f" FROM policies p {where} ORDER BY p.name COLLATE NOCASE",
                args,
            ).fetchall()
        return [ManagedPolicy(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), float(r[6]), float(r[7])) for r in rows]

    def get_policy(self, name: str) -> ManagedPolicy | None:
        found = self._policies("WHERE p.name = ?", (name,))
        return found[0] if found else None

    def list_policies(self) -> list[ManagedPolicy]:
        return self._policies()

    def delete_policy(self, name: str) -> bool:
        with self._tx() as conn:
            n = conn.execute("DELETE FROM policies WHERE name = ?", (name,)).rowcount
        self._bump()
        return n > 0

    def attach(self, role: str, policy_arn: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO attachments VALUES (?, ?)", (role, policy_arn))
        self._bump()

    def detach(self, role: str, policy_arn: str) -> bool:
        with self._tx() as conn:
            n = conn.execute("DELETE FROM attachments WHERE role = ? AND policy_arn = ?", (role, policy_arn)).rowcount
        self._bump()
        return n > 0

    def attached(self, role: str) -> list[str]:
        """The ARNs of the policies attached to a role, in attachment order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT policy_arn FROM attachments WHERE role = ? ORDER BY rowid", (role,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def attachment_count(self, policy_arn: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM attachments WHERE policy_arn = ?", (policy_arn,)).fetchone()
        return int(row[0])

    # -- Lambda resource-based policies --

    def get_function_policy(self, function: str, qualifier: str) -> FunctionPolicy | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT statements, revision_id FROM function_policies WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            ).fetchone()
        return FunctionPolicy(function, qualifier, json.loads(row[0]), str(row[1])) if row else None

    def put_function_policy(self, function: str, qualifier: str, statements: list[dict[str, Any]]) -> str:
        """Replace the statements (none: delete the policy); returns the new revision id ("" when deleted)."""
        revision = "" if not statements else secrets.token_hex(16)
        with self._tx() as conn:
            if statements:
                conn.execute(
                    "INSERT INTO function_policies VALUES (?, ?, ?, ?) ON CONFLICT (function, qualifier) "
                    "DO UPDATE SET statements = excluded.statements, revision_id = excluded.revision_id",
                    (function, qualifier, json.dumps(statements), revision),
                )
            else:
                conn.execute(
                    "DELETE FROM function_policies WHERE function = ? AND qualifier = ?", (function, qualifier)
                )
        self._bump()
        return revision

    def delete_function_policies(self, function: str, keep: Sequence[str] | None = None) -> int:
        """Forget the policies of a deleted function (or of its qualifiers not in ``keep``)."""
        with self._tx() as conn:
            if keep is None:
                n = conn.execute("DELETE FROM function_policies WHERE function = ?", (function,)).rowcount
            else:
                marks = ",".join("?" * len(keep)) or "''"
                n = conn.execute(
                    f"DELETE FROM function_policies WHERE function = ? AND qualifier NOT IN ({marks})",
                    (function, *keep),
                ).rowcount
        if n:
            self._bump()
        return int(n)

    def qualifiers_with_policies(self, function: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT qualifier FROM function_policies WHERE function = ?", (function,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def functions_with_policies(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT function FROM function_policies").fetchall()
        return [str(r[0]) for r in rows]
