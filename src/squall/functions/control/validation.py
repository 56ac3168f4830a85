"""Lambda's checks of function configuration fields, with Lambda's own messages where it has one.

Every checker takes the raw JSON value from the request and returns it typed, or raises
``InvalidParameterValue`` (Lambda's model-level "validation error detected" messages are reported as
InvalidParameterValueException too: Squall has one code for "your parameter is wrong").
"""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Mapping
from typing import Any

from squall.core.errors import InvalidParameterValue
from squall.functions.control.errors import UnsupportedFeature
from squall.functions.control.names import validation_error

__all__ = [
    "AVAILABLE_RUNTIMES",
    "HOST_ARCHITECTURE",
    "MAX_TAGS",
    "PROVIDED_RUNTIMES",
    "RESERVED_ENV",
    "SUPPORTED_RUNTIMES",
    "check_architectures",
    "check_architectures_list",
    "check_description",
    "check_env",
    "check_ephemeral_storage",
    "check_handler",
    "check_memory",
    "check_role",
    "check_runtime",
    "check_runtime_name",
    "check_snap_start",
    "check_tags",
    "check_timeout",
    "check_unsupported",
    "check_vpc",
    "get_bool",
    "get_int",
    "get_str",
    "squall_extras_from_tags",
]

#: the Python runtimes Lambda offers (valid names; e.g. a layer's CompatibleRuntimes)
SUPPORTED_RUNTIMES = ("python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13")
#: custom runtimes: the zip's ``bootstrap`` executable talks to the Lambda Runtime API (squall.sandbox.runtime.runtime_api)
PROVIDED_RUNTIMES = ("provided.al2023", "provided.al2")
#: the runtimes this server can really run: the interpreter it runs on (functions run on it, in their sandbox)
AVAILABLE_RUNTIMES = (f"python{sys.version_info.major}.{sys.version_info.minor}",)
_DEPRECATED_RUNTIMES = {"python2.7", "python3.6", "python3.7"}
_OTHER_LAMBDA_RUNTIMES = {
    "nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x",
    "nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x", "java8", "java8.al2", "java11", "java17", "java21",
    "java25", "python3.14", "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6",
    "dotnet8", "dotnet10", "nodejs4.3-edge", "go1.x", "ruby2.5", "ruby2.7", "ruby3.2", "ruby3.3", "ruby3.4",
    "provided",
}  # fmt: skip
_ALL_RUNTIMES = sorted({*SUPPORTED_RUNTIMES, *PROVIDED_RUNTIMES, *_DEPRECATED_RUNTIMES, *_OTHER_LAMBDA_RUNTIMES})

#: keys Lambda sets itself and refuses in Environment.Variables (plus every AWS_LAMBDA_* name)
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
_ENV_NAME = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_])+$")
_ENV_LIMIT = 4096
_ROLE = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
_ROLE_RE = re.compile(f"^{_ROLE}$")
#: Lambda's Handler pattern ``[^\s]+`` (Java's \s: ASCII whitespace), matched against the whole value: ``$`` alone
#: would accept a trailing newline
_HANDLER_RE = re.compile(r"[^ \t\n\x0b\f\r]+")
_TAG_RE = re.compile(r"^[\w\s.:/=+\-@]*$")
MAX_TAGS = 50
HOST_ARCHITECTURE = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


def _constraint(value: Any, field: str, constraint: str) -> InvalidParameterValue:
    return validation_error(f"Value '{value}' at '{field}' failed to satisfy constraint: {constraint}")


# -- typed getters --


def get_int(body: Mapping[str, Any], key: str, field: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _constraint(value, field, "Member must be an integer")
    return value


def get_str(body: Mapping[str, Any], key: str, field: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _constraint(value, field, "Member must be a string")
    return value


def get_bool(body: Mapping[str, Any], key: str, field: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _constraint(value, field, "Member must be a boolean")
    return value


def _get_map(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _constraint(value, field, "Member must be an object")
    return value


# -- fields --


def check_memory(value: int) -> int:
    if value < 128:
        raise _constraint(value, "memorySize", "Member must have value greater than or equal to 128")
    if value > 10240:
        raise InvalidParameterValue(
            "'memorySize' failed to satisfy constraint: Member must have value less than or equal to 10240"
        )
    return value


def check_timeout(value: int) -> int:
    if value < 1:
        raise _constraint(value, "timeout", "Member must have value greater than or equal to 1")
    if value > 900:
        raise InvalidParameterValue(
            "'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"
        )
    return value


def check_ephemeral_storage(value: Any) -> int:
    storage = _get_map(value, "ephemeralStorage")
    size = get_int(storage, "Size", "ephemeralStorage.size")
    if size is None:
        raise _constraint(None, "ephemeralStorage.size", "Member must not be null")
    if size < 512:
        raise _constraint(size, "ephemeralStorage.size", "Member must have value greater than or equal to 512")
    if size > 10240:
        raise InvalidParameterValue(
            "'ephemeralStorage.size' failed to satisfy constraint: Member must have value less than or equal to 10240"
        )
    return size


def check_runtime(value: str | None) -> str:
    """Only the Python runtimes whose interpreter is installed here (:data:`AVAILABLE_RUNTIMES`; a function asking
    for python3.13 must not silently run on 3.11) and the custom runtimes (:data:`PROVIDED_RUNTIMES`)."""
    if value is None:
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages."
        )
    if value in AVAILABLE_RUNTIMES or value in PROVIDED_RUNTIMES:
        return value
    if value in SUPPORTED_RUNTIMES:
        raise InvalidParameterValue(
            f"The runtime parameter of {value} is not available on this Squall server: its interpreter is not "
            f"installed. Available runtimes: {', '.join(AVAILABLE_RUNTIMES)}."
        )
    if value in _DEPRECATED_RUNTIMES:
        raise InvalidParameterValue(
            f"The runtime parameter of {value} is no longer supported for creating or updating AWS Lambda "
            f"functions. We recommend you use the new runtime ({AVAILABLE_RUNTIMES[-1]}) while creating or "
            "updating functions."
        )
    if value in _OTHER_LAMBDA_RUNTIMES:
        raise UnsupportedFeature(
            f"Runtime {value} is not supported by Squall, which runs Python functions and custom runtimes: use "
            f"one of {', '.join(AVAILABLE_RUNTIMES + PROVIDED_RUNTIMES)}."
        )
    raise InvalidParameterValue(
        f"Value {value} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: "
        f"[{', '.join(_ALL_RUNTIMES)}] or be a valid ARN"
    )


def check_runtime_name(value: Any, field: str) -> str:
    """A Runtime enum value as a layer's CompatibleRuntimes or a listing filter names it (any Lambda runtime)."""
    if not isinstance(value, str) or value not in _ALL_RUNTIMES:
        raise _constraint(value, field, f"Member must satisfy enum value set: [{', '.join(_ALL_RUNTIMES)}]")
    return value


def check_architectures_list(value: Any, field: str) -> list[str]:
    """A layer's CompatibleArchitectures (0 to 2 of x86_64, arm64): informational, never checked against the host."""
    if not isinstance(value, list) or len(value) > 2 or any(a not in ("x86_64", "arm64") for a in value):
        raise _constraint(
            value, field, "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]"
        )
    return list(value)


def check_handler(value: str | None) -> str:
    if value is None or value == "":
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages."
        )
    if len(value) > 128:
        raise _constraint(value, "handler", "Member must have length less than or equal to 128")
    if not _HANDLER_RE.fullmatch(value):
        raise _constraint(value, "handler", r"Member must satisfy regular expression pattern: [^\s]+")
    return value


def check_role(value: str | None) -> str:
    if value is None:
        raise validation_error("Value null at 'role' failed to satisfy constraint: Member must not be null")
    if not _ROLE_RE.match(value):
        raise _constraint(value, "role", f"Member must satisfy regular expression pattern: {_ROLE}")
    return value


def check_description(value: str) -> str:
    if len(value) > 256:
        raise _constraint(value, "description", "Member must have length less than or equal to 256")
    return value


def check_env(value: Any) -> dict[str, str]:
    """Environment -> its Variables: names, reserved keys and the 4 KB limit, as Lambda checks them."""
    variables = _get_map(_get_map(value, "environment").get("Variables"), "environment.variables")
    for name, val in variables.items():
        if not _ENV_NAME.match(name):
            raise validation_error(
                "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: "
                "[Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]"
            )
        if not isinstance(val, str):
            raise _constraint(val, f"environment.variables.{name}", "Member must be a string")
    reserved = [n for n in variables if n in RESERVED_ENV or n.startswith("AWS_LAMBDA_")]
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables you "
            "have provided contains reserved keys that are currently not supported for modification. Reserved "
            f"keys used in this request: {', '.join(reserved)}"
        )
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode("utf-8")) > _ENV_LIMIT:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment variables you "
            f"have provided exceeded the 4KB limit. String measured: {measured}"
        )
    return dict(variables)


def check_architectures(value: Any) -> list[str]:
    if value is None:
        return [HOST_ARCHITECTURE]
    if not isinstance(value, list) or len(value) != 1:
        raise _constraint(value, "architectures", "Member must have length less than or equal to 1")
    arch = value[0]
    if arch not in ("x86_64", "arm64"):
        raise _constraint(
            value,
            "architectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        )
    if arch != HOST_ARCHITECTURE:
        raise UnsupportedFeature(
            f"Architecture {arch} is not available: this Squall node runs {HOST_ARCHITECTURE} "
            f"(pass Architectures=['{HOST_ARCHITECTURE}'] or leave it out)."
        )
    return [arch]


def check_snap_start(value: Any) -> str:
    """SnapStart.ApplyOn: "PublishedVersions" or "None"."""
    apply_on = get_str(_get_map(value, "snapStart"), "ApplyOn", "snapStart.applyOn") or "None"
    if apply_on not in ("PublishedVersions", "None"):
        raise _constraint(
            apply_on, "snapStart.applyOn", "Member must satisfy enum value set: [PublishedVersions, None]"
        )
    return apply_on


def check_vpc(value: Any) -> None:
    """Squall has no VPCs: an absent or empty VpcConfig means the default network (see the squall:network tag)."""
    vpc = _get_map(value, "vpcConfig")
    if vpc.get("SubnetIds") or vpc.get("SecurityGroupIds"):
        raise UnsupportedFeature(
            "VpcConfig with subnets or security groups is not supported by Squall: functions reach the internet "
            "through NAT (and nothing on the host but the Squall endpoint), or no network at all with the tag "
            "squall:network=none."
        )


def check_unsupported(body: Mapping[str, Any]) -> None:
    """Refuse, with what to do instead, the Lambda features Squall does not implement."""
    if body.get("PackageType") == "Image" or (body.get("Code") or {}).get("ImageUri") or body.get("ImageConfig"):
        raise UnsupportedFeature(
            "PackageType Image is not supported by Squall: package the function as a .zip (PackageType Zip, "
            "Code.ZipFile)."
        )
    if body.get("PackageType") not in (None, "Zip"):
        raise _constraint(body["PackageType"], "packageType", "Member must satisfy enum value set: [Zip, Image]")
    refusals = {
        "FileSystemConfigs": "FileSystemConfigs (EFS) are not supported by Squall.",
        "CodeSigningConfigArn": "Code signing is not supported by Squall.",
        "DeadLetterConfig": (
            "DeadLetterConfig is not supported by Squall: configure an OnFailure destination with "
            "PutFunctionEventInvokeConfig instead."
        ),
        "KMSKeyArn": "KMSKeyArn is not supported by Squall: environment variables are stored unencrypted.",
    }
    for key, message in refusals.items():
        value = body.get(key)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v}
        if value:
            raise UnsupportedFeature(message)
    if "VpcConfig" in body:
        check_vpc(body["VpcConfig"])
    tracing = body.get("TracingConfig")
    if tracing is not None:
        mode = _get_map(tracing, "tracingConfig").get("Mode", "PassThrough")
        if mode not in ("PassThrough", "Active"):
            raise _constraint(mode, "tracingConfig.mode", "Member must satisfy enum value set: [Active, PassThrough]")


def check_tags(value: Any) -> dict[str, str]:
    tags = _get_map(value, "tags")
    for key, val in tags.items():
        if not isinstance(val, str):
            raise _constraint(val, f"tags.{key}", "Member must be a string")
        if not 1 <= len(key) <= 128 or not _TAG_RE.match(key):
            raise _constraint(key, "tags", "Map keys must satisfy constraint: [Member must have length less than or "
                              "equal to 128, Member must satisfy regular expression pattern: "
                              r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)]")  # fmt: skip
        if len(val) > 256 or not _TAG_RE.match(val):
            raise _constraint(val, f"tags.{key}", "Member must have length less than or equal to 256")
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(f"Tag keys prefixed with 'aws:' are reserved for AWS use: {key}")
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValue(f"A function can have at most {MAX_TAGS} tags; {len(tags)} were given.")
    squall_extras_from_tags(tags)
    return dict(tags)


def squall_extras_from_tags(tags: Mapping[str, str]) -> tuple[str, bool]:
    """The Squall knobs carried by tags: (network mode, snapshot flag).

    * ``squall:network``: ``nat`` (default: the outside world through NAT and the Squall endpoint, nothing else
      on the host), ``none`` (no network at all) or ``host`` (the host's own network: every service on the host
      is reachable; unsafe, an explicit opt-in);
    * ``squall:snapshot``: ``true`` / ``false`` (default): snapshot the initialised instance (SnapStart-like) on
      every version, ``$LATEST`` included.
    """
    network = tags.get("squall:network", "nat")
    if network not in ("nat", "none", "host"):
        raise InvalidParameterValue(
            f"Invalid value for tag squall:network: '{network}'. Use 'nat' (the default: internet through NAT), "
            "'none' (no network) or 'host' (the host's network, unsafe)."
        )
    snapshot = tags.get("squall:snapshot", "false").lower()
    if snapshot not in ("true", "false"):
        raise InvalidParameterValue(
            f"Invalid value for tag squall:snapshot: '{tags['squall:snapshot']}'. Use 'true' or 'false'."
        )
    unknown = [k for k in tags if k.startswith("squall:") and k not in ("squall:network", "squall:snapshot")]
    if unknown:
        raise InvalidParameterValue(
            f"Unknown Squall tag {unknown[0]}: the squall: tags are squall:network and squall:snapshot."
        )
    return network, snapshot == "true"
