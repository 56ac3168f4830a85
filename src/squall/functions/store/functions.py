"""Functions, published versions and aliases, stored with Lambda's own field names."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any

from squall.core.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from squall.functions.store.records import StoredFunction
from squall.functions.store.sqlite import SqliteBase, dumps, is_version_number, loads, paginate
from squall.store.disk import DiskFull
from squall.store.env_crypto import EnvKeyError

__all__ = ["FunctionsMixin", "RevisionMismatch"]

LATEST = "$LATEST"
#: where a sealed Environment.Variables is kept in a stored config
SEALED_FIELD = "SquallSealedVariables"

log = logging.getLogger("squall.store")


class RevisionMismatch(ResourceConflict):
    """A compare-and-set on RevisionId failed.  A ResourceConflict; on the wire Lambda calls it
    PreconditionFailedException (HTTP 412)."""

    code = "PreconditionFailedException"
    status = 412

    def __init__(self) -> None:
        super().__init__(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
        )


def _new_revision() -> str:
    return str(uuid.uuid4())


class FunctionsMixin(SqliteBase):
    # -- environment variables at rest (store/env_crypto.py) --

    def _seal(self, name: str, config: dict[str, Any]) -> str:
        """``config`` as stored: Environment.Variables sealed when the store has a cipher."""
        env = config.get("Environment")
        if self._env_cipher is not None and isinstance(env, dict) and isinstance(env.get("Variables"), dict):
            sealed = {k: v for k, v in env.items() if k != "Variables"}
            sealed[SEALED_FIELD] = self._env_cipher.seal(name, env["Variables"])
            config = {**config, "Environment": sealed}
        return dumps(config)

    def _unseal(self, name: str, text: str) -> dict[str, Any]:
        config: dict[str, Any] = loads(text)
        env = config.get("Environment")
        if isinstance(env, dict) and SEALED_FIELD in env:
            if self._env_cipher is None:
                raise EnvKeyError(
                    f"The environment variables of function {name} are encrypted and this store has no key."
                )
            env = dict(env)
            env["Variables"] = self._env_cipher.open_sealed(name, str(env.pop(SEALED_FIELD)))
            config["Environment"] = env
        return config

    def _after_open(self) -> None:
        super()._after_open()
        if self._env_cipher is not None:
            try:
                self.seal_plaintext_environments()
            except DiskFull as e:  # the server still starts on a full disk; the rows are sealed at a later start
                log.warning("environment variables stored in the clear stay so until there is room: %s", e)

    def seal_plaintext_environments(self) -> int:
        """Seal every Environment.Variables still stored in the clear (rows from before encryption at rest), then
        rewrite the database file so no page or WAL frame keeps the old text.  Returns the rows sealed."""
        sealed = 0
        with self._tx() as conn:
            for table, key in (("functions", "name"), ("versions", "function")):
                extra = ", version" if table == "versions" else ""
                for row in conn.execute(f"SELECT {key}, config{extra} FROM {table}").fetchall():
                    config = loads(row[1])
                    env = config.get("Environment")
                    if not (isinstance(env, dict) and isinstance(env.get("Variables"), dict)):
                        continue
                    where = f"{key} = ?" + (" AND version = ?" if extra else "")
                    params = (row[0], row[2]) if extra else (row[0],)
                    conn.execute(f"UPDATE {table} SET config = ? WHERE {where}", (self._seal(row[0], config), *params))
                    sealed += 1
        if sealed:
            with self._lock:
                try:
                    self._conn.execute("VACUUM")
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.OperationalError as e:  # e.g. a full disk: sealed anyway, the old pages stay
                    log.warning("sealed %d environments but could not rewrite %s: %s", sealed, self.path, e)
        return sealed

    # -- functions --

    def create_function(
        self, name: str, config: dict[str, Any], code_path: str, squall: dict[str, Any] | None = None
    ) -> StoredFunction:
        """Store ``$LATEST`` of a new function.  Sets Version, a fresh RevisionId and (if absent) FunctionName
        and FunctionArn in ``config``."""
        config = {**config, "Version": LATEST, "RevisionId": _new_revision()}
        config.setdefault("FunctionName", name)
        config.setdefault("FunctionArn", self.arn(name))
        now = self._clock.now()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM functions WHERE name = ?", (name,)).fetchone():
                raise ResourceConflict(f"Function already exist: {name}")
            conn.execute(
                "INSERT INTO functions (name, config, code_path, squall, revision_id, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, self._seal(name, config), code_path, dumps(squall or {}), config["RevisionId"], now, now),
            )
        return StoredFunction(name, LATEST, config, code_path, dict(squall or {}))

    def get_function(self, name: str, qualifier: str | None = None) -> StoredFunction:
        """``$LATEST`` (qualifier None or "$LATEST"), a published version ("3"), or the primary version an
        alias points to.  Raises ResourceNotFound."""
        with self._read() as conn:
            return self._get_function(conn, name, qualifier)

    def _get_function(self, conn: sqlite3.Connection, name: str, qualifier: str | None) -> StoredFunction:
        if qualifier is None or qualifier == LATEST:
            row = conn.execute("SELECT config, code_path, squall FROM functions WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise self._not_found(name)
            return StoredFunction(name, LATEST, self._unseal(name, row[0]), row[1], loads(row[2]))
        if is_version_number(qualifier):
            row = conn.execute(
                "SELECT config, code_path, squall FROM versions WHERE function = ? AND version = ?",
                (name, int(qualifier)),
            ).fetchone()
            if row is None:
                raise self._not_found(name, qualifier)
            return StoredFunction(name, str(int(qualifier)), self._unseal(name, row[0]), row[1], loads(row[2]))
        alias = self._get_alias(conn, name, qualifier, not_found=self._not_found(name, qualifier))
        target = str(alias["FunctionVersion"])
        if target != LATEST and not is_version_number(target):
            raise self._not_found(name, qualifier)
        return self._get_function(conn, name, target)

    def list_functions(self, marker: str | None = None, max_items: int = 50) -> tuple[list[StoredFunction], str | None]:
        """``$LATEST`` of every function, ordered by name; the marker is the last name returned."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT name, config, code_path, squall FROM functions WHERE name > ? ORDER BY name LIMIT ?",
                (marker or "", max_items + 1),
            ).fetchall()
        items = [StoredFunction(r[0], LATEST, self._unseal(r[0], r[1]), r[2], loads(r[3])) for r in rows]
        return paginate(items, max_items, lambda f: f.name)

    def update_function(
        self,
        name: str,
        config: dict[str, Any],
        *,
        code_path: str | None = None,
        squall: dict[str, Any] | None = None,
        expected_revision: str | None = None,
    ) -> StoredFunction:
        """Replace ``$LATEST``'s config (the caller merges; Version and a new RevisionId are set here), and
        optionally its code path and extras.  With ``expected_revision``, a compare-and-set: RevisionMismatch
        (a ResourceConflict) unless it is the current RevisionId."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT revision_id, code_path, squall FROM functions WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise self._not_found(name)
            if expected_revision is not None and expected_revision != row[0]:
                raise RevisionMismatch()
            config = {**config, "Version": LATEST, "RevisionId": _new_revision()}
            new_code = row[1] if code_path is None else code_path
            new_squall = loads(row[2]) if squall is None else dict(squall)
            conn.execute(
                "UPDATE functions SET config = ?, code_path = ?, squall = ?, revision_id = ?, updated_at = ? "
                "WHERE name = ?",
                (self._seal(name, config), new_code, dumps(new_squall), config["RevisionId"], self._clock.now(), name),
            )
        return StoredFunction(name, LATEST, config, new_code, new_squall)

    def delete_function(self, name: str) -> None:
        """Delete a function with its versions, aliases, concurrency settings, per-qualifier configs and the
        events still queued for it.  Invocation records and logs are kept.  Raises ResourceNotFound."""
        with self._tx(write=False) as conn:
            self._require_function(conn, name)
            for table in (
                "versions",
                "aliases",
                "provisioned_concurrency",
                "event_invoke_configs",
                "event_queue",
            ):
                conn.execute(f"DELETE FROM {table} WHERE function = ?", (name,))
            conn.execute("DELETE FROM function_concurrency WHERE function = ?", (name,))
            conn.execute("DELETE FROM functions WHERE name = ?", (name,))

    # -- versions --

    def publish_version(
        self,
        name: str,
        config_snapshot: dict[str, Any] | None = None,
        *,
        code_path: str | None = None,
        squall: dict[str, Any] | None = None,
        expected_revision: str | None = None,
    ) -> StoredFunction:
        """Publish the next version number (1, 2, 3, ...; a number is never reused, even after its version
        is deleted, as long as the function exists).  The snapshot, code path and extras default to
        ``$LATEST``'s; Version, FunctionArn (qualified) and a new RevisionId are set here.
        ``expected_revision`` is checked against ``$LATEST``'s RevisionId."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT config, code_path, squall, revision_id, last_version FROM functions WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                raise self._not_found(name)
            if expected_revision is not None and expected_revision != row[3]:
                raise RevisionMismatch()
            number = int(row[4]) + 1
            config = dict(self._unseal(name, row[0]) if config_snapshot is None else config_snapshot)
            config.update(Version=str(number), FunctionArn=self.arn(name, str(number)), RevisionId=_new_revision())
            path = row[1] if code_path is None else code_path
            extras = loads(row[2]) if squall is None else dict(squall)
            conn.execute(
                "INSERT INTO versions (function, version, config, code_path, squall, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, number, self._seal(name, config), path, dumps(extras), self._clock.now()),
            )
            conn.execute("UPDATE functions SET last_version = ? WHERE name = ?", (number, name))
        return StoredFunction(name, str(number), config, path, extras)

    def get_version(self, name: str, version: str) -> StoredFunction:
        """A published version or "$LATEST".  Raises ResourceNotFound."""
        if version != LATEST and not is_version_number(version):
            raise self._not_found(name, version)
        return self.get_function(name, version)

    def list_versions(
        self, name: str, marker: str | None = None, max_items: int = 50
    ) -> tuple[list[StoredFunction], str | None]:
        """``$LATEST`` then the published versions in order, like ListVersionsByFunction."""
        if marker is None:
            after = -1
        elif marker == LATEST:
            after = 0
        elif is_version_number(marker):
            after = int(marker)
        else:
            raise InvalidParameterValue(f"Invalid marker: {marker}")
        with self._read() as conn:
            items: list[StoredFunction] = []
            latest = self._get_function(conn, name, None)
            if after < 0:
                items.append(latest)
            rows = conn.execute(
                "SELECT version, config, code_path, squall FROM versions WHERE function = ? AND version > ? "
                "ORDER BY version LIMIT ?",
                (name, after, max_items + 1),
            ).fetchall()
        items += [StoredFunction(name, str(r[0]), self._unseal(name, r[1]), r[2], loads(r[3])) for r in rows]
        return paginate(items, max_items, lambda f: f.version)

    def delete_version(self, name: str, version: str) -> None:
        """Delete one published version (and its per-qualifier configs).  ResourceConflict while an alias
        references it; InvalidParameterValue for "$LATEST"; ResourceNotFound if absent."""
        if version == LATEST:
            raise InvalidParameterValue("$LATEST version cannot be deleted without deleting the function.")
        if not is_version_number(version):
            raise self._not_found(name, version)
        with self._tx(write=False) as conn:
            self._require_qualifier(conn, name, version)
            users = [
                alias_name
                for alias_name, text in conn.execute(
                    "SELECT name, config FROM aliases WHERE function = ? ORDER BY name", (name,)
                )
                if version in _alias_versions(loads(text))
            ]
            if users:
                raise ResourceConflict(f"Unable to delete version because the following aliases reference it: {users}")
            conn.execute("DELETE FROM versions WHERE function = ? AND version = ?", (name, int(version)))
            self._delete_qualifier_configs(conn, name, str(int(version)))

    # -- aliases --

    def create_alias(
        self,
        name: str,
        alias: str,
        function_version: str,
        *,
        description: str = "",
        routing_config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create an alias; returns Lambda's AliasConfiguration (AliasArn, Name, FunctionVersion, Description,
        RoutingConfig when it has weights, RevisionId).  The versions it names must exist."""
        config: dict[str, Any] = {
            "AliasArn": self.arn(name, alias),
            "Name": alias,
            "FunctionVersion": function_version,
            "Description": description,
            "RevisionId": _new_revision(),
        }
        if routing_config and routing_config.get("AdditionalVersionWeights"):
            config["RoutingConfig"] = routing_config
        with self._tx() as conn:
            self._require_function(conn, name)
            if conn.execute("SELECT 1 FROM aliases WHERE function = ? AND name = ?", (name, alias)).fetchone():
                raise ResourceConflict(f"Alias already exists: {self.arn(name, alias)}")
            for version in _alias_versions(config):
                self._require_qualifier(conn, name, version)
            conn.execute(
                "INSERT INTO aliases (function, name, config, revision_id) VALUES (?, ?, ?, ?)",
                (name, alias, dumps(config), config["RevisionId"]),
            )
        return config

    def get_alias(self, name: str, alias: str) -> dict[str, Any]:
        with self._read() as conn:
            return self._get_alias(conn, name, alias)

    def _get_alias(
        self, conn: sqlite3.Connection, name: str, alias: str, not_found: ResourceNotFound | None = None
    ) -> dict[str, Any]:
        row = conn.execute("SELECT config FROM aliases WHERE function = ? AND name = ?", (name, alias)).fetchone()
        if row is None:
            if not_found is None:
                self._require_function(conn, name)
                not_found = ResourceNotFound(f"Cannot find alias arn: {self.arn(name, alias)}")
            raise not_found
        config: dict[str, Any] = loads(row[0])
        return config

    def update_alias(
        self,
        name: str,
        alias: str,
        *,
        function_version: str | None = None,
        description: str | None = None,
        routing_config: dict[str, Any] | None = None,
        expected_revision: str | None = None,
    ) -> dict[str, Any]:
        """Change the given fields (None: unchanged; a routing config without weights removes routing)."""
        with self._tx() as conn:
            config = self._get_alias(conn, name, alias)
            if expected_revision is not None and expected_revision != config["RevisionId"]:
                raise RevisionMismatch()
            if function_version is not None:
                config["FunctionVersion"] = function_version
            if description is not None:
                config["Description"] = description
            if routing_config is not None:
                if routing_config.get("AdditionalVersionWeights"):
                    config["RoutingConfig"] = routing_config
                else:
                    config.pop("RoutingConfig", None)
            for version in _alias_versions(config):
                self._require_qualifier(conn, name, version)
            config["RevisionId"] = _new_revision()
            conn.execute(
                "UPDATE aliases SET config = ?, revision_id = ? WHERE function = ? AND name = ?",
                (dumps(config), config["RevisionId"], name, alias),
            )
        return config

    def delete_alias(self, name: str, alias: str) -> bool:
        """Delete an alias and its per-qualifier configs; False if there was no such alias."""
        with self._tx(write=False) as conn:
            cur = conn.execute("DELETE FROM aliases WHERE function = ? AND name = ?", (name, alias))
            if cur.rowcount:
                self._delete_qualifier_configs(conn, name, alias)
            return cur.rowcount > 0

    def list_aliases(
        self,
        name: str,
        *,
        function_version: str | None = None,
        marker: str | None = None,
        max_items: int = 50,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Aliases ordered by name, optionally only those whose FunctionVersion is ``function_version``."""
        with self._read() as conn:
            self._require_function(conn, name)
            rows = conn.execute(
                "SELECT config FROM aliases WHERE function = ? AND name > ? ORDER BY name",
                (name, marker or ""),
            )
            items: list[dict[str, Any]] = []
            for (text,) in rows:
                config = loads(text)
                if function_version is None or config["FunctionVersion"] == function_version:
                    items.append(config)
                    if len(items) > max_items:
                        break
        return paginate(items, max_items, lambda a: a["Name"])

    def _delete_qualifier_configs(self, conn: sqlite3.Connection, name: str, qualifier: str) -> None:
        for table in ("provisioned_concurrency", "event_invoke_configs"):
            conn.execute(f"DELETE FROM {table} WHERE function = ? AND qualifier = ?", (name, qualifier))


def _alias_versions(config: dict[str, Any]) -> list[str]:
    """Every version an alias configuration points to: the primary and the weighted ones."""
    weights = (config.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return [str(config["FunctionVersion"]), *(str(v) for v in weights)]
