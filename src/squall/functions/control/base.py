"""What every part of the control plane shares: the stores, the account, the clock, name resolution, change
notification and compare-and-set updates of ``$LATEST``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from squall.core.arn import function_arn
from squall.core.clock import Clock
from squall.core.errors import InvalidParameterValue, InvalidRequestContent
from squall.core.timefmt import lambda_time
from squall.functions.control.errors import UnsupportedFeature
from squall.functions.control.names import LATEST, FunctionRef, parse_function_name, validation_error
from squall.functions.control.shapes import code_hex
from squall.functions.store.code import CodeStore
from squall.functions.store.functions import RevisionMismatch
from squall.functions.store.layers import LayerStore
from squall.functions.store.metadata import MetadataStore
from squall.functions.store.records import StoredFunction
from squall.scheduler import ACCOUNT_CONCURRENCY_DEFAULT, UNRESERVED_MIN_DEFAULT

__all__ = ["CAS_ATTEMPTS", "Mutation", "OnChange", "ServiceBase"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a callback told (function name, qualifier) after a change that makes running instances stale
OnChange = Callable[[str, str], Awaitable[None] | None]
#: from the current ``$LATEST``, the new (config, squall extras or None, code path or None)
Mutation = Callable[[StoredFunction], tuple[dict[str, Any], dict[str, Any] | None, str | None]]
#: how often a read-merge-write of $LATEST is retried when another writer got in between
CAS_ATTEMPTS = 8


class ServiceBase:
    """State and helpers shared by the operation mixins of :class:`squall.functions.control.FunctionService`."""

    def __init__(
        self,
        store: MetadataStore,
        code_store: CodeStore,
        *,
        region: str,
        account_id: str,
        clock: Clock,
        on_change: list[OnChange] | None = None,
        public_url: str = "",
        account_limit: int = ACCOUNT_CONCURRENCY_DEFAULT,
        unreserved_min: int = UNRESERVED_MIN_DEFAULT,
        layer_store: LayerStore | None = None,
    ) -> None:
        self.store = store
        self.code_store = code_store
        #: layer versions' metadata (their content is in ``code_store``); in memory unless the server passes one
        self.layer_store = layer_store if layer_store is not None else LayerStore(":memory:")
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.on_change: list[OnChange] = list(on_change or [])
        self.public_url = public_url.rstrip("/")
        self.account_limit = account_limit
        self.unreserved_min = unreserved_min
        #: serialises account-wide concurrency checks (reserved and provisioned) with their writes
        self._account_lock = asyncio.Lock()

    # -- names --

    def ref(self, function_name: Any, qualifier: str | None = None, *, create: bool = False) -> FunctionRef:
        return parse_function_name(
            function_name, qualifier, region=self.region, account_id=self.account_id, create=create
        )

    def latest_ref(self, function_name: Any) -> str:
        """The name, for operations on the function itself or its ``$LATEST`` (no version or alias)."""
        ref = self.ref(function_name)
        if ref.qualifier not in (None, LATEST):
            raise InvalidParameterValue(
                f"This operation applies to the function itself or its $LATEST version; remove the qualifier "
                f"':{ref.qualifier}' from '{function_name}'."
            )
        return ref.name

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.region, self.account_id, name, qualifier)

    def now(self) -> str:
        return lambda_time(self.clock.now())

    def code_url(self, stored: StoredFunction) -> str:
        return f"{self.public_url}/_squall/code/{code_hex(stored)}"

    # -- plumbing --

    @staticmethod
    async def io(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call (a durable write, a zip extraction) off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def notify(self, name: str, *qualifiers: str) -> None:
        """Tell every on_change callback; a failing callback is logged, never undoes the committed change."""
        for qualifier in dict.fromkeys(qualifiers):
            for callback in self.on_change:
                try:
                    result = callback(name, qualifier)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("on_change callback failed for %s:%s", name, qualifier)

    async def update_latest(self, name: str, mutate: Mutation, revision_id: str | None = None) -> StoredFunction:
        """Read ``$LATEST``, let ``mutate`` build its new state, write it back with a compare-and-set.

        With the caller's ``revision_id`` a mismatch is the caller's PreconditionFailed; without one, a writer
        that got in between only makes us read and merge again."""
        for _ in range(CAS_ATTEMPTS):
            current = await self.io(self.store.get_function, name)
            if revision_id is not None and revision_id != current.revision_id:
                raise RevisionMismatch()
            config, squall, code_path = mutate(current)
            try:
                return await self.io(
                    self.store.update_function,
                    name,
                    config,
                    code_path=code_path,
                    squall=squall,
                    expected_revision=revision_id or current.revision_id,
                )
            except RevisionMismatch:
                if revision_id is not None:
                    raise
        raise RevisionMismatch()

    async def all_versions(self, name: str) -> list[StoredFunction]:
        """``$LATEST`` and every published version, in order."""
        items: list[StoredFunction] = []
        marker: str | None = None
        while True:
            page, marker = await self.io(self.store.list_versions, name, marker, 1000)
            items += page
            if marker is None:
                return items

    async def all_aliases(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            page, marker = await self.io(self.store.list_aliases, name, marker=marker, max_items=1000)
            items += page
            if marker is None:
                return items

    async def publish(
        self,
        name: str,
        *,
        description: str | None = None,
        code_sha256: str | None = None,
        revision_id: str | None = None,
    ) -> StoredFunction:
        """Publish ``$LATEST`` as a new version (implemented by ``VersionsMixin``)."""
        raise NotImplementedError

    # -- code --

    @staticmethod
    def zip_bytes(code: Mapping[str, Any] | None, field: str = "code") -> bytes:
        """The package from a FunctionCode (CreateFunction's Code, or UpdateFunctionCode's body)."""
        if code is None:
            raise validation_error(f"Value null at '{field}' failed to satisfy constraint: Member must not be null")
        if not isinstance(code, Mapping):
            raise InvalidParameterValue(f"'{field}' must be an object with a ZipFile")
        if code.get("ImageUri"):
            raise UnsupportedFeature(
                "PackageType Image is not supported by Squall: package the function as a .zip (Code.ZipFile)."
            )
        if code.get("S3Bucket") or code.get("S3Key") or code.get("S3ObjectVersion"):
            raise UnsupportedFeature("S3 code locations are not supported yet: upload the ZipFile")
        data = code.get("ZipFile")
        if data is None or data == "" or data == b"":
            raise InvalidParameterValue(
                "ZipFile is required: send the function's .zip package in the request (S3 and image code "
                "locations are not supported)."
            )
        if isinstance(data, bytes | bytearray):
            return bytes(data)
        if not isinstance(data, str):
            raise InvalidRequestContent("ZipFile must be a base64-encoded string")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestContent("Could not decode ZipFile: it is not valid base64")
