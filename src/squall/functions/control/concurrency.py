"""Reserved concurrency, provisioned concurrency configs and the account settings.

Account-wide checks and their writes run under one lock, so two concurrent requests cannot both take the last of
the unreserved pool.  Provisioned concurrency is stored as Lambda reports it right after the request
(``Status: IN_PROGRESS``, nothing allocated); the platform moves it to ``READY`` through
``store.update_provisioned_concurrency`` once the instances are warm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squall.core.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from squall.functions.control.base import ServiceBase
from squall.functions.control.errors import ProvisionedConcurrencyConfigNotFound
from squall.functions.control.names import LATEST, FunctionRef, is_version, validation_error
from squall.functions.control.shapes import check_max_items
from squall.functions.control.validation import get_int
from squall.functions.store.code import MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES
from squall.functions.store.records import QualifiedConfig
from squall.scheduler import SchedulerState, validate_reserved_concurrency

__all__ = ["ConcurrencyMixin"]

#: Lambda's default storage quota for all functions' code, per region
TOTAL_CODE_SIZE_LIMIT = 80_530_636_800
_NOT_PUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
_ALIAS_OR_VERSION = "The function resource provided must be an alias or a published version."


class ConcurrencyMixin(ServiceBase):
    # -- reserved concurrency --

    async def put_function_concurrency(self, function_name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """PutFunctionConcurrency: keeps the account's unreserved pool at or above its minimum (100)."""
        name = self.latest_ref(function_name)
        reserved = get_int(request, "ReservedConcurrentExecutions", "reservedConcurrentExecutions")
        if reserved is None:
            raise validation_error(
                "Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null"
            )
        async with self._account_lock:
            await self.io(self.store.get_function, name)
            others = await self.io(self.store.total_reserved_concurrency, name)
            # the pure check wants a table of reservations; the other functions' sum stands in for them
            state = SchedulerState(
                reserved={"": others} if others else {},
                account_limit=self.account_limit,
                unreserved_min=self.unreserved_min,
            )
            validate_reserved_concurrency(state, name, reserved)
            provisioned = sum(
                c.config.get("RequestedProvisionedConcurrentExecutions", 0) for c in await self._pcs(name)
            )
            if reserved < provisioned:
                raise InvalidParameterValue(
                    f"ReservedConcurrentExecutions  {reserved} should not be lower than function's total provisioned "
                    f"concurrency [{provisioned}]."
                )
            await self.io(self.store.put_function_concurrency, name, reserved)
        await self.notify(name, "$LATEST")
        return {"ReservedConcurrentExecutions": reserved}

    async def get_function_concurrency(self, function_name: str) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        reserved = await self.io(self.store.get_function_concurrency, name)
        return {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    async def delete_function_concurrency(self, function_name: str) -> None:
        name = self.latest_ref(function_name)
        async with self._account_lock:
            await self.io(self.store.delete_function_concurrency, name)
        await self.notify(name, "$LATEST")

    # -- provisioned concurrency --

    async def _pcs(self, name: str | None) -> list[QualifiedConfig]:
        items: list[QualifiedConfig] = []
        marker: str | None = None
        while True:
            page, marker = await self.io(self.store.list_provisioned_concurrency, name, marker, 1000)
            items += page
            if marker is None:
                return items

    async def _pc_target(self, function_name: str, qualifier: str | None, latest_message: str) -> FunctionRef:
        """Resolve and check the (function, alias or version) of a provisioned concurrency request."""
        ref = self.ref(function_name, qualifier)
        if ref.qualifier is None:
            raise validation_error("Value null at 'qualifier' failed to satisfy constraint: Member must not be null")
        if ref.qualifier == LATEST:
            raise InvalidParameterValue(latest_message)
        if is_version(ref.qualifier):
            await self.io(self.store.get_version, ref.name, ref.qualifier)
            return FunctionRef(ref.name, str(int(ref.qualifier)))
        await self.io(self.store.get_alias, ref.name, ref.qualifier)
        return ref

    async def put_provisioned_concurrency_config(
        self, function_name: str, qualifier: str | None, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PutProvisionedConcurrencyConfig on an alias or a published version (202: IN_PROGRESS)."""
        ref = await self._pc_target(function_name, qualifier, _NOT_PUBLISHED)
        name, target = ref.name, str(ref.qualifier)
        wanted = get_int(request, "ProvisionedConcurrentExecutions", "provisionedConcurrentExecutions")
        if wanted is None or wanted < 1:
            raise validation_error(
                f"Value '{wanted}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must "
                "have value greater than or equal to 1"
            )
        async with self._account_lock:
            configs = await self._pcs(name)
            await self._check_overlap(name, target, configs)
            own = sum(
                c.config.get("RequestedProvisionedConcurrentExecutions", 0) for c in configs if c.qualifier != target
            )
            reserved = await self.io(self.store.get_function_concurrency, name)
            if reserved is not None and own + wanted > reserved:
                raise InvalidParameterValue(
                    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution "
                    "for function"
                )
            everyone = sum(
                c.config.get("RequestedProvisionedConcurrentExecutions", 0)
                for c in await self._pcs(None)
                if (c.function, c.qualifier) != (name, target)
            )
            available = self.account_limit - self.unreserved_min - everyone
            if reserved is None and wanted > available:
                raise InvalidParameterValue(
                    f"Specified ConcurrentExecutions for function is greater than account's unreserved concurrency "
                    f"[{max(available, 0)}]."
                )
            config = {
                "RequestedProvisionedConcurrentExecutions": wanted,
                "AvailableProvisionedConcurrentExecutions": 0,
                "AllocatedProvisionedConcurrentExecutions": 0,
                "Status": "IN_PROGRESS",
                "LastModified": self.now(),
            }
            stored = await self.io(self.store.put_provisioned_concurrency, name, target, config)
        await self.notify(name, target)
        return stored

    async def _check_overlap(self, name: str, target: str, configs: list[QualifiedConfig]) -> None:
        """An alias and the version it points to cannot both have provisioned concurrency."""
        others = {c.qualifier for c in configs if c.qualifier != target}
        if not others:
            return
        if is_version(target):
            for alias in await self.all_aliases(name):
                if alias["Name"] in others and str(alias["FunctionVersion"]) == target:
                    raise ResourceConflict("Version is pointed by a Provisioned Concurrency alias")
            return
        alias = await self.io(self.store.get_alias, name, target)
        if str(alias["FunctionVersion"]) == LATEST:
            raise InvalidParameterValue(_NOT_PUBLISHED)
        if str(alias["FunctionVersion"]) in others:
            raise ResourceConflict(
                "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
            )

    async def get_provisioned_concurrency_config(self, function_name: str, qualifier: str | None) -> dict[str, Any]:
        ref = await self._pc_target(function_name, qualifier, _ALIAS_OR_VERSION)
        config = await self.io(self.store.get_provisioned_concurrency, ref.name, str(ref.qualifier))
        if config is None:
            raise ProvisionedConcurrencyConfigNotFound("No Provisioned Concurrency Config found for this function")
        return config

    async def delete_provisioned_concurrency_config(self, function_name: str, qualifier: str | None) -> None:
        """Idempotent, as on Lambda."""
        ref = await self._pc_target(function_name, qualifier, _ALIAS_OR_VERSION)
        async with self._account_lock:
            deleted = await self.io(self.store.delete_provisioned_concurrency, ref.name, str(ref.qualifier))
        if deleted:
            await self.notify(ref.name, str(ref.qualifier))

    async def list_provisioned_concurrency_configs(
        self, function_name: str, *, marker: str | None = None, max_items: int | None = None
    ) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        page, next_marker = await self.io(
            self.store.list_provisioned_concurrency, name, marker, check_max_items(max_items, 50)
        )
        out: dict[str, Any] = {
            "ProvisionedConcurrencyConfigs": [{"FunctionArn": self.arn(name, c.qualifier), **c.config} for c in page]
        }
        if next_marker is not None:
            out["NextMarker"] = next_marker
        return out

    # -- account --

    async def get_account_settings(self) -> dict[str, Any]:
        """GetAccountSettings: Lambda's default limits and this Squall's usage."""
        functions: list[str] = []
        marker: str | None = None
        while True:
            page, marker = await self.io(self.store.list_functions, marker, 1000)
            functions += [f.name for f in page]
            if marker is None:
                break
        total_code = 0
        for name in functions:
            try:
                total_code += sum(int(v.config.get("CodeSize", 0)) for v in await self.all_versions(name))
            except ResourceNotFound:
                continue  # deleted meanwhile
        reserved = await self.io(self.store.total_reserved_concurrency)
        return {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_SIZE_LIMIT,
                "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
                "CodeSizeZipped": MAX_ZIP_BYTES,
                "ConcurrentExecutions": self.account_limit,
                "UnreservedConcurrentExecutions": self.account_limit - reserved,
            },
            "AccountUsage": {"TotalCodeSize": total_code, "FunctionCount": len(functions)},
        }
