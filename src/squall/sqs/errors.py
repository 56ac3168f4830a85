"""SQS errors under their modeled names, so botocore raises ``client.exceptions.QueueDoesNotExist`` and friends.

Each class's ``code`` is the shape name in botocore's SQS model (the JSON ``__type``); ``squall.aws.errors``
adds the legacy query code (``AWS.SimpleQueueService.NonExistentQueue``, ...).  Parameter errors use
``squall.core.errors.InvalidParameterValue``, which renders as SQS's ``InvalidParameterValue``.
"""

from __future__ import annotations

from squall.aws.errors import AwsClientError

__all__ = [
    "BatchEntryIdsNotDistinct",
    "BatchRequestTooLong",
    "EmptyBatchRequest",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "InvalidBatchEntryId",
    "InvalidMessageContents",
    "MessageNotInflight",
    "MissingParameter",
    "PurgeQueueInProgress",
    "QueueDoesNotExist",
    "QueueNameExists",
    "ReceiptHandleIsInvalid",
    "SqsError",
    "TooManyEntriesInBatchRequest",
    "UnknownOperation",
    "UnsupportedOperation",
]


class SqsError(AwsClientError):
    """A client error with an SQS code."""

    code = "InvalidParameterValue"


class QueueDoesNotExist(SqsError):
    code = "QueueDoesNotExist"

    def __init__(self, message: str = "The specified queue does not exist.") -> None:
        super().__init__(message)


class QueueNameExists(SqsError):
    code = "QueueNameExists"


class InvalidAttributeName(SqsError):
    code = "InvalidAttributeName"


class InvalidAttributeValue(SqsError):
    code = "InvalidAttributeValue"


class InvalidMessageContents(SqsError):
    code = "InvalidMessageContents"


class ReceiptHandleIsInvalid(SqsError):
    code = "ReceiptHandleIsInvalid"


class MessageNotInflight(SqsError):
    code = "MessageNotInflight"

    def __init__(self, message: str = "The message referred to isn't in flight.") -> None:
        super().__init__(message)


class PurgeQueueInProgress(SqsError):
    code = "PurgeQueueInProgress"


class UnsupportedOperation(SqsError):
    code = "UnsupportedOperation"


class BatchEntryIdsNotDistinct(SqsError):
    code = "BatchEntryIdsNotDistinct"


class EmptyBatchRequest(SqsError):
    code = "EmptyBatchRequest"

    def __init__(self, message: str = "There should be at least one entry in the request.") -> None:
        super().__init__(message)


class TooManyEntriesInBatchRequest(SqsError):
    code = "TooManyEntriesInBatchRequest"


class InvalidBatchEntryId(SqsError):
    code = "InvalidBatchEntryId"

    def __init__(
        self,
        message: str = "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
        "It can be at most 80 letters long.",
    ) -> None:
        super().__init__(message)


class BatchRequestTooLong(SqsError):
    code = "BatchRequestTooLong"


class MissingParameter(SqsError):
    code = "MissingParameter"


class UnknownOperation(SqsError):
    code = "UnknownOperationException"
