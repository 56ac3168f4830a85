"""SQS event source mappings: the Lambda API for them and one poller per enabled mapping.

API (signed, Lambda's rest-json shapes from botocore's model): CreateEventSourceMapping
(``POST /2015-03-31/event-source-mappings/`` -> 202), ListEventSourceMappings (``GET`` same path, with
``FunctionName``, ``EventSourceArn``, ``Marker``, ``MaxItems``), Get / Update (``PUT``, 202) / Delete (202) on
``/2015-03-31/event-source-mappings/{UUID}``.  Only SQS queues of this server are accepted as event sources.

Polling, as Lambda does for SQS: each enabled mapping runs ``ScalingConfig.MaximumConcurrency`` (default
``DEFAULT_CONCURRENCY``) receive loops.  A loop long-polls the queue (at most 10 messages per receive) and
gathers up to ``BatchSize`` messages, or until ``MaximumBatchingWindowInSeconds`` passed since the first one,
then invokes the function synchronously with ``{"Records": [...]}``.  On success every message is deleted,
except, with ``FunctionResponseTypes: ["ReportBatchItemFailures"]``, those the function lists in
``{"batchItemFailures": [{"itemIdentifier": messageId}]}`` (an invalid list fails the whole batch).  On a
function error or throttle nothing is deleted: the messages come back after the queue's visibility timeout
and its redrive policy moves them to the dead-letter queue after ``maxReceiveCount`` receives.  Errors back
the loop off exponentially (``BACKOFF_MIN_S`` .. ``BACKOFF_MAX_S``).

In a cluster each mapping is polled by one node at a time, so its ``MaximumConcurrency`` and ``BatchSize`` hold
for the whole cluster (not once per node): ``owns(uuid)`` says whether this node is the mapping's poller (the
first live node in the UUID's rendezvous order).  ``reconcile`` makes the running pollers match the stored
mappings this node owns; it runs when a mapping changes through this node or another (``announce`` tells the
others), when the membership changes (a node left: its mappings move to the next node in their order within the
membership expiry; a node joined: the mappings it now owns stop here), and every ``RECONCILE_S`` as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from squall.aws.json_api import LAMBDA_MAX_BODY_BYTES, lambda_endpoint, read_json_object
from squall.core import jsonlimits
from squall.core.arn import function_arn, function_of_arn, queue_of_arn, resource_name
from squall.core.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceNotFound,
    SquallError,
)
from squall.functions.invoker import Invoker
from squall.functions.store.metadata import SqliteMetadataStore
from squall.sqs.store.queues import QueueStore
from squall.sqs.store.records import QueueMessage, lambda_record
from squall.sqs.store.wait import QueueWaiter
from squall.triggers.event_source_mappings.store import MappingStore
from squall.triggers.plugin import Plugin

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "DEFAULT_CONCURRENCY",
    "EventSourceMappings",
    "failed_items",
    "install",
    "parse_function_name",
]

log = logging.getLogger("squall.esm")

DEFAULT_CONCURRENCY = 5
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
LONG_POLL_S = 20.0
#: a cluster node re-reads the mappings it owns at least this often (changes and membership changes at once)
RECONCILE_S = 10.0
PATH = "/2015-03-31/event-source-mappings"
_RESPONSE_TYPES = ("ReportBatchItemFailures",)
_UPDATABLE = (
    "FunctionName",
    "Enabled",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "FunctionResponseTypes",
    "ScalingConfig",
)


def parse_function_name(value: Any) -> tuple[str, str | None]:
    """(name, qualifier) of a FunctionName: ``name``, ``name:qualifier``, a partial ARN
    (``account:function:name``) or a full ARN, each optionally qualified."""
    if not isinstance(value, str) or not value:
        raise InvalidParameterValue("FunctionName is required")
    parts = value.split(":")
    if value.startswith("arn:"):
        ref = function_of_arn(value)
        if ref is None:
            raise InvalidParameterValue(f"Invalid FunctionName: {value}")
        rest = [ref[0]] if ref[1] is None else [ref[0], ref[1]]
    elif len(parts) >= 3 and parts[1] == "function":
        rest = parts[2:]
    else:
        rest = parts
    if len(rest) not in (1, 2) or not rest[0]:
        raise InvalidParameterValue(f"Invalid FunctionName: {value}")
    return rest[0], (rest[1] if len(rest) == 2 and rest[1] else None)


def failed_items(payload: bytes, message_ids: list[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures response lists as failed; None when the response is invalid
    (the whole batch then counts as failed, as on Lambda)."""
    if not payload.strip():
        return set()
    try:
        response = jsonlimits.loads(payload, max_depth=jsonlimits.MAX_PAYLOAD_DEPTH)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(response, dict):
        return set()
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    known = set(message_ids)
    out: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in known:
            return None
        out.add(ident)
    return out


def _int(body: dict[str, Any], key: str, lo: int, hi: int, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{value}' at '{key[0].lower() + key[1:]}' failed to satisfy "
            f"constraint: Member must have value between {lo} and {hi}"
        )
    return value


class Poller:
    """The receive loops of one enabled mapping."""

    def __init__(self, owner: EventSourceMappings, config: dict[str, Any]) -> None:
        self.owner = owner
        self.config = config
        self.name, self.qualifier = parse_function_name(config["FunctionArn"])
        self.queue_arn: str = config["EventSourceArn"]
        self.queue = resource_name(self.queue_arn)
        self.batch_size = int(config["BatchSize"])
        self.window = float(config.get("MaximumBatchingWindowInSeconds", 0))
        self.report_failures = "ReportBatchItemFailures" in (config.get("FunctionResponseTypes") or [])
        scaling = config.get("ScalingConfig") or {}
        self.concurrency = int(scaling.get("MaximumConcurrency") or DEFAULT_CONCURRENCY)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        uid = self.config["UUID"]
        self.tasks = [asyncio.create_task(self._loop(), name=f"esm-{uid}-{i}") for i in range(self.concurrency)]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        self.tasks = []

    async def _gather(self) -> list[QueueMessage]:
        waiter = self.owner.waiter
        batch = await waiter.receive(self.queue, min(10, self.batch_size), None, wait_seconds=LONG_POLL_S)
        if not batch:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while len(batch) < self.batch_size:
            remaining = deadline - loop.time()
            if self.window > 0 and remaining <= 0:
                break
            more = await waiter.receive(
                self.queue, min(10, self.batch_size - len(batch)), None, wait_seconds=max(remaining, 0.0)
            )
            if not more:
                break
            batch += more
        return batch

    async def _loop(self) -> None:
        backoff = 0.0
        while True:
            if backoff:
                await asyncio.sleep(backoff)
            try:
                ok = await self._once()
            except asyncio.CancelledError:
                raise
            except SquallError as e:
                log.info("event source mapping %s: %s: %s", self.config["UUID"], e.code, e.message)
                self.owner.last_result[self.config["UUID"]] = f"PROBLEM: {e.message}"
                ok = False
            except Exception:
                log.exception("event source mapping %s", self.config["UUID"])
                ok = False
            backoff = 0.0 if ok else min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, backoff * 2))

    async def _once(self) -> bool:
        """Receive, invoke and delete one batch; False when the batch failed (the caller backs off)."""
        messages = await self._gather()
        if not messages:
            return True
        region = self.owner.region
        payload = json.dumps({"Records": [lambda_record(m, self.queue_arn, region) for m in messages]}).encode()
        invoker = self.owner.invoker
        spec = invoker.resolve(self.name, self.qualifier)
        result = await invoker.run(spec, payload, str(uuidlib.uuid4()), "sqs", wait_s=None)
        uid = self.config["UUID"]
        if result.function_error is not None:
            self.owner.last_result[uid] = "PROBLEM: Function call failed"
            return False
        keep: set[str] = set()
        if self.report_failures:
            failed = failed_items(result.payload, [m.message_id for m in messages])
            if failed is None:
                self.owner.last_result[uid] = "PROBLEM: Invalid batchItemFailures response"
                return False
            keep = failed
        done = [m for m in messages if m.message_id not in keep]
        if done:
            await asyncio.to_thread(self._delete, done)
        self.owner.last_result[uid] = "OK"
        return True

    def _delete(self, messages: list[QueueMessage]) -> None:
        store = self.owner.queues
        for m in messages:
            with contextlib.suppress(SquallError):
                store.delete_message(self.queue, m.receipt_handle)


class EventSourceMappings:
    """The plugin's state: the mapping store and the running pollers."""

    def __init__(
        self, store: MappingStore, functions: SqliteMetadataStore, invoker: Invoker, queues: QueueStore,
        waiter: QueueWaiter, *, region: str, account_id: str,
    ) -> None:  # fmt: skip
        self.store = store
        self.functions = functions
        self.invoker = invoker
        self.queues = queues
        self.waiter = waiter
        self.region = region
        self.account_id = account_id
        self.pollers: dict[str, Poller] = {}
        self.last_result: dict[str, str] = {}
        self._lock = asyncio.Lock()
        #: a cluster: whether this node polls the mapping of that UUID (None: one node polls every mapping)
        self.owns: Callable[[str], bool] | None = None
        #: a cluster: tell the other nodes that the mapping of that UUID changed (they reconcile)
        self.announce: Callable[[str], Awaitable[None]] | None = None
        self._wake = asyncio.Event()

    # -- pollers ------------------------------------------------------------------------------------------------
    async def _sync_poller(self, config: dict[str, Any] | None, uid: str) -> None:
        if config is not None and self.owns is not None and not self.owns(uid):
            config = None  # another node polls it
        old = self.pollers.get(uid)
        if old is not None and config is not None and old.config == config:
            return  # running as configured
        self.pollers.pop(uid, None)
        if old is not None:
            await old.stop()
        if config is not None and config.get("State") == "Enabled":
            poller = Poller(self, config)
            self.pollers[uid] = poller
            poller.start()

    async def reconcile(self) -> None:
        """Make the running pollers match the stored, enabled mappings this node owns."""
        async with self._lock:
            rows = await asyncio.to_thread(self.store.list)
            stored = {config["UUID"]: config for _, _, config in rows}
            for uid in [u for u in self.pollers if u not in stored]:
                await self._sync_poller(None, uid)
            for uid, config in stored.items():
                await self._sync_poller(config, uid)

    def wake(self) -> None:
        """Reconcile soon (a mapping changed through another node, or the membership changed)."""
        self._wake.set()

    async def run(self) -> None:
        """Server task: start the pollers of every enabled mapping (in a cluster, of those this node owns, and
        keep them so), then idle until cancelled."""
        self._wake = asyncio.Event()
        await self.reconcile()
        if self.owns is None:
            await asyncio.Event().wait()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONCILE_S)
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception as e:  # the store unreachable: the pollers keep running as they are
                log.warning("event source mappings: %s", e)

    def polled_here(self) -> list[str]:
        """The UUIDs of the mappings this node polls now (``squall cluster status``)."""
        return sorted(self.pollers)

    async def _announce(self, uid: str) -> None:
        if self.announce is not None:
            try:
                await self.announce(uid)
            except Exception:
                log.exception("announcing the change of event source mapping %s", uid)

    async def close(self) -> None:
        for uid in list(self.pollers):
            await self._sync_poller(None, uid)
        self.store.close()

    def triggers(self, function: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The dashboard's view (``core.ports.TriggerQuery``): SQS mappings, by function."""
        return [
            (fn, {
                "type": "sqs", "label": resource_name(str(esm.get("EventSourceArn", ""))),
                "detail": f"batch {esm.get('BatchSize')}", "enabled": esm.get("State") == "Enabled",
                "uuid": esm.get("UUID"),
            })
            for _, fn, esm in self.store.list(function)
        ]  # fmt: skip

    async def on_change(self, name: str, qualifier: str) -> None:
        try:
            await asyncio.to_thread(self.functions.get_function, name)
            return
        except ResourceNotFound:
            pass
        for _, _, config in await asyncio.to_thread(self.store.list, name):
            uid = config["UUID"]
            await self._sync_poller(None, uid)
            with contextlib.suppress(ResourceNotFound):
                await asyncio.to_thread(self.store.delete, uid)
            self.last_result.pop(uid, None)

    # -- configuration ------------------------------------------------------------------------------------------
    def _view(self, config: dict[str, Any], state: str | None = None) -> dict[str, Any]:
        out = dict(config)
        out["LastProcessingResult"] = self.last_result.get(config["UUID"], "No records processed")
        if state is not None:
            out["State"] = state
        return out

    def _function(self, value: Any) -> tuple[str, str]:
        """(name, FunctionArn) of an existing function (qualified ARN when a qualifier was given)."""
        name, qualifier = parse_function_name(value)
        try:
            self.functions.get_function(name, qualifier)
        except ResourceNotFound:
            raise ResourceNotFound(f"Function not found: {function_arn(self.region, self.account_id, name, qualifier)}")
        return name, function_arn(self.region, self.account_id, name, qualifier)

    def _queue_arn(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise InvalidParameterValue("EventSourceArn is required")
        queue = queue_of_arn(value)
        if queue is None:
            raise InvalidParameterValue(f"Unsupported event source: {value} (only SQS queues are supported)")
        region, account, name = queue
        if region != self.region or account != self.account_id or not self.queues.queue_exists(name):
            raise InvalidParameterValue(
                "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. "
                f"SQS Error Message: The specified queue does not exist: {value}"
            )
        return value

    @staticmethod
    def _settings(body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        """Validated BatchSize, window, response types and scaling, ``body`` over ``base``."""
        merged = {**base, **{k: v for k, v in body.items() if k in _UPDATABLE and v is not None}}
        batch = _int(merged, "BatchSize", 1, 10_000, 10)
        window = _int(merged, "MaximumBatchingWindowInSeconds", 0, 300, 0)
        if batch > 10 and window < 1:
            raise InvalidParameterValue(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"
            )
        types = merged.get("FunctionResponseTypes") or []
        if not isinstance(types, list) or any(t not in _RESPONSE_TYPES for t in types):
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{types}' at 'functionResponseTypes' failed to satisfy "
                "constraint: Member must satisfy enum value set: [ReportBatchItemFailures]"
            )
        out: dict[str, Any] = {
            "BatchSize": batch,
            "MaximumBatchingWindowInSeconds": window,
            "FunctionResponseTypes": list(dict.fromkeys(types)),
        }
        scaling = merged.get("ScalingConfig")
        if scaling:
            if not isinstance(scaling, dict):
                raise InvalidParameterValue("ScalingConfig must be an object")
            if scaling.get("MaximumConcurrency") is not None:
                _int(scaling, "MaximumConcurrency", 2, 1000, DEFAULT_CONCURRENCY)
                out["ScalingConfig"] = {"MaximumConcurrency": scaling["MaximumConcurrency"]}
        enabled = merged.get("Enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidParameterValue("Enabled must be a boolean")
        out["State"] = "Enabled" if enabled else "Disabled"
        return out

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name, fn_arn = self._function(body.get("FunctionName"))
        source = self._queue_arn(body.get("EventSourceArn"))
        if body.get("StartingPosition") is not None:
            raise InvalidParameterValue("StartingPosition is not valid for SQS event sources.")
        settings = self._settings(body, {})
        async with self._lock:
            for _, _, other in await asyncio.to_thread(self.store.list, name, source):
                if other["FunctionArn"] == fn_arn:
                    raise ResourceConflict(
                        f'An event source mapping with SQS arn (" {source} ") and function (" {name} ") already '
                        f"exists. Please update or delete the existing mapping with UUID {other['UUID']}"
                    )
            uid = str(uuidlib.uuid4())
            config = {
                "UUID": uid,
                **settings,
                "EventSourceArn": source,
                "FunctionArn": fn_arn,
                "LastModified": time.time(),
                "StateTransitionReason": "USER_INITIATED",
                "EventSourceMappingArn": f"arn:aws:lambda:{self.region}:{self.account_id}:event-source-mapping:{uid}",
            }
            await asyncio.to_thread(self.store.put, name, config)
            await self._sync_poller(config, uid)
        await self._announce(uid)
        return self._view(config, "Creating")

    async def update(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            config = await asyncio.to_thread(self.store.get, uid)
            name, _ = parse_function_name(config["FunctionArn"])
            fn_arn = config["FunctionArn"]
            if body.get("FunctionName") is not None:
                name, fn_arn = self._function(body["FunctionName"])
            base = {**config, "Enabled": config["State"] != "Disabled"}
            settings = self._settings(body, base)
            config = {**config, **settings, "FunctionArn": fn_arn, "LastModified": time.time()}
            if "ScalingConfig" in body and not body["ScalingConfig"]:
                config.pop("ScalingConfig", None)
            await asyncio.to_thread(self.store.put, name, config)
            await self._sync_poller(config, uid)
        await self._announce(uid)
        return self._view(config, "Updating")

    async def delete(self, uid: str) -> dict[str, Any]:
        async with self._lock:
            config = await asyncio.to_thread(self.store.delete, uid)
            await self._sync_poller(None, uid)
        await self._announce(uid)
        view = self._view(config, "Deleting")
        self.last_result.pop(uid, None)
        return view

    async def get(self, uid: str) -> dict[str, Any]:
        return self._view(await asyncio.to_thread(self.store.get, uid))

    async def list(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        name: str | None = None
        fn_arn: str | None = None
        if q.get("FunctionName"):
            fname, qualifier = parse_function_name(q["FunctionName"])
            name, fn_arn = fname, function_arn(self.region, self.account_id, fname, qualifier)
        source = q.get("EventSourceArn") or None
        raw_max = q.get("MaxItems") or "100"
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 10_000:
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{raw_max}' at 'maxItems' failed to satisfy constraint: "
                "Member must have value between 1 and 10000"
            )
        limit = int(raw_max)
        marker = q.get("Marker") or "0"
        if not marker.isdigit():
            raise InvalidParameterValue(f"Invalid Marker: {marker}")
        rows = await asyncio.to_thread(self.store.list, name, source, int(marker), 100_000)
        if fn_arn is not None and (function_of_arn(fn_arn) or ("", None))[1] is not None:
            rows = [r for r in rows if r[2]["FunctionArn"] == fn_arn]
        page = rows[:limit]
        out: dict[str, Any] = {"EventSourceMappings": [self._view(cfg) for _, _, cfg in page]}
        if len(rows) > limit:
            out["NextMarker"] = str(page[-1][0])
        return out


def install(
    store: MappingStore, functions: SqliteMetadataStore, invoker: Invoker, queues: QueueStore, waiter: QueueWaiter,
    *, region: str, account_id: str,
) -> Plugin:  # fmt: skip
    """The event-source-mapping plugin: its store, the functions it points at, the invoker it runs them through
    and the queues it polls."""
    esm = EventSourceMappings(store, functions, invoker, queues, waiter, region=region, account_id=account_id)

    async def create(r: Request) -> tuple[int, dict[str, Any]]:
        return 202, await esm.create(await read_json_object(r, LAMBDA_MAX_BODY_BYTES, "CreateEventSourceMapping"))

    async def list_(r: Request) -> tuple[int, dict[str, Any]]:
        return 200, await esm.list(r)

    async def get(r: Request) -> tuple[int, dict[str, Any]]:
        return 200, await esm.get(r.path_params["UUID"])

    async def update(r: Request) -> tuple[int, dict[str, Any]]:
        return 202, await esm.update(
            r.path_params["UUID"], await read_json_object(r, LAMBDA_MAX_BODY_BYTES, "UpdateEventSourceMapping")
        )

    async def delete(r: Request) -> tuple[int, dict[str, Any]]:
        return 202, await esm.delete(r.path_params["UUID"])

    routes = []
    for path in (PATH, PATH + "/"):
        routes += [
            Route(path, lambda_endpoint("CreateEventSourceMapping", create), methods=["POST"]),
            Route(path, lambda_endpoint("ListEventSourceMappings", list_), methods=["GET"]),
        ]
    item = PATH + "/{UUID}"
    routes += [
        Route(item, lambda_endpoint("GetEventSourceMapping", get), methods=["GET"]),
        Route(item, lambda_endpoint("UpdateEventSourceMapping", update), methods=["PUT"]),
        Route(item, lambda_endpoint("DeleteEventSourceMapping", delete), methods=["DELETE"]),
    ]
    return Plugin(
        name="event-source-mappings",
        routes=list(routes),
        tasks=[esm.run],
        on_change=esm.on_change,
        close=esm.close,
        query=esm,
    )
