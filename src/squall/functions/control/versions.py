"""Published versions and aliases (with weighted routing between two versions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squall.core.errors import InvalidParameterValue
from squall.functions.control.base import ServiceBase
from squall.functions.control.names import LATEST, is_alias_name, is_version, validation_error
from squall.functions.control.shapes import check_max_items, render_config
from squall.functions.control.validation import check_description, get_str
from squall.functions.store.functions import RevisionMismatch
from squall.functions.store.records import StoredFunction
from squall.scheduler import validate_routing

__all__ = ["VersionsMixin"]

#: fields that do not make two versions different
_VOLATILE = {"Version", "FunctionArn", "RevisionId", "LastModified", "SnapStart"}


def _same_version(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in _VOLATILE} == {k: v for k, v in b.items() if k not in _VOLATILE}


def _check_alias_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise validation_error("Value null at 'name' failed to satisfy constraint: Member must not be null")
    if not is_alias_name(value):
        raise validation_error(
            f"Value '{value}' at 'name' failed to satisfy constraint: Member must satisfy regular expression "
            "pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        )
    return value


def _check_version(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise validation_error("Value null at 'functionVersion' failed to satisfy constraint: Member must not be null")
    if value != LATEST and not is_version(value):
        raise validation_error(
            f"Value '{value}' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular "
            r"expression pattern: (\$LATEST|[0-9]+)"
        )
    return value


def check_routing(value: Any, primary: str) -> dict[str, Any] | None:
    """RoutingConfig -> what the store keeps (None: not given; {}: remove routing).  At most one extra version,
    weight in [0, 1), never the primary, never with a ``$LATEST`` primary."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidParameterValue("RoutingConfig must be an object")
    weights = value.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, Mapping):
        raise InvalidParameterValue("RoutingConfig.AdditionalVersionWeights must be a map of version to weight")
    if not weights:
        return {}
    if len(weights) > 1:
        raise InvalidParameterValue("Number of items in AdditionalVersionWeights cannot be greater than 1")
    clean: dict[str, float] = {}
    for version, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= weight < 1.0:
            raise validation_error(
                f"Value '{{{version}={weight}}}' at 'routingConfig.additionalVersionWeights' failed to satisfy "
                "constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
                "Member must have value greater than or equal to 0.0]"
            )
        if not is_version(str(version)):
            raise validation_error(
                f"Value '{{{version}={weight}}}' at 'routingConfig.additionalVersionWeights' failed to satisfy "
                "constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, "
                "Member must have length greater than or equal to 1, Member must satisfy regular expression "
                "pattern: [0-9]+]"
            )
        if primary == LATEST:
            raise InvalidParameterValue("$LATEST is not supported for an alias pointing to more than 1 version")
        if str(version) == primary:
            raise InvalidParameterValue(
                f"Invalid function version {primary}. Function version {primary} is already included in routing "
                "configuration."
            )
        clean[str(version)] = float(weight)
    validate_routing(clean, primary)
    return {"AdditionalVersionWeights": clean}


class VersionsMixin(ServiceBase):
    # -- versions --

    async def publish(
        self,
        name: str,
        *,
        description: str | None = None,
        code_sha256: str | None = None,
        revision_id: str | None = None,
    ) -> StoredFunction:
        """Publish ``$LATEST``; returns the last version instead when nothing changed since it was published."""
        for _ in range(8):
            latest = await self.io(self.store.get_function, name)
            if revision_id is not None and revision_id != latest.revision_id:
                raise RevisionMismatch()
            current_sha = latest.config.get("CodeSha256", "")
            if code_sha256 is not None and code_sha256 != current_sha:
                raise InvalidParameterValue(
                    f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST ({current_sha}). "
                    "Please try again from start."
                )
            snapshot = dict(latest.config)
            if description is not None:
                snapshot["Description"] = description
            apply_on = (snapshot.get("SnapStart") or {}).get("ApplyOn", "None")
            snapshot["SnapStart"] = {
                "ApplyOn": apply_on,
                "OptimizationStatus": "On" if apply_on == "PublishedVersions" else "Off",
            }
            versions = await self.all_versions(name)
            last = versions[-1] if len(versions) > 1 else None
            if last is not None and _same_version(last.config, snapshot) and last.code_path == latest.code_path:
                return last
            extras = {
                **latest.squall,
                "snapshot": bool(latest.squall.get("snapshot")) or apply_on == "PublishedVersions",
            }
            try:
                stored = await self.io(
                    self.store.publish_version,
                    name,
                    snapshot,
                    squall=extras,
                    expected_revision=revision_id or latest.revision_id,
                )
            except RevisionMismatch:
                if revision_id is not None:
                    raise
                continue
            await self.notify(name, stored.version)
            return stored
        raise RevisionMismatch()

    async def publish_version(self, function_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """PublishVersion, with the CodeSha256 and RevisionId preconditions."""
        name = self.latest_ref(function_name)
        description = get_str(request, "Description", "description")
        stored = await self.publish(
            name,
            description=check_description(description) if description is not None else None,
            code_sha256=get_str(request, "CodeSha256", "codeSha256") or None,
            revision_id=get_str(request, "RevisionId", "revisionId") or None,
        )
        return render_config(stored, self.region, self.account_id)

    async def list_versions_by_function(
        self, function_name: str, *, marker: str | None = None, max_items: int | None = None
    ) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        page, next_marker = await self.io(self.store.list_versions, name, marker, check_max_items(max_items))
        items = [
            render_config(
                f, self.region, self.account_id, shown_qualifier=LATEST if f.version == LATEST else None, listing=True
            )
            for f in page
        ]
        out: dict[str, Any] = {"Versions": items}
        if next_marker is not None:
            out["NextMarker"] = next_marker
        return out

    # -- aliases --

    async def create_alias(self, function_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        alias = _check_alias_name(request.get("Name"))
        version = _check_version(request.get("FunctionVersion"))
        description = check_description(get_str(request, "Description", "description") or "")
        routing = check_routing(request.get("RoutingConfig"), version)
        config = await self.io(
            self.store.create_alias, name, alias, version, description=description, routing_config=routing or None
        )
        await self.notify(name, alias)
        return config

    async def get_alias(self, function_name: str, alias: str) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        return await self.io(self.store.get_alias, name, _check_alias_name(alias))

    async def update_alias(self, function_name: str, alias: str, request: Mapping[str, Any]) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        alias = _check_alias_name(alias)
        current = await self.io(self.store.get_alias, name, alias)
        version = request.get("FunctionVersion")
        primary = _check_version(version) if version is not None else str(current["FunctionVersion"])
        routing = check_routing(request.get("RoutingConfig"), primary)
        if routing is None and current.get("RoutingConfig"):
            check_routing(current["RoutingConfig"], primary)  # the kept weights must still fit the new primary
        description = get_str(request, "Description", "description")
        config = await self.io(
            self.store.update_alias,
            name,
            alias,
            function_version=primary if version is not None else None,
            description=check_description(description) if description is not None else None,
            routing_config=routing,
            expected_revision=get_str(request, "RevisionId", "revisionId") or None,
        )
        await self.notify(name, alias)
        return config

    async def delete_alias(self, function_name: str, alias: str) -> None:
        """DeleteAlias; deleting an alias that does not exist succeeds (the function must exist)."""
        name = self.latest_ref(function_name)
        alias = _check_alias_name(alias)
        if await self.io(self.store.delete_alias, name, alias):
            await self.notify(name, alias)
        else:
            await self.io(self.store.get_function, name)

    async def list_aliases(
        self,
        function_name: str,
        *,
        function_version: str | None = None,
        marker: str | None = None,
        max_items: int | None = None,
    ) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        if function_version is not None:
            _check_version(function_version)
        page, next_marker = await self.io(
            self.store.list_aliases,
            name,
            function_version=function_version,
            marker=marker,
            max_items=check_max_items(max_items),
        )
        out: dict[str, Any] = {"Aliases": page}
        if next_marker is not None:
            out["NextMarker"] = next_marker
        return out
