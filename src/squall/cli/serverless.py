"""``squall deploy`` of a Serverless Framework project (``serverless.yml``), translated into the project model.

What maps to what (see docs/design.md, "SAM and serverless.yml"):

* ``functions.<key>`` -> a function named ``name`` if set, else ``<key>``; its code is the service directory (the
  handler path is relative to it, as the framework packages the whole service), with ``requirements.txt`` vendored.
  ``handler``, ``runtime`` (python3.8..3.13), ``memorySize``, ``timeout``, ``environment``, ``layers``,
  ``reservedConcurrency``, ``provisionedConcurrency``, ``ephemeralStorageSize``; ``provider.runtime``,
  ``provider.memorySize``, ``provider.timeout`` and ``provider.environment`` are the defaults.
* IAM: ``provider.iam.role.statements`` (or the older ``provider.iamRoleStatements``) -> every function's policies.
* Events: ``http`` (REST API v1 event, payload format 1.0; ``"GET hello"`` or ``{method, path}``), ``httpApi``
  (payload 2.0; ``"GET /hello"``, ``"*"`` or ``{method, path}``), ``s3`` (``bucket``, ``event``, ``rules``),
  ``sqs`` (an ARN or ``{arn, batchSize}``), ``schedule`` (``rate(...)``/``cron(...)`` or ``{rate, enabled, input}``).
* ``resources.Resources``: CloudFormation ``AWS::S3::Bucket`` and ``AWS::SQS::Queue`` become buckets and queues (with
  Ref / Fn::GetAtt / Fn::Sub over them, as in SAM); an s3 event's bucket that no resource defines is created.
* Variables: ``${self:...}``, ``${opt:stage, 'x'}`` / ``${sls:stage}`` (the default, or dev), ``${opt:region}`` /
  ``${aws:region}`` (us-east-1), ``${aws:accountId}``, ``${env:NAME, 'default'}``; other sources are refused.

Other event types and resource types are refused, all of them listed in one error; plugins, custom and package
settings are ignored with a warning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from squall.cli.cfn import Template, finish, parse_cfn_yaml, queue_name_from_arn, validate_functions
from squall.cli.project import BucketDef, Project, QueueDef, read_project_text

__all__ = ["is_serverless", "load_serverless", "parse_serverless"]

_TOP_KEYS = ("service", "frameworkVersion", "provider", "functions", "resources", "plugins", "custom", "package",
             "params", "configValidationMode", "useDotenv", "variablesResolutionMode", "deprecationNotificationMode",
             "org", "app", "layers")  # fmt: skip
_EVENT_TYPES = ("http", "httpApi", "s3", "sqs", "schedule")
_FN_KEYS = ("handler", "name", "runtime", "memorySize", "timeout", "environment", "events", "layers", "description",
            "reservedConcurrency", "provisionedConcurrency", "ephemeralStorageSize", "package", "tags", "role",
            "architecture")  # fmt: skip
_RUNTIMES = ("python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13")
_VAR = re.compile(r"\$\{([^{}]+)\}")
_RESOURCE_TYPES = ("AWS::S3::Bucket", "AWS::SQS::Queue")


def is_serverless(doc: Any) -> bool:
    return isinstance(doc, dict) and "service" in doc and ("provider" in doc or "functions" in doc)


def load_serverless(path: Path, endpoint: str) -> Project:
    source = str(path)
    doc = parse_cfn_yaml(read_project_text(path), source)
    return parse_serverless(doc, source=source, root=path.resolve().parent, endpoint=endpoint)


class _Vars:
    """The framework's ``${source:address, default}`` variables, resolved over the whole document."""

    def __init__(self, t: Template, doc: dict[str, Any]) -> None:
        self.t, self.doc = t, doc
        self.stage = "dev"

    def resolve(self, value: Any, key: str, depth: int = 0) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{key}.{k}" if key else str(k), depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{key}[{i}]", depth) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        if depth > 10:
            raise self.t.fail(key, "variables refer to each other in a cycle")
        whole = _VAR.fullmatch(value.strip())
        if whole:  # a whole-value variable keeps its type (a number, a mapping)
            return self.resolve(self.one(whole.group(1), key), key, depth + 1)
        return _VAR.sub(lambda m: str(self.resolve(self.one(m.group(1), key), key, depth + 1)), value)

    def one(self, expr: str, key: str) -> Any:
        parts = [p.strip() for p in _split_default(expr)]
        ref, default = parts[0], (parts[1] if len(parts) > 1 else None)
        default_value = _unquote(default) if default is not None else None
        source, _, address = ref.partition(":")
        if ref in ("sls:stage", "opt:stage") or (source == "opt" and address == "stage"):
            return default_value if default_value is not None and ref == "opt:stage" else self.stage
        if ref in ("opt:region", "aws:region", "self:provider.region"):
            return "us-east-1"
        if ref == "aws:accountId":
            return "000000000000"
        if source == "self":
            node: Any = self.doc
            for part in address.split("."):
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif default_value is not None:
                    return default_value
                else:
                    raise self.t.fail(key, f"${{{expr}}}: the file has no {address!r}")
            return node
        if source == "env":
            found = os.environ.get(address)
            if found is None and default_value is None:
                raise self.t.fail(key, f"${{{expr}}}: environment variable {address} is not set (or give a default)")
            return found if found is not None else default_value
        if source == "opt" and default_value is not None:
            return default_value
        if not source or " " in source:
            return "${" + expr + "}"  # not a framework variable (e.g. CloudFormation's ${AWS::Region} in Fn::Sub)
        raise self.t.fail(key, f"${{{expr}}}: variable source {source!r} is not supported by squall deploy "
                               "(supported: self, opt:stage, sls:stage, opt:region, aws:region, env)")  # fmt: skip


def _split_default(expr: str) -> list[str]:
    """``opt:stage, 'dev'`` -> [opt:stage, 'dev'] (a comma inside quotes stays)."""
    out: list[str] = []
    quote = current = ""
    for ch in expr:
        if ch in "'\"" and (not quote or quote == ch):
            quote = "" if quote else ch
        if ch == "," and not quote and not out:
            out.append(current)
            current = ""
            continue
        current += ch
    out.append(current)
    return out


def _unquote(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        return text


def parse_serverless(doc: Any, *, source: str, root: Path, endpoint: str) -> Project:
    """Translate a parsed serverless.yml; raises ProjectError citing the file and the key."""
    t = Template(source=source, root=root.resolve(), endpoint=endpoint)
    if not isinstance(doc, dict):
        raise t.fail("", "must be a mapping with service, provider and functions")
    for k in doc:
        if k not in _TOP_KEYS:
            raise t.fail(str(k), f"unknown top-level key of serverless.yml; allowed: {', '.join(_TOP_KEYS)}")
    for k in ("plugins", "custom", "package", "layers"):
        if k in doc:
            t.warn(k, "ignored by Squall" + (" (requirements.txt is vendored by squall deploy itself)"
                                              if k == "plugins" else ""))  # fmt: skip
    variables = _Vars(t, doc)
    doc = variables.resolve(doc, "")
    t.stack_name = f"{doc.get('service', root.name)}-{variables.stage}"
    provider = doc.get("provider") or {}
    if not isinstance(provider, dict):
        raise t.fail("provider", "must be a mapping")
    if provider.get("name", "aws") != "aws":
        raise t.fail("provider.name", f"must be aws, got {provider.get('name')!r}")
    for k in provider:
        if k not in ("name", "runtime", "memorySize", "timeout", "environment", "iam", "iamRoleStatements",
                     "region", "stage", "architecture", "httpApi", "apiGateway", "logRetentionInDays", "tags",
                     "deploymentBucket", "versionFunctions", "tracing", "logs"):  # fmt: skip
            raise t.fail(f"provider.{k}", "not supported by squall deploy")
    for k in ("httpApi", "apiGateway", "logRetentionInDays", "tags", "deploymentBucket", "tracing", "logs"):
        if k in provider:
            t.warn(f"provider.{k}", "ignored by Squall")

    resources_doc = doc.get("resources") or {}
    if not isinstance(resources_doc, dict):
        raise t.fail("resources", "must be a mapping with Resources")
    for k in resources_doc:
        if k != "Resources":
            t.warn(f"resources.{k}", "ignored by Squall (only resources.Resources is read)")
    resources = resources_doc.get("Resources") or {}
    if not isinstance(resources, dict):
        raise t.fail("resources.Resources", "must be a mapping of logical id to resource")
    t.name_resources(
        resources,
        "resources.Resources",
        {
            "AWS::S3::Bucket": lambda lid, p: t.bucket_name(lid, p, f"resources.Resources.{lid}.Properties"),
            "AWS::SQS::Queue": lambda lid, p: t.queue_name(lid, p, f"resources.Resources.{lid}.Properties"),
        },
    )
    unsupported: list[str] = []
    for logical, body in resources.items():
        kind = body.get("Type") if isinstance(body, dict) else None
        if kind not in _RESOURCE_TYPES:
            unsupported.append(f"resources.Resources.{logical} ({kind})")
    functions_doc = doc.get("functions")
    if not isinstance(functions_doc, dict) or not functions_doc:
        raise t.fail("functions", "missing or empty; define at least one function with a handler")
    for fkey, body in functions_doc.items():
        evs = body.get("events") if isinstance(body, dict) else None
        for i, ev in enumerate(evs if isinstance(evs, list) else []):
            etype = next(iter(ev)) if isinstance(ev, dict) and len(ev) == 1 else None
            if etype not in _EVENT_TYPES:
                unsupported.append(f"functions.{fkey}.events[{i}] (event type {etype})")
    if unsupported:
        raise t.fail(
            "",
            f"not supported by Squall: {'; '.join(unsupported)}. Supported resource types: "
            f"{', '.join(_RESOURCE_TYPES)}; event types: {', '.join(_EVENT_TYPES)}",
        )

    buckets: list[BucketDef] = []
    queues: list[QueueDef] = []
    for logical, body in resources.items():
        at = f"resources.Resources.{logical}.Properties"
        props = body.get("Properties") or {}
        if body["Type"] == "AWS::S3::Bucket":
            buckets.append(t.bucket(str(logical), props, at))
        else:
            queues.append(t.queue(str(logical), props, at))

    statements = provider.get("iamRoleStatements")
    statements_key = "provider.iamRoleStatements"
    iam = provider.get("iam")
    if isinstance(iam, dict):
        role = iam.get("role")
        if isinstance(role, dict) and "statements" in role:
            statements, statements_key = role["statements"], "provider.iam.role.statements"
        elif isinstance(role, str):
            raise t.fail("provider.iam.role", "a named role is not supported; list the statements under "
                                              "provider.iam.role.statements")  # fmt: skip
    policies: tuple[dict[str, Any], ...] = ()
    if statements is not None:
        statements = t.resolve(statements, statements_key)
        if not isinstance(statements, list) or not all(isinstance(s, dict) and "Effect" in s for s in statements):
            raise t.fail(statements_key, "must be a list of IAM statements with Effect, Action and Resource")
        policies = tuple(statements)

    functions: dict[str, dict[str, Any]] = {}
    keymap: dict[str, str] = {}
    extras: dict[str, dict[str, Any]] = {}
    for fkey, body in functions_doc.items():
        at = f"functions.{fkey}"
        if not isinstance(body, dict):
            raise t.fail(at, "must be a mapping with a handler")
        name = body.get("name", fkey)
        if not isinstance(name, str):
            raise t.fail(f"{at}.name", "must be a string")
        if name in functions:
            raise t.fail(f"{at}.name", f"two functions are named {name!r}")
        functions[name], extras[name] = _function(t, name, body, provider, at, keymap)
        if policies:
            extras[name]["policies"] = policies
    known_buckets = {b.name for b in buckets}
    for name, fn in functions.items():  # an s3 event's bucket is created by the framework too
        for ev in fn.get("events", []):
            bucket = ev.get("s3", {}).get("bucket")
            if isinstance(bucket, str) and bucket not in known_buckets:
                buckets.append(BucketDef(bucket, keymap[f"functions.{name}"]))
                known_buckets.add(bucket)
    return finish(t, validate_functions(t, functions, keymap, extras), buckets, queues, [])


def _function(
    t: Template, name: str, body: dict[str, Any], provider: dict[str, Any], at: str, keymap: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    here = f"functions.{name}"
    keymap[here] = at
    for k in body:
        if k not in _FN_KEYS:
            raise t.fail(f"{at}.{k}", f"not supported by squall deploy; supported: {', '.join(_FN_KEYS)}")
    for k in ("package", "tags", "architecture"):
        if k in body:
            t.warn(f"{at}.{k}", "ignored by Squall")
    fn: dict[str, Any] = {"code": "."}
    extra: dict[str, Any] = {}
    keymap[f"{here}.code"] = at
    if "handler" not in body:
        raise t.fail(f"{at}.handler", "missing; e.g. handler: handler.hello")
    for squall_key, key, default_key in (("handler", "handler", None), ("memory", "memorySize", "memorySize"),
                                         ("timeout", "timeout", "timeout"),
                                         ("reserved_concurrency", "reservedConcurrency", None),
                                         ("provisioned_concurrency", "provisionedConcurrency", None),
                                         ("ephemeral_storage", "ephemeralStorageSize", None)):  # fmt: skip
        if key in body:
            fn[squall_key] = t.resolve(body[key], f"{at}.{key}")
            keymap[f"{here}.{squall_key}"] = f"{at}.{key}"
        elif default_key and default_key in provider:
            fn[squall_key] = t.resolve(provider[default_key], f"provider.{default_key}")
            keymap[f"{here}.{squall_key}"] = f"provider.{default_key}"
    for where, value in (
        ("provider.environment", provider.get("environment")),
        (f"{at}.environment", body.get("environment")),
    ):
        if value is not None and not isinstance(value, dict):
            raise t.fail(where, "must be a mapping of variable name to value")
    events_raw = body.get("events")
    if events_raw is not None and not isinstance(events_raw, list):
        raise t.fail(f"{at}.events", "must be a list of events, e.g. - httpApi: 'GET /hello'")
    env = {**(provider.get("environment") or {}), **(body.get("environment") or {})}
    if env:
        fn["environment"] = t.resolve(env, f"{at}.environment")
        keymap[f"{here}.environment"] = f"{at}.environment" if body.get("environment") else "provider.environment"
    runtime = body.get("runtime", provider.get("runtime"))
    if runtime is not None:
        if runtime not in _RUNTIMES:
            where = f"{at}.runtime" if "runtime" in body else "provider.runtime"
            raise t.fail(where, f"Squall runs Python functions: use one of {', '.join(_RUNTIMES)}, got {runtime!r}")
        extra["runtime"] = runtime
    if "layers" in body:
        layers = t.resolve(body["layers"], f"{at}.layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers) or len(layers) > 5:
            raise t.fail(f"{at}.layers", "must be a list of at most 5 layer ARNs")
        extra["layers"] = tuple(layers)
    if "role" in body:
        raise t.fail(f"{at}.role", "a named role is not supported; use provider.iam.role.statements")

    events: list[dict[str, Any]] = []
    formats: dict[int, str] = {}
    for i, ev in enumerate(body.get("events") or []):
        ((etype, spec),) = ev.items()
        ekey = f"{at}.events[{i}].{etype}"
        spec = t.resolve(spec, ekey)
        kind, out, fmt, leaves = _event(t, etype, spec, ekey)
        keymap[f"{here}.events[{i}]"] = f"{at}.events[{i}]"
        keymap[f"{here}.events[{i}].{kind}"] = ekey
        for leaf, original in leaves.items():
            keymap[f"{here}.events[{i}].{kind}.{leaf}"] = f"{ekey}.{original}"
        events.append({kind: out})
        if fmt:
            formats[len(events) - 1] = fmt
    if events:
        fn["events"] = events
    if formats:
        extra["payload_formats"] = formats
    return fn, extra


def _event(t: Template, etype: str, spec: Any, key: str) -> tuple[str, dict[str, Any], str | None, dict[str, str]]:
    if etype in ("http", "httpApi"):
        if isinstance(spec, str):
            if spec.strip() == "*":
                method, path = "ANY", "/{proxy+}"
            else:
                method, _, path = spec.strip().partition(" ")
        elif isinstance(spec, dict):
            extra = [k for k in spec if k not in ("method", "path")]
            if extra:
                t.warn(key, f"ignored by Squall: {', '.join(extra)}")
            method, path = str(spec.get("method", "ANY")), spec.get("path", "/{proxy+}" if etype == "httpApi" else "")
        else:
            raise t.fail(key, "must be 'METHOD path' or {method, path}")
        if not isinstance(path, str) or not path.strip():
            raise t.fail(f"{key}.path", "missing; e.g. path: hello/{name}")
        path = path.strip()
        path = path if path.startswith("/") else "/" + path
        method = "ANY" if method == "*" else method.upper()
        return "http", {"method": method, "path": path}, "1.0" if etype == "http" else None, {
            "method": "method", "path": "path"}  # fmt: skip
    if etype == "s3":
        if isinstance(spec, str):
            spec = {"bucket": spec}
        if not isinstance(spec, dict) or "bucket" not in spec:
            raise t.fail(f"{key}.bucket", "missing; name the bucket")
        extra = [k for k in spec if k not in ("bucket", "event", "rules", "existing", "forceDeploy")]
        if extra:
            raise t.fail(f"{key}.{extra[0]}", "not supported; supported: bucket, event, rules, existing")
        out: dict[str, Any] = {"bucket": spec["bucket"], "events": [spec.get("event", "s3:ObjectCreated:*")]}
        for j, rule in enumerate(spec.get("rules") or []):
            if not isinstance(rule, dict) or len(rule) != 1 or next(iter(rule)) not in ("prefix", "suffix"):
                raise t.fail(f"{key}.rules[{j}]", "must be {prefix: ...} or {suffix: ...}")
            out.update(rule)
        return "s3", out, None, {"bucket": "bucket", "events": "event", "prefix": "rules", "suffix": "rules"}
    if etype == "sqs":
        if isinstance(spec, str):
            spec = {"arn": spec}
        if not isinstance(spec, dict):
            raise t.fail(key, "must be a queue ARN or {arn, batchSize}")
        extra = [k for k in spec if k not in ("arn", "batchSize", "enabled")]
        if extra:
            t.warn(key, f"ignored by Squall: {', '.join(extra)}")
        arn = spec.get("arn")
        queue = queue_name_from_arn(arn) if isinstance(arn, str) else None
        if queue is None:
            raise t.fail(f"{key}.arn", f"must be a queue ARN (e.g. !GetAtt MyQueue.Arn), got {spec.get('arn')!r}")
        out = {"queue": queue}
        if "batchSize" in spec:
            out["batch_size"] = spec["batchSize"]
        return "sqs", out, None, {"queue": "arn", "batch_size": "batchSize"}
    # schedule
    if isinstance(spec, str):
        spec = {"rate": spec}
    if not isinstance(spec, dict) or "rate" not in spec:
        raise t.fail(f"{key}.rate", "missing; e.g. rate(10 minutes) or cron(0 12 * * ? *)")
    rate = spec["rate"]
    if isinstance(rate, list):
        if len(rate) != 1:
            raise t.fail(f"{key}.rate", "give one expression per schedule event (Squall: one schedule each)")
        rate = rate[0]
    extra = [k for k in spec if k not in ("rate", "enabled", "input", "name", "description")]
    if extra:
        t.warn(key, f"ignored by Squall: {', '.join(extra)}")
    out = {"expression": rate, "enabled": spec.get("enabled", True)}
    if "input" in spec:
        out["input"] = spec["input"]
    return "schedule", out, None, {"expression": "rate", "enabled": "enabled", "input": "input"}
