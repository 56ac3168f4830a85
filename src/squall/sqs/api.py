"""SQS's JSON protocol (what botocore and the AWS CLI speak) over a ``QueueStore``, as a raw ASGI app.

Requests are ``POST`` with ``X-Amz-Target: AmazonSQS.<Operation>`` and a JSON body
(``application/x-amz-json-1.0``), sent to the endpoint root or to a queue URL
(``{public_url}/{account_id}/{queue_name}``); a queue URL in the body wins over the path.  The body is taken from
``scope["squall.body"]`` when ``SigV4Middleware`` already read it.  Errors are rendered by
``squall.aws.errors.render("sqs", ...)``.

ReceiveMessage long-polls through a ``QueueWaiter`` (``squall.sqs.store.wait``): no busy waiting, it returns
as soon as a message arrives.  Other operations run in a worker thread so an fsync never blocks the loop.

Mounting: route requests whose ``X-Amz-Target`` starts with ``AmazonSQS.`` (``is_sqs_request(scope)``) to
``sqs_app(...)``, behind the SigV4 middleware.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from squall.aws import errors as aws_errors
from squall.core import jsonlimits
from squall.core.errors import InvalidParameterValue, ServiceError, SquallError
from squall.sqs.errors import BatchRequestTooLong, MissingParameter, QueueDoesNotExist, UnknownOperation
from squall.sqs.shapes import (
    batch_entries,
    batch_failure,
    decode_token,
    encode_token,
    message_json,
    optional_int,
    queue_name_from_url,
    queue_url,
    required_str,
    send_entry,
    sent_json,
    string_list,
    string_map,
    system_attribute_names,
)
from squall.sqs.store.moves import list_move_tasks, start_move_task
from squall.sqs.store.queues import QueueStore
from squall.sqs.store.records import SendEntry
from squall.sqs.store.wait import QueueWaiter

__all__ = ["SqsApp", "is_sqs_request", "sqs_app"]

log = logging.getLogger(__name__)


_TARGET_PREFIX = "AmazonSQS."
_CONTENT_TYPE = "application/x-amz-json-1.0"
_MIN_BATCH_LIMIT = 262_144


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def is_sqs_request(scope: Scope) -> bool:
    """True for an HTTP request carrying ``X-Amz-Target: AmazonSQS.*`` (how to route requests to this app)."""
    if scope.get("type") != "http":
        return False
    target = _header(scope, b"x-amz-target")
    return target is not None and target.startswith(_TARGET_PREFIX)


@dataclass(frozen=True)
class _Call:
    params: dict[str, Any]
    #: the request path when it looks like a queue URL's (POST to a queue URL), else None
    path_queue: str | None
    #: the caller's access key id (SenderId of sent messages)
    sender_id: str | None


def _entry_size(entry: SendEntry) -> int:
    size = len(entry.body.encode("utf-8"))
    for name, value in entry.message_attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        data = value.get("BinaryValue")
        size += len(data) if isinstance(data, bytes) else len(str(value.get("StringValue", "")).encode())
    return size


class SqsApp:
    """The ASGI app; one per store and event loop."""

    def __init__(
        self,
        store: QueueStore,
        *,
        public_url: str,
        region: str,
        account_id: str,
        waiter: QueueWaiter | None = None,
    ) -> None:
        self.store = store
        self.public_url = public_url
        self.region = region
        self.account_id = account_id
        self.waiter = waiter or QueueWaiter(store)
        self._sync_ops: dict[str, Callable[[_Call], dict[str, Any]]] = {
            "CreateQueue": self._create_queue,
            "GetQueueUrl": self._get_queue_url,
            "ListQueues": self._list_queues,
            "DeleteQueue": self._delete_queue,
            "SendMessage": self._send_message,
            "SendMessageBatch": self._send_message_batch,
            "DeleteMessage": self._delete_message,
            "DeleteMessageBatch": self._delete_message_batch,
            "ChangeMessageVisibility": self._change_visibility,
            "ChangeMessageVisibilityBatch": self._change_visibility_batch,
            "PurgeQueue": self._purge_queue,
            "GetQueueAttributes": self._get_queue_attributes,
            "SetQueueAttributes": self._set_queue_attributes,
            "ListDeadLetterSourceQueues": self._list_dead_letter_sources,
            "TagQueue": self._tag_queue,
            "UntagQueue": self._untag_queue,
            "ListQueueTags": self._list_queue_tags,
            "StartMessageMoveTask": self._start_message_move_task,
            "ListMessageMoveTasks": self._list_message_move_tasks,
        }

    # -- ASGI -----------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = scope.get("squall.request_id") or str(uuid.uuid4())
        try:
            body = scope.get("squall.body")
            if body is None:
                body = await self._read_body(receive)
            result = await self._dispatch(scope, body)
            status, headers, payload = 200, {"Content-Type": _CONTENT_TYPE}, json.dumps(result).encode()
        except SquallError as e:
            status, headers, payload = aws_errors.render("sqs", e, request_id)
        except Exception:
            log.exception("SQS request failed")
            status, headers, payload = aws_errors.render("sqs", ServiceError("Internal error"), request_id)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items() if k.lower() != "x-amzn-requestid"]
        raw.append((b"x-amzn-requestid", request_id.encode()))
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _dispatch(self, scope: Scope, body: bytes) -> dict[str, Any]:
        target = _header(scope, b"x-amz-target") or ""
        if scope.get("method") != "POST" or not target.startswith(_TARGET_PREFIX):
            raise UnknownOperation(
                "Only the JSON protocol (POST with X-Amz-Target: AmazonSQS.<Operation>) is supported."
            )
        operation = target[len(_TARGET_PREFIX) :]
        try:
            params = jsonlimits.loads(body) if body.strip() else {}
        except jsonlimits.JsonTooDeep as e:
            raise InvalidParameterValue(f"The request body is not valid: {e}.")
        except ValueError:
            raise InvalidParameterValue("The request body is not valid JSON.")
        if not isinstance(params, dict):
            raise InvalidParameterValue("The request body must be a JSON object.")
        path = str(scope.get("path", "/"))
        path_queue = path if len([p for p in path.split("/") if p]) == 2 else None
        auth = scope.get("squall.auth")
        call = _Call(params, path_queue, getattr(auth, "access_key_id", None))
        if operation == "ReceiveMessage":
            return await self._receive_message(call)
        handler = self._sync_ops.get(operation)
        if handler is None:
            raise UnknownOperation(f"Operation {operation} is not supported.")
        return await asyncio.to_thread(handler, call)

    # -- helpers --------------------------------------------------------------------------------------------

    def _url(self, name: str) -> str:
        return queue_url(self.public_url, self.account_id, name)

    def _queue(self, call: _Call) -> str:
        url = call.params.get("QueueUrl")
        if isinstance(url, str) and url:
            return queue_name_from_url(url, self.account_id)
        if call.path_queue:
            return queue_name_from_url(call.path_queue, self.account_id)
        raise MissingParameter("The request must contain the parameter QueueUrl.")

    # -- queues ---------------------------------------------------------------------------------------------

    def _create_queue(self, call: _Call) -> dict[str, Any]:
        name = required_str(call.params, "QueueName")
        info = self.store.create_queue(name, string_map(call.params, "Attributes"), string_map(call.params, "tags"))
        return {"QueueUrl": self._url(info.name)}

    def _get_queue_url(self, call: _Call) -> dict[str, Any]:
        name = required_str(call.params, "QueueName")
        owner = call.params.get("QueueOwnerAWSAccountId")
        if owner not in (None, "", self.account_id) or not self.store.queue_exists(name):
            raise QueueDoesNotExist()
        return {"QueueUrl": self._url(name)}

    def _list_queues(self, call: _Call) -> dict[str, Any]:
        prefix = call.params.get("QueueNamePrefix") or ""
        limit = optional_int(call.params, "MaxResults", 1, 1000, "MaxResults must be an integer between 1 and 1000.")
        after = decode_token(call.params.get("NextToken"))
        names = [n for n in self.store.list_queues(str(prefix)) if n > after]
        out: dict[str, Any] = {}
        page = names[: limit or 1000]
        if page:
            out["QueueUrls"] = [self._url(n) for n in page]
        if limit is not None and len(names) > limit:
            out["NextToken"] = encode_token(page[-1])
        return out

    def _delete_queue(self, call: _Call) -> dict[str, Any]:
        self.store.delete_queue(self._queue(call))
        return {}

    def _purge_queue(self, call: _Call) -> dict[str, Any]:
        self.store.purge(self._queue(call))
        return {}

    def _get_queue_attributes(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        wanted = string_list(call.params, "AttributeNames")
        if not wanted:
            self.store.get_queue(name)
            return {}
        attributes = self.store.get_attributes(name, wanted)
        return {"Attributes": attributes} if attributes else {}

    def _set_queue_attributes(self, call: _Call) -> dict[str, Any]:
        self.store.set_attributes(self._queue(call), string_map(call.params, "Attributes"))
        return {}

    def _list_dead_letter_sources(self, call: _Call) -> dict[str, Any]:
        limit = optional_int(call.params, "MaxResults", 1, 1000, "MaxResults must be an integer between 1 and 1000.")
        after = decode_token(call.params.get("NextToken"))
        names = [n for n in self.store.dead_letter_sources(self._queue(call)) if n > after]
        page = names[: limit or 1000]
        out: dict[str, Any] = {"queueUrls": [self._url(n) for n in page]}
        if limit is not None and len(names) > limit:
            out["NextToken"] = encode_token(page[-1])
        return out

    def _tag_queue(self, call: _Call) -> dict[str, Any]:
        self.store.tag(self._queue(call), string_map(call.params, "Tags"))
        return {}

    def _untag_queue(self, call: _Call) -> dict[str, Any]:
        self.store.untag(self._queue(call), string_list(call.params, "TagKeys"))
        return {}

    def _list_queue_tags(self, call: _Call) -> dict[str, Any]:
        tags = self.store.tags(self._queue(call))
        return {"Tags": tags} if tags else {}

    def _start_message_move_task(self, call: _Call) -> dict[str, Any]:
        rate = optional_int(call.params, "MaxNumberOfMessagesPerSecond", 1, 500, "Must be between 1 and 500.")
        destination = call.params.get("DestinationArn")
        task = start_move_task(
            self.store, required_str(call.params, "SourceArn"), str(destination) if destination else None, rate
        )
        return {"TaskHandle": task.task_handle}

    def _list_message_move_tasks(self, call: _Call) -> dict[str, Any]:
        limit = optional_int(call.params, "MaxResults", 1, 10, "Must be between 1 and 10.")
        tasks = list_move_tasks(self.store, required_str(call.params, "SourceArn"), limit or 1)
        return {"Results": [t.to_sqs() for t in tasks]}

    # -- messages -------------------------------------------------------------------------------------------

    def _send_message(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        entry = send_entry(call.params, call.sender_id)
        return sent_json(self.store.send(name, entry))

    def _send_message_batch(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        entries = batch_entries(call.params, ("MessageBody",))
        queue = self.store.get_queue(name)
        failed: list[dict[str, Any]] = []
        valid: list[tuple[str, SendEntry]] = []
        for raw in entries:
            try:
                valid.append((raw["Id"], send_entry(raw, call.sender_id)))
            except SquallError as e:
                failed.append(batch_failure(raw["Id"], e))
        limit = max(_MIN_BATCH_LIMIT, queue.int_attribute("MaximumMessageSize"))
        total = sum(_entry_size(entry) for _, entry in valid)
        if total > limit:
            raise BatchRequestTooLong(
                f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
            )
        results = self.store.send_batch(name, [entry for _, entry in valid]) if valid else []
        successful: list[dict[str, Any]] = []
        for (entry_id, _), result in zip(valid, results, strict=True):
            if isinstance(result, SquallError):
                failed.append(batch_failure(entry_id, result))
            else:
                successful.append({"Id": entry_id, **sent_json(result)})
        return {"Successful": successful, "Failed": failed}

    async def _receive_message(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        params = call.params
        count = optional_int(params, "MaxNumberOfMessages", 1, 10, "Must be between 1 and 10, if provided.")
        visibility = optional_int(params, "VisibilityTimeout", 0, 43200, "Must be between 0 and 43200, if provided.")
        wait = optional_int(params, "WaitTimeSeconds", 0, 20, "Must be >= 0 and <= 20, if provided.")
        system_names = system_attribute_names(params)
        attribute_names = string_list(params, "MessageAttributeNames")
        if wait is None:
            queue = await asyncio.to_thread(self.store.get_queue, name)
            wait = queue.int_attribute("ReceiveMessageWaitTimeSeconds")
        messages = await self.waiter.receive(name, count or 1, visibility, wait)
        if not messages:
            return {}
        return {"Messages": [message_json(m, system_names, attribute_names) for m in messages]}

    def _delete_message(self, call: _Call) -> dict[str, Any]:
        self.store.delete_message(self._queue(call), required_str(call.params, "ReceiptHandle"))
        return {}

    def _delete_message_batch(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        entries = batch_entries(call.params, ("ReceiptHandle",))
        self.store.get_queue(name)
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            try:
                self.store.delete_message(name, str(entry["ReceiptHandle"]))
            except SquallError as e:
                if isinstance(e, QueueDoesNotExist):
                    raise
                failed.append(batch_failure(entry["Id"], e))
            else:
                successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}

    def _visibility(self, params: dict[str, Any]) -> int:
        value = optional_int(params, "VisibilityTimeout", 0, 43200, "Must be between 0 and 43200, if provided.")
        if value is None:
            raise MissingParameter("The request must contain the parameter VisibilityTimeout.")
        return value

    def _change_visibility(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        handle = required_str(call.params, "ReceiptHandle")
        self.store.change_visibility(name, handle, self._visibility(call.params))
        return {}

    def _change_visibility_batch(self, call: _Call) -> dict[str, Any]:
        name = self._queue(call)
        entries = batch_entries(call.params, ("ReceiptHandle",))
        self.store.get_queue(name)
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            try:
                self.store.change_visibility(name, str(entry["ReceiptHandle"]), self._visibility(entry))
            except SquallError as e:
                if isinstance(e, QueueDoesNotExist):
                    raise
                failed.append(batch_failure(entry["Id"], e))
            else:
                successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}


def sqs_app(
    store: QueueStore,
    *,
    public_url: str,
    region: str,
    account_id: str,
    waiter: QueueWaiter | None = None,
) -> SqsApp:
    """The SQS JSON-protocol ASGI app over ``store``.  ``region`` and ``account_id`` should match the store's
    (they make queue URLs; the store makes ARNs).  Pass a shared ``waiter`` to let other consumers of the same
    store (event source mappings) share the wake-ups; by default the app makes its own."""
    return SqsApp(store, public_url=public_url, region=region, account_id=account_id, waiter=waiter)
