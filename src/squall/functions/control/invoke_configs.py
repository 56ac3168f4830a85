"""Event invoke configs: retries, maximum event age and destinations of asynchronous invocations.

Destinations may be Lambda functions (``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``, which must
exist) or SQS queues (``arn:aws:sqs:REGION:ACCOUNT:NAME``) of this Squall's region and account.  The async
worker reads the configs from the store when it handles an event, so changing them needs no callback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from squall.core.errors import InvalidParameterValue, ResourceNotFound
from squall.functions.control.base import ServiceBase
from squall.functions.control.names import LATEST, FunctionRef, is_version, validation_error
from squall.functions.control.shapes import check_max_items
from squall.functions.control.validation import get_int
from squall.scheduler import validate_event_invoke_config

__all__ = ["InvokeConfigsMixin"]

_DESTINATION = r"^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)"
_DESTINATION_RE = re.compile(_DESTINATION)
_LAMBDA_RE = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[^:]+):(?P<account>\d{12}):function:(?P<name>[a-zA-Z0-9-_]+)"
    r"(:(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$"
)
_SQS_RE = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:(?P<region>[^:]+):(?P<account>\d{12}):[a-zA-Z0-9_-]{1,80}(\.fifo)?$")


class InvokeConfigsMixin(ServiceBase):
    async def _eic_target(self, function_name: str, qualifier: str | None) -> FunctionRef:
        """(name, qualifier) of an event invoke config whose function and qualifier must exist."""
        ref = self.ref(function_name, qualifier)
        target = ref.qualifier or LATEST
        try:
            if target == LATEST:
                await self.io(self.store.get_function, ref.name)
            elif is_version(target):
                await self.io(self.store.get_version, ref.name, target)
                target = str(int(target))
            else:
                await self.io(self.store.get_alias, ref.name, target)
        except ResourceNotFound:
            raise ResourceNotFound("The function doesn't exist.")
        return FunctionRef(ref.name, target)

    def _missing(self, ref: FunctionRef) -> ResourceNotFound:
        return ResourceNotFound(f"The function {self.arn(ref.name, ref.qualifier)} doesn't have an EventInvokeConfig")

    async def _check_destination(self, self_name: str, arn: str, field: str) -> bool:
        """True for a destination Squall can deliver to; raise for the ones Lambda refuses outright."""
        if not _DESTINATION_RE.match(arn):
            raise validation_error(
                f"Value '{arn}' at 'destinationConfig.{field}.destination' failed to satisfy constraint: Member "
                f"must satisfy regular expression pattern: {_DESTINATION}"
            )
        if match := _LAMBDA_RE.match(arn):
            if (match["region"], match["account"]) != (self.region, self.account_id):
                raise InvalidParameterValue(f"The destination ARN {arn} is invalid.")
            if match["name"] == self_name:
                raise InvalidParameterValue("You can't specify the function as a destination for itself.")
            try:
                await self.io(self.store.get_function, match["name"], match["qualifier"])
            except ResourceNotFound:
                raise InvalidParameterValue(f"The destination ARN {arn} is invalid.")
            return True
        if match := _SQS_RE.match(arn):
            if (match["region"], match["account"]) != (self.region, self.account_id):
                raise InvalidParameterValue(f"The destination ARN {arn} is invalid.")
            return True
        return False

    async def _destinations(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise InvalidParameterValue("DestinationConfig must be an object")
        out: dict[str, Any] = {}
        ok = True
        for key, field in (("OnSuccess", "onSuccess"), ("OnFailure", "onFailure")):
            part = value.get(key) or {}
            destination = part.get("Destination") if isinstance(part, Mapping) else None
            if destination:
                if not isinstance(destination, str):
                    raise InvalidParameterValue(f"DestinationConfig.{key}.Destination must be a string")
                ok = await self._check_destination(name, destination, field) and ok
                out[key] = {"Destination": destination}
            else:
                out[key] = {}
        if not ok:
            success = out["OnSuccess"].get("Destination")
            failure = out["OnFailure"].get("Destination")
            on_success = f"OnSuccess(destination={success})" if success else "null"
            on_failure = f"OnFailure(destination={failure})" if failure else "null"
            raise InvalidParameterValue(
                f"The provided destination config DestinationConfig(onSuccess={on_success}, onFailure={on_failure}) "
                "is invalid."
            )
        return out

    async def _build(self, ref: FunctionRef, request: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
        retries = get_int(request, "MaximumRetryAttempts", "maximumRetryAttempts")
        age = get_int(request, "MaximumEventAgeInSeconds", "maximumEventAgeInSeconds")
        destinations = request.get("DestinationConfig")
        if retries is None and age is None and destinations is None:
            raise InvalidParameterValue("You must specify at least one of error handling or destination setting.")
        config = dict(base)
        if retries is not None:
            config["MaximumRetryAttempts"] = retries
        if age is not None:
            config["MaximumEventAgeInSeconds"] = age
        validate_event_invoke_config(config.get("MaximumRetryAttempts", 2), config.get("MaximumEventAgeInSeconds", 60))
        if destinations is not None:
            config["DestinationConfig"] = await self._destinations(ref.name, destinations)
        config.setdefault("DestinationConfig", {"OnSuccess": {}, "OnFailure": {}})
        config["FunctionArn"] = self.arn(ref.name, ref.qualifier)
        config["LastModified"] = self.clock.now()
        return config

    async def put_function_event_invoke_config(
        self, function_name: str, qualifier: str | None, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PutFunctionEventInvokeConfig: replaces the whole config of (function, qualifier)."""
        ref = await self._eic_target(function_name, qualifier)
        config = await self._build(ref, request, {})
        return await self.io(self.store.put_event_invoke_config, ref.name, str(ref.qualifier), config)

    async def update_function_event_invoke_config(
        self, function_name: str, qualifier: str | None, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """UpdateFunctionEventInvokeConfig: changes the given fields of an existing config."""
        ref = await self._eic_target(function_name, qualifier)
        current = await self.io(self.store.get_event_invoke_config, ref.name, str(ref.qualifier))
        if current is None:
            raise self._missing(ref)
        config = await self._build(ref, request, current)
        return await self.io(self.store.put_event_invoke_config, ref.name, str(ref.qualifier), config)

    async def get_function_event_invoke_config(self, function_name: str, qualifier: str | None) -> dict[str, Any]:
        ref = self.ref(function_name, qualifier)
        ref = FunctionRef(ref.name, ref.qualifier or LATEST)
        try:
            config = await self.io(self.store.get_event_invoke_config, ref.name, str(ref.qualifier))
        except ResourceNotFound:
            config = None
        if config is None:
            raise self._missing(ref)
        return config

    async def delete_function_event_invoke_config(self, function_name: str, qualifier: str | None) -> None:
        ref = self.ref(function_name, qualifier)
        ref = FunctionRef(ref.name, ref.qualifier or LATEST)
        try:
            deleted = await self.io(self.store.delete_event_invoke_config, ref.name, str(ref.qualifier))
        except ResourceNotFound:
            deleted = False
        if not deleted:
            raise self._missing(ref)

    async def list_function_event_invoke_configs(
        self, function_name: str, *, marker: str | None = None, max_items: int | None = None
    ) -> dict[str, Any]:
        name = self.latest_ref(function_name)
        try:
            page, next_marker = await self.io(
                self.store.list_event_invoke_configs, name, marker, check_max_items(max_items, 50)
            )
        except ResourceNotFound:
            raise ResourceNotFound("The function doesn't exist.")
        out: dict[str, Any] = {"FunctionEventInvokeConfigs": [c.config for c in page]}
        if next_marker is not None:
            out["NextMarker"] = next_marker
        return out
