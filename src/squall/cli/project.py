"""The ``squall.yaml`` project file: parsed and validated into frozen dataclasses.

Every error cites the file and the key, says what is wrong and what is allowed, e.g.::

    squall.yaml: functions.thumbnail.memory: must be an integer between 128 and 10240 (MB), got 64

Unknown keys and duplicate keys are errors, so a typo never passes silently.  Paths (``code``, ``requirements``) are
relative to the directory holding the yaml file.

Example::

    functions:
      hello:
        handler: app.handler          # required: module.function
        code: ./hello                 # directory; default "."
        memory: 128                   # MB, 128..10240
        timeout: 3                    # s, 1..900
        environment: {KEY: value}
        reserved_concurrency: 10      # optional, >= 0
        provisioned_concurrency: 2    # optional, >= 1 (and <= reserved_concurrency)
        ephemeral_storage: 512        # MB, 512..10240
        network: nat                  # nat (default) | none | host (unsafe: the host's network)
        snapshot: false
        layers: [./shared, "arn:aws:lambda:us-east-1:000000000000:layer:tools:3"]  # directories or ARNs, <= 5
        requirements: requirements.txt  # optional; default <code>/requirements.txt if present; false: none
        policies:                     # what the function's own AWS calls may do (default: nothing)
          - {s3: photos/originals/*, actions: [read]}   # grants: s3 read|write|delete|list|all
          - {sqs: jobs, actions: [send]}                #         sqs send|receive|purge|all
          - {invoke: other-fn}                          #         invoke (every version and alias)
          - {Effect: Allow, Action: [s3:ListBucket], Resource: "arn:aws:s3:::photos"}  # or IAM statements
        # role: arn:aws:iam::000000000000:role/existing  # instead of policies: use an existing IAM role
        events:
          - http: {method: GET, path: "/hello/{name}"}
          - http: {method: POST, path: /legacy, payload_format: "1.0"}   # REST API (v1) event; default "2.0"
          - schedule: {expression: "rate(5 minutes)"}   # or cron(0 12 * * ? *), or "*/5 * * * *"
          - s3: {bucket: photos, events: ["s3:ObjectCreated:*"], prefix: originals/, suffix: .jpg}
          - sqs: {queue: jobs, batch_size: 10}
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from squall.core.errors import InvalidParameterValue
from squall.core.model import NetworkMode
from squall.iam.grants import GrantError, expand_policies
from squall.triggers.schedules.expressions import parse_schedule

__all__ = [
    "PROJECT_FILE",
    "BucketDef",
    "EventSpec",
    "EventType",
    "FunctionDef",
    "LayerDef",
    "Project",
    "ProjectError",
    "QueueDef",
    "load_project",
    "parse_project",
    "read_project_text",
]

#: the default name of the project file
PROJECT_FILE = "squall.yaml"

EventType = Literal["http", "schedule", "s3", "sqs"]

_MAX_FILE_BYTES = 1024 * 1024
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HANDLER = re.compile(r"\S+\.[A-Za-z_][A-Za-z0-9_]*")
_ENV_KEY = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")
_ENV_MAX_BYTES = 4096
#: variables Lambda sets itself and refuses in a function's configuration
_RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}")
_PATH_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()*,;=:@%-]+")
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\((.+)\)")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_EVENT = re.compile(r"s3:([A-Za-z]+)(:[A-Za-z*]+)?")
_S3_EVENT_KINDS = frozenset(
    {
        "ObjectCreated",
        "ObjectRemoved",
        "ObjectRestore",
        "ObjectTagging",
        "ObjectAcl",
        "Replication",
        "LifecycleExpiration",
        "LifecycleTransition",
        "IntelligentTiering",
        "ReducedRedundancyLostObject",
    }
)
_ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_SQS_QUEUE = re.compile(r"[A-Za-z0-9_-]{1,75}(\.fifo)?|[A-Za-z0-9_-]{1,80}")


class ProjectError(InvalidParameterValue):
    """A project file that cannot be used.  ``source`` is the file, ``key`` the dotted key ("" for the file)."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key


@dataclass(frozen=True)
class EventSpec:
    """One trigger of a function, validated; ``config`` holds its keys with defaults filled in."""

    type: EventType
    config: dict[str, Any]


@dataclass(frozen=True)
class FunctionDef:
    """One function of the project."""

    name: str
    handler: str
    #: the code directory (absolute)
    code: Path
    memory: int = 128
    timeout: int = 3
    environment: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    provisioned_concurrency: int | None = None
    ephemeral_storage: int = 512
    network: NetworkMode = "nat"
    snapshot: bool = False
    #: the requirements file to vendor (absolute), or None
    requirements: Path | None = None
    events: tuple[EventSpec, ...] = ()
    #: what the function's own AWS calls may do: IAM statements (``policies:`` grants already expanded by
    #: ``squall.iam.grants.expand_policies``); ``squall deploy`` puts them in a role ``squall-<name>-role``
    policies: tuple[dict[str, Any], ...] = ()
    #: an existing role's ARN to use instead of ``policies`` (then no role is created)
    role: str | None = None
    #: the runtime the template asks for (SAM / serverless.yml ``Runtime``); None: the host's Python version
    runtime: str | None = None
    #: layers in order: layer version ARNs, names of ``Project.layers`` (templates), or local directories
    #: (absolute) ``squall deploy`` publishes as layers
    layers: tuple[str | Path, ...] = ()


@dataclass(frozen=True)
class BucketDef:
    """A bucket a template defines (``AWS::S3::Bucket``); ``key`` is where, for messages."""

    name: str
    key: str = ""


@dataclass(frozen=True)
class QueueDef:
    """A queue a template defines (``AWS::SQS::Queue``), with its SQS attributes as strings."""

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    key: str = ""


@dataclass(frozen=True)
class LayerDef:
    """A layer a template defines (``AWS::Serverless::LayerVersion``), published by ``squall deploy``."""

    name: str
    content: Path
    key: str = ""
    compatible_runtimes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    #: the project file (absolute)
    path: Path
    #: the directory that relative paths are resolved against
    root: Path
    #: functions in the order the file lists them
    functions: dict[str, FunctionDef]
    #: buckets, queues and layers a SAM template or serverless.yml defines (squall.yaml: none)
    buckets: tuple[BucketDef, ...] = ()
    queues: tuple[QueueDef, ...] = ()
    layers: tuple[LayerDef, ...] = ()
    #: what the translation of a SAM template or serverless.yml left out, one line each ("file: key: why")
    warnings: tuple[str, ...] = ()

    def function(self, name: str) -> FunctionDef:
        try:
            return self.functions[name]
        except KeyError:
            known = ", ".join(self.functions) or "none"
            raise ProjectError(str(self.path), "functions", f"no function named {name!r} (the file defines: {known})")


# -- YAML with duplicate-key detection --


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}: each key may appear only once in a mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)  # merges '<<' keys; explicit keys override merged ones


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, source: str, loader: type[_Loader] = _Loader) -> Any:
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = ": ".join(p for p in (exc.context, exc.problem) if p)
        raise ProjectError(source, "", f"{where}invalid YAML: {what}")
    except yaml.YAMLError as exc:
        raise ProjectError(source, "", f"invalid YAML: {exc}")


# -- validation helpers --


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ProjectError:
        return ProjectError(self.source, key, message)

    def mapping(self, key: str, value: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping of {what}, got {_show(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {_show(k)}")
            if k not in allowed:
                hint = _did_you_mean(k, allowed)
                raise self.fail(
                    f"{key}.{k}" if key else k,
                    f"unknown key{hint}; allowed keys: {', '.join(allowed)}",
                )
        return value

    def integer(self, key: str, value: Any, low: int, high: int | None, unit: str = "") -> int:
        unit = f" ({unit})" if unit else ""
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            rule = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self.fail(key, f"must be an integer {rule}{unit}, got {_show(value)}")
        return value

    def string(self, key: str, value: Any, pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string{', ' + rule if rule else ''}, got {_show(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(key, f"{rule or 'has an invalid format'}, got {_show(value)}")
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {_show(value)}")
        return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 80 else value[:77] + "...")
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- the file --

_FUNCTION_KEYS = (
    "handler",
    "code",
    "memory",
    "timeout",
    "environment",
    "reserved_concurrency",
    "provisioned_concurrency",
    "ephemeral_storage",
    "network",
    "snapshot",
    "requirements",
    "events",
    "policies",
    "role",
    "layers",
)
_LAYER_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+")
_MAX_LAYERS = 5


def load_project(path: Path | str) -> Project:
    """Read and validate a project file.  Raises ProjectError (an InvalidParameterValue) citing file and key."""
    path = Path(path)
    source = str(path)
    text = read_project_text(path)
    return parse_project(_parse_yaml(text, source), base_dir=path.resolve().parent, source=source)


def read_project_text(path: Path) -> str:
    """The text of a project file (squall.yaml, a SAM template, serverless.yml), with errors citing the file."""
    source = str(path)
    try:
        if path.is_dir():
            raise ProjectError(source, "", f"is a directory; expected a project file such as {path / PROJECT_FILE}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProjectError(source, "", "file not found; create it or pass the path of your project file")
    except OSError as exc:
        raise ProjectError(source, "", f"cannot read the file: {exc.strerror or exc}")
    if len(raw) > _MAX_FILE_BYTES:
        raise ProjectError(source, "", f"file is larger than {_MAX_FILE_BYTES} bytes; is this the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProjectError(source, "", "file is not valid UTF-8 text")
    return text


def parse_project(data: Any, *, base_dir: Path, source: str = PROJECT_FILE, check_paths: bool = True) -> Project:
    """Validate an already-parsed project document.  Paths resolve against ``base_dir``; with ``check_paths``
    the code directories and requirements files must exist."""
    c = _Checker(source)
    base_dir = Path(base_dir).resolve()
    if data is None:
        raise c.fail("", "file is empty; it must define at least one function under 'functions:'")
    top = c.mapping("", data, ("functions",), "settings")
    if "functions" not in top:
        raise c.fail(
            "functions", "missing; define at least one function, e.g. functions: {hello: {handler: app.handler}}"
        )
    functions_raw = top["functions"]
    if not isinstance(functions_raw, dict) or not functions_raw:
        raise c.fail(
            "functions", f"must be a non-empty mapping of function name to settings, got {_show(functions_raw)}"
        )
    functions: dict[str, FunctionDef] = {}
    for name, body in functions_raw.items():
        if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
            raise c.fail(
                f"functions.{name}",
                "function names must be 1-64 characters of letters, digits, '-' and '_'",
            )
        functions[name] = _function(c, name, body, base_dir, check_paths)
    return Project(path=base_dir / Path(source).name, root=base_dir, functions=functions)


def _function(c: _Checker, name: str, body: Any, base_dir: Path, check_paths: bool) -> FunctionDef:
    at = f"functions.{name}"
    fn = c.mapping(at, body, _FUNCTION_KEYS, "function settings")
    if "handler" not in fn:
        raise c.fail(f"{at}.handler", "missing; set it to 'module.function', e.g. handler: app.handler")
    handler = c.string(
        f"{at}.handler", fn["handler"], _HANDLER, "must be 'module.function' (e.g. app.handler), without spaces"
    )
    if len(handler) > 128:
        raise c.fail(f"{at}.handler", "must be at most 128 characters")

    code_raw = fn.get("code", ".")
    code = (base_dir / c.string(f"{at}.code", code_raw, rule="a directory relative to the project file")).resolve()
    if check_paths and not code.is_dir():
        raise c.fail(f"{at}.code", f"directory {code_raw!r} does not exist (looked for {code})")

    memory = c.integer(f"{at}.memory", fn.get("memory", 128), 128, 10240, "MB")
    timeout = c.integer(f"{at}.timeout", fn.get("timeout", 3), 1, 900, "seconds")
    ephemeral = c.integer(f"{at}.ephemeral_storage", fn.get("ephemeral_storage", 512), 512, 10240, "MB")
    reserved = fn.get("reserved_concurrency")
    if reserved is not None:
        reserved = c.integer(f"{at}.reserved_concurrency", reserved, 0, None)
    provisioned = fn.get("provisioned_concurrency")
    if provisioned is not None:
        provisioned = c.integer(f"{at}.provisioned_concurrency", provisioned, 1, None)
        if reserved is not None and provisioned > reserved:
            raise c.fail(
                f"{at}.provisioned_concurrency",
                f"must not exceed reserved_concurrency ({reserved}), got {provisioned}",
            )
    network = fn.get("network", "nat")
    if network not in ("nat", "none", "host"):
        raise c.fail(f"{at}.network", f"must be 'nat', 'none' or 'host', got {_show(network)}")
    snapshot = c.boolean(f"{at}.snapshot", fn.get("snapshot", False))
    policies, role = _permissions(c, at, fn)

    return FunctionDef(
        name=name,
        handler=handler,
        code=code,
        memory=memory,
        timeout=timeout,
        environment=_environment(c, f"{at}.environment", fn.get("environment")),
        reserved_concurrency=reserved,
        provisioned_concurrency=provisioned,
        ephemeral_storage=ephemeral,
        network=cast(NetworkMode, network),
        snapshot=snapshot,
        requirements=_requirements(c, f"{at}.requirements", fn, code, base_dir, check_paths),
        events=_events(c, f"{at}.events", fn.get("events")),
        policies=policies,
        role=role,
        layers=_layers(c, f"{at}.layers", fn.get("layers"), base_dir, check_paths),
    )


def _permissions(c: _Checker, at: str, fn: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], str | None]:
    role = fn.get("role")
    if role is not None:
        role = c.string(f"{at}.role", role, _ROLE_ARN, "must be a role ARN such as arn:aws:iam::000000000000:role/name")
        if fn.get("policies") is not None:
            raise c.fail(f"{at}.policies", "cannot be combined with role: put the statements in that role instead")
    raw = fn.get("policies")
    if raw is None:
        return (), role
    try:
        return tuple(expand_policies(raw)), role
    except GrantError as e:
        raise c.fail(f"{at}.policies{e.key}", e.message)


def _layers(c: _Checker, at: str, raw: Any, base_dir: Path, check_paths: bool) -> tuple[str | Path, ...]:
    """``layers:``: up to 5 entries, each a layer version ARN or a directory (relative to the project file) whose
    contents become a layer (``python/...`` for Python code, as on Lambda)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise c.fail(at, f"must be a list of layer version ARNs or directories, got {_show(raw)}")
    if len(raw) > _MAX_LAYERS:
        raise c.fail(at, f"at most {_MAX_LAYERS} layers, got {len(raw)}")
    out: list[str | Path] = []
    for i, item in enumerate(raw):
        key = f"{at}[{i}]"
        text = c.string(key, item, rule="a layer version ARN or a directory")
        if text.startswith("arn:"):
            if not _LAYER_ARN.fullmatch(text):
                raise c.fail(key, f"not a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION): {text}")
            out.append(text)
            continue
        path = (base_dir / text).resolve()
        if check_paths and not path.is_dir():
            raise c.fail(key, f"directory {text!r} does not exist (looked for {path})")
        out.append(path)
    return tuple(out)


def _environment(c: _Checker, at: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise c.fail(at, f"must be a mapping of variable name to value, got {_show(raw)}")
    env: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
            raise c.fail(
                f"{at}.{key}",
                "variable names must start with a letter and have 2 or more letters, digits or '_'",
            )
        if key in _RESERVED_ENV:
            raise c.fail(f"{at}.{key}", "is reserved: the platform sets it for every function; choose another name")
        if isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            env[key] = str(value)
        else:
            raise c.fail(f"{at}.{key}", f"must be a string (or a number/boolean), got {_show(value)}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if size > _ENV_MAX_BYTES:
        raise c.fail(at, f"variables total {size} bytes; Lambda's limit is {_ENV_MAX_BYTES} bytes (4 KB)")
    return env


def _requirements(
    c: _Checker, at: str, fn: dict[str, Any], code: Path, base_dir: Path, check_paths: bool
) -> Path | None:
    if "requirements" not in fn or fn["requirements"] is None:
        default = code / "requirements.txt"
        return default if default.is_file() else None
    raw = fn["requirements"]
    if raw is False:
        return None
    rel = c.string(at, raw, rule="a file relative to the project file, or false for none")
    path = (base_dir / rel).resolve()
    if check_paths and not path.is_file():
        raise c.fail(at, f"file {rel!r} does not exist (looked for {path})")
    return path


def _events(c: _Checker, at: str, raw: Any) -> tuple[EventSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise c.fail(at, f"must be a list of triggers (http, schedule, s3, sqs), got {_show(raw)}")
    events: list[EventSpec] = []
    for i, item in enumerate(raw):
        here = f"{at}[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise c.fail(
                here,
                "each trigger must be a mapping with exactly one of http, schedule, s3, sqs (e.g. - http: {path: /x})",
            )
        ((kind, body),) = item.items()
        validator = _EVENT_VALIDATORS.get(kind) if isinstance(kind, str) else None
        if validator is None:
            hint = _did_you_mean(str(kind), tuple(_EVENT_VALIDATORS))
            raise c.fail(f"{here}.{kind}", f"unknown trigger type{hint}; allowed: {', '.join(_EVENT_VALIDATORS)}")
        events.append(EventSpec(type=cast(EventType, kind), config=validator(c, f"{here}.{kind}", body)))
    return tuple(events)


def _http(c: _Checker, at: str, raw: Any) -> dict[str, Any]:
    ev = c.mapping(at, raw, ("method", "path", "payload_format"), "http settings")
    method = ev.get("method", "ANY")
    if not isinstance(method, str) or method.upper() not in _HTTP_METHODS:
        raise c.fail(f"{at}.method", f"must be one of {', '.join(_HTTP_METHODS)}, got {_show(method)}")
    if "path" not in ev:
        raise c.fail(f"{at}.path", "missing; e.g. path: /hello/{name}")
    path = c.string(f"{at}.path", ev["path"])
    if not path.startswith("/"):
        raise c.fail(f"{at}.path", f"must start with '/', got {_show(path)}")
    segments = path[1:].split("/") if path != "/" else []
    names: set[str] = set()
    for j, seg in enumerate(segments):
        m = _PATH_PARAM.fullmatch(seg)
        if m:
            if m.group(1) in names:
                raise c.fail(f"{at}.path", f"parameter {{{m.group(1)}}} appears twice in {path!r}")
            names.add(m.group(1))
            if m.group(2) and j != len(segments) - 1:
                raise c.fail(f"{at}.path", f"a greedy parameter {{name+}} must be the last segment of {path!r}")
        elif not _PATH_LITERAL.fullmatch(seg):
            raise c.fail(
                f"{at}.path",
                f"segment {seg!r} of {path!r} is invalid: use URL-safe characters or a whole-segment parameter "
                "like {name} or {proxy+}",
            )
    fmt = ev.get("payload_format", "2.0")
    if isinstance(fmt, float) and fmt in (1.0, 2.0):  # an unquoted 1.0 in YAML is a number
        fmt = f"{fmt:.1f}"
    if fmt not in ("1.0", "2.0"):
        raise c.fail(
            f"{at}.payload_format",
            f'must be "2.0" (the default: HTTP API event) or "1.0" (REST API proxy event), got {_show(fmt)}',
        )
    out = {"method": method.upper(), "path": path}
    if fmt != "2.0":
        out["payload_format"] = fmt
    return out


def _schedule(c: _Checker, at: str, raw: Any) -> dict[str, Any]:
    ev = c.mapping(at, raw, ("expression", "enabled", "input"), "schedule settings")
    if "expression" not in ev:
        raise c.fail(f"{at}.expression", "missing; e.g. expression: rate(5 minutes) or cron(0 12 * * ? *)")
    expr = c.string(f"{at}.expression", ev["expression"]).strip()
    rate = _RATE.fullmatch(expr)
    cron = _CRON.fullmatch(expr)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise c.fail(f"{at}.expression", f"the rate must be at least 1, got {expr!r}")
        if (value == 1) != (not unit.endswith("s")):
            fixed = f"rate({value} {unit.rstrip('s') if value == 1 else unit + 's'})"
            raise c.fail(f"{at}.expression", f"use the {'singular' if value == 1 else 'plural'} unit: {fixed!r}")
    elif cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            unix = (
                f" (a 5-field Unix cron is written without cron( ): {cron.group(1).strip()!r})"
                if len(fields) == 5
                else ""
            )
            raise c.fail(
                f"{at}.expression",
                "a cron expression has 6 fields: minutes hours day-of-month month day-of-week year, "
                f"e.g. cron(0 12 * * ? *); got {len(fields)} in {expr!r}{unix}",
            )
    elif len(expr.split()) != 5:
        raise c.fail(
            f"{at}.expression",
            "must be rate(N minute|minutes|hour|hours|day|days), cron(6 fields) or a 5-field Unix cron such as "
            f"'*/5 * * * *', got {_show(expr)}",
        )
    try:  # the server's own parser: field values, day-of-week rules, ...
        parse_schedule(expr)
    except InvalidParameterValue as exc:
        raise c.fail(f"{at}.expression", exc.message.removeprefix("Parameter ScheduleExpression is not valid: "))
    config: dict[str, Any] = {"expression": expr, "enabled": c.boolean(f"{at}.enabled", ev.get("enabled", True))}
    if "input" in ev:
        config["input"] = ev["input"]
    return config


def _s3(c: _Checker, at: str, raw: Any) -> dict[str, Any]:
    ev = c.mapping(at, raw, ("bucket", "events", "prefix", "suffix"), "s3 settings")
    if "bucket" not in ev:
        raise c.fail(f"{at}.bucket", "missing; name the bucket whose events trigger the function")
    bucket = c.string(
        f"{at}.bucket",
        ev["bucket"],
        _S3_BUCKET,
        "bucket names are 3-63 characters of lowercase letters, digits, '.' and '-'",
    )
    kinds = ev.get("events", ["s3:ObjectCreated:*"])
    if not isinstance(kinds, list) or not kinds:
        raise c.fail(f"{at}.events", f"must be a non-empty list such as ['s3:ObjectCreated:*'], got {_show(kinds)}")
    for j, kind in enumerate(kinds):
        m = _S3_EVENT.fullmatch(kind) if isinstance(kind, str) else None
        if m is None or m.group(1) not in _S3_EVENT_KINDS:
            raise c.fail(
                f"{at}.events[{j}]",
                f"must be an S3 event type such as 's3:ObjectCreated:*' or 's3:ObjectRemoved:Delete', got {_show(kind)}",
            )
    prefix = ev.get("prefix", "")
    suffix = ev.get("suffix", "")
    for k, v in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(v, str):
            raise c.fail(f"{at}.{k}", f"must be a string, got {_show(v)}")
    return {"bucket": bucket, "events": list(kinds), "prefix": prefix, "suffix": suffix}


def _sqs(c: _Checker, at: str, raw: Any) -> dict[str, Any]:
    ev = c.mapping(at, raw, ("queue", "batch_size"), "sqs settings")
    if "queue" not in ev:
        raise c.fail(f"{at}.queue", "missing; name the queue whose messages trigger the function")
    queue = c.string(
        f"{at}.queue",
        ev["queue"],
        _SQS_QUEUE,
        "queue names are 1-80 characters of letters, digits, '-' and '_' (FIFO queues end in .fifo)",
    )
    high = 10 if queue.endswith(".fifo") else 10000
    batch = c.integer(f"{at}.batch_size", ev.get("batch_size", 10), 1, high)
    return {"queue": queue, "batch_size": batch}


_EVENT_VALIDATORS: Mapping[str, Callable[[_Checker, str, Any], dict[str, Any]]] = {
    "http": _http,
    "schedule": _schedule,
    "s3": _s3,
    "sqs": _sqs,
}
