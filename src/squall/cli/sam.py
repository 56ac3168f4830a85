"""``squall deploy`` of an AWS SAM template (``template.yaml``): translated into the project model squall.yaml gives.

What maps to what (see docs/design.md, "SAM and serverless.yml"):

* ``AWS::Serverless::Function`` -> a function: ``FunctionName`` (default: the logical id), ``CodeUri`` (a local
  directory; its requirements.txt is vendored as ``sam build`` does), ``Handler``, ``Runtime`` (python3.8..3.13),
  ``MemorySize``, ``Timeout``, ``Environment.Variables``, ``EphemeralStorage.Size``, ``ReservedConcurrentExecutions``,
  ``ProvisionedConcurrencyConfig``, ``SnapStart``, ``Layers``, ``Policies`` (inline statements, policy documents,
  the policy templates S3Read/S3Write/S3Crud/S3FullAccess/SQSSendMessage/SQSPoller/LambdaInvoke and a few managed
  policies, all as IAM statements), ``Role`` (an ARN).  ``Globals.Function`` is merged in first (maps merged, Layers
  concatenated, the function's own value wins otherwise).
* Events: ``Api`` (a route with the REST API v1 event, payload format 1.0), ``HttpApi`` (payload format 2.0, or its
  ``PayloadFormatVersion``), ``S3`` (Bucket must be a bucket of the template; Events, Filter.S3Key.Rules),
  ``SQS`` (Queue: an ARN, usually ``!GetAtt Q.Arn``; BatchSize), ``Schedule`` (Schedule, Input, Enabled/State) and
  ``ScheduleV2`` (ScheduleExpression, Input, State; UTC only).
* ``AWS::S3::Bucket`` and ``AWS::SQS::Queue`` -> buckets and queues Squall creates; ``AWS::Serverless::LayerVersion``
  -> a layer ``squall deploy`` publishes before the functions that ``!Ref`` it.  ``AWS::Serverless::Api``/``HttpApi``, ``AWS::Lambda::Permission`` and
  ``AWS::Logs::LogGroup`` are accepted with a warning (Squall routes events itself); any other resource type or event
  type is refused, all of them listed in one error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from squall.cli.cfn import ACCOUNT_ID, REGION, Template, finish, parse_cfn_yaml, queue_name_from_arn, validate_functions
from squall.cli.project import BucketDef, LayerDef, Project, QueueDef, read_project_text

__all__ = ["SAM_TRANSFORM", "is_sam_template", "load_sam", "parse_sam", "policy_statements"]

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
_TOP_KEYS = (
    "AWSTemplateFormatVersion",
    "Transform",
    "Description",
    "Parameters",
    "Globals",
    "Resources",
    "Outputs",
    "Metadata",
    "Conditions",
    "Mappings",
    "Rules",
)
_SUPPORTED = ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion", "AWS::S3::Bucket", "AWS::SQS::Queue")
_TOLERATED = {
    "AWS::Serverless::Api": "events of type Api are served by Squall's HTTP router; the API's own settings are ignored",
    "AWS::Serverless::HttpApi": "events of type HttpApi are served by Squall's HTTP router; its settings are ignored",
    "AWS::Lambda::Permission": "not needed: Squall's triggers invoke the function with the platform's authority",
    "AWS::Logs::LogGroup": "not needed: Squall keeps every function's logs (squall logs NAME)",
}
_EVENT_TYPES = ("Api", "HttpApi", "S3", "SQS", "Schedule", "ScheduleV2")
_FUNCTION_PROPS = (
    "FunctionName",
    "CodeUri",
    "Handler",
    "Runtime",
    "MemorySize",
    "Timeout",
    "Environment",
    "Layers",
    "Policies",
    "Role",
    "Events",
    "EphemeralStorage",
    "ReservedConcurrentExecutions",
    "ProvisionedConcurrencyConfig",
    "SnapStart",
    "Description",
    "Architectures",
    "PackageType",
    "InlineCode",
    "ImageUri",
)
_RUNTIMES = ("python3.8", "python3.9", "python3.10", "python3.11", "python3.12", "python3.13")

# SAM's policy templates Squall can express: template -> (parameter, [(actions, resources)]); "{}" is the parameter
_S3_READ = [
    "s3:GetObject",
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:GetObjectVersion",
    "s3:GetLifecycleConfiguration",
]
_S3_WRITE = ["s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"]
_S3_BUCKET_AND_OBJECTS = ["arn:aws:s3:::{}", "arn:aws:s3:::{}/*"]
_POLICY_TEMPLATES: dict[str, tuple[str, list[tuple[list[str], list[str]]]]] = {
    "S3ReadPolicy": ("BucketName", [(_S3_READ, _S3_BUCKET_AND_OBJECTS)]),
    "S3WritePolicy": ("BucketName", [(_S3_WRITE, _S3_BUCKET_AND_OBJECTS)]),
    "S3CrudPolicy": ("BucketName", [([*_S3_READ, *_S3_WRITE, "s3:DeleteObject"], _S3_BUCKET_AND_OBJECTS)]),
    "S3FullAccessPolicy": (
        "BucketName",
        [
            (
                [
                    "s3:GetObject",
                    "s3:GetObjectAcl",
                    "s3:GetObjectVersion",
                    "s3:PutObject",
                    "s3:PutObjectAcl",
                    "s3:DeleteObject",
                    "s3:DeleteObjectTagging",
                    "s3:DeleteObjectVersionTagging",
                    "s3:GetObjectTagging",
                    "s3:GetObjectVersionTagging",
                    "s3:PutObjectTagging",
                    "s3:PutObjectVersionTagging",
                ],
                ["arn:aws:s3:::{}/*"],
            ),
            (
                [
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                    "s3:GetLifecycleConfiguration",
                    "s3:PutLifecycleConfiguration",
                ],
                ["arn:aws:s3:::{}"],
            ),
        ],
    ),
    "SQSSendMessagePolicy": ("QueueName", [(["sqs:SendMessage*"], [f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{{}}"])]),
    "SQSPollerPolicy": (
        "QueueName",
        [
            (
                [
                    "sqs:ChangeMessageVisibility",
                    "sqs:ChangeMessageVisibilityBatch",
                    "sqs:DeleteMessage",
                    "sqs:DeleteMessageBatch",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                ],
                [f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{{}}"],
            ),
        ],
    ),
    "LambdaInvokePolicy": (
        "FunctionName",
        [
            (["lambda:InvokeFunction"], [f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{{}}*"]),
        ],
    ),
}
# managed policies by name: their statements in Squall's terms ([] = nothing Squall needs: logs are Squall's own)
_MANAGED: dict[str, list[dict[str, Any]]] = {
    "AWSLambdaBasicExecutionRole": [],
    "AWSLambdaExecute": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": ["arn:aws:s3:::*"]},
    ],
    "AmazonS3ReadOnlyAccess": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": ["*"]}],
    "AmazonS3FullAccess": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}],
    "AmazonSQSReadOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ListQueues"],
            "Resource": ["*"],
        },
    ],
    "AmazonSQSFullAccess": [{"Effect": "Allow", "Action": ["sqs:*"], "Resource": ["*"]}],
    "AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": ["*"],
        },
    ],
    "AWSLambdaRole": [{"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": ["*"]}],
}


def is_sam_template(doc: Any) -> bool:
    """Whether a parsed YAML document is a CloudFormation / SAM template."""
    return isinstance(doc, dict) and any(k in doc for k in ("AWSTemplateFormatVersion", "Transform", "Resources"))


def load_sam(path: Path, endpoint: str) -> Project:
    source = str(path)
    doc = parse_cfn_yaml(read_project_text(path), source)
    return parse_sam(doc, source=source, root=path.resolve().parent, endpoint=endpoint)


def _mapping(t: Template, value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise t.fail(key, f"must be a mapping, got {type(value).__name__}")
    return value


def parse_sam(doc: Any, *, source: str, root: Path, endpoint: str) -> Project:
    """Translate a parsed SAM template; raises ProjectError citing the file and the template's key."""
    t = Template(source=source, root=root.resolve(), endpoint=endpoint, stack_name=root.resolve().name)
    top = _mapping(t, doc, "")
    for k in top:
        if k not in _TOP_KEYS:
            raise t.fail(str(k), f"unknown top-level key of a SAM template; allowed: {', '.join(_TOP_KEYS)}")
    transform = top.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    if SAM_TRANSFORM not in transforms:
        t.warn("Transform", f"is not {SAM_TRANSFORM}; the file is read as a SAM template anyway")
    for k in ("Conditions", "Mappings", "Rules"):
        if k in top:
            t.warn(k, "ignored by Squall (Fn::If, Fn::FindInMap and Condition are refused where used)")
    if "Outputs" in top:
        t.warn("Outputs", "not evaluated by Squall (see `squall functions ls`)")

    for name, spec in _mapping(t, top.get("Parameters"), "Parameters").items():
        spec = _mapping(t, spec, f"Parameters.{name}")
        if "Default" not in spec:
            raise t.fail(f"Parameters.{name}", "has no Default; squall deploy takes no parameter overrides: add one")
        t.parameters[str(name)] = spec["Default"]

    resources = _mapping(t, top.get("Resources"), "Resources")
    if not resources:
        raise t.fail("Resources", "missing or empty; define at least one AWS::Serverless::Function")
    t.name_resources(
        resources,
        "Resources",
        {
            "AWS::Serverless::Function": lambda lid, p: _function_name(t, lid, p),
            "AWS::Serverless::LayerVersion": lambda lid, p: str(t.resolve(p.get("LayerName", lid), f"Resources.{lid}")),
            "AWS::S3::Bucket": lambda lid, p: t.bucket_name(lid, p, f"Resources.{lid}.Properties"),
            "AWS::SQS::Queue": lambda lid, p: t.queue_name(lid, p, f"Resources.{lid}.Properties"),
        },
    )

    unsupported: list[str] = []
    for logical, body in resources.items():
        at = f"Resources.{logical}"
        body = _mapping(t, body, at)
        kind = body.get("Type")
        if not isinstance(kind, str):
            raise t.fail(f"{at}.Type", "missing; e.g. Type: AWS::Serverless::Function")
        if "Condition" in body:
            raise t.fail(f"{at}.Condition", "conditions are not supported by squall deploy; remove it")
        if kind in _TOLERATED:
            t.warn(at, f"{kind}: {_TOLERATED[kind]}")
        elif kind not in _SUPPORTED:
            unsupported.append(f"{at} ({kind})")
        elif kind == "AWS::Serverless::Function":
            events = _mapping(
                t, _mapping(t, body.get("Properties"), f"{at}.Properties").get("Events"), f"{at}.Properties.Events"
            )
            for ename, ev in events.items():
                etype = ev.get("Type") if isinstance(ev, dict) else None
                if etype not in _EVENT_TYPES:
                    unsupported.append(f"{at}.Properties.Events.{ename} (event type {etype})")
    if unsupported:
        raise t.fail(
            "Resources",
            f"not supported by Squall: {'; '.join(unsupported)}. Supported resource types: {', '.join(_SUPPORTED)} "
            f"(and {', '.join(_TOLERATED)}, ignored with a warning); event types: {', '.join(_EVENT_TYPES)}",
        )

    globals_ = _mapping(t, top.get("Globals"), "Globals")
    for k in globals_:
        if k != "Function":
            t.warn(f"Globals.{k}", "ignored by Squall (only Globals.Function applies)")
    global_fn = _mapping(t, globals_.get("Function"), "Globals.Function")

    functions: dict[str, dict[str, Any]] = {}
    keymap: dict[str, str] = {}
    extras: dict[str, dict[str, Any]] = {}
    buckets: list[BucketDef] = []
    queues: list[QueueDef] = []
    layers: list[LayerDef] = []
    for logical, body in resources.items():
        kind, at = body["Type"], f"Resources.{logical}"
        props = _mapping(t, body.get("Properties"), f"{at}.Properties")
        if kind == "AWS::S3::Bucket":
            buckets.append(t.bucket(str(logical), props, f"{at}.Properties"))
        elif kind == "AWS::SQS::Queue":
            queues.append(t.queue(str(logical), props, f"{at}.Properties"))
        elif kind == "AWS::Serverless::LayerVersion":
            layers.append(_layer(t, str(logical), props, f"{at}.Properties"))
        elif kind == "AWS::Serverless::Function":
            name = t.resources[str(logical)][1]
            if name in functions:
                raise t.fail(f"{at}.Properties.FunctionName", f"two functions are named {name!r}")
            functions[name], extras[name] = _function(t, name, global_fn, props, f"{at}.Properties", keymap)
    return finish(t, validate_functions(t, functions, keymap, extras), buckets, queues, layers)


def _function_name(t: Template, logical: str, props: dict[str, Any]) -> str:
    raw = props.get("FunctionName")
    name = t.resolve(raw, f"Resources.{logical}.Properties.FunctionName") if raw is not None else logical
    if not isinstance(name, str):
        raise t.fail(f"Resources.{logical}.Properties.FunctionName", f"must be a string, got {name!r}")
    return name


def _layer(t: Template, logical: str, props: dict[str, Any], at: str) -> LayerDef:
    t.ignore_properties(
        props,
        (
            "LayerName",
            "ContentUri",
            "CompatibleRuntimes",
            "Description",
            "RetentionPolicy",
            "LicenseInfo",
            "CompatibleArchitectures",
        ),
        at,
        "AWS::Serverless::LayerVersion",
    )
    content = t.resolve(props.get("ContentUri"), f"{at}.ContentUri")
    if not isinstance(content, str) or content.startswith("s3://"):
        raise t.fail(f"{at}.ContentUri", f"must be a local directory relative to the template, got {content!r}")
    path = (t.root / content).resolve()
    if not path.is_dir():
        raise t.fail(f"{at}.ContentUri", f"directory {content!r} does not exist (looked for {path})")
    runtimes = t.resolve(props.get("CompatibleRuntimes") or [], f"{at}.CompatibleRuntimes")
    return LayerDef(t.resources[logical][1], path, at, tuple(str(r) for r in runtimes))


def _merged(
    t: Template, global_fn: dict[str, Any], props: dict[str, Any], at: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Globals.Function under the function's own properties; and where each property came from."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for k, v in global_fn.items():
        merged[k], origin[k] = v, f"Globals.Function.{k}"
    for k, v in props.items():
        if k in merged and isinstance(v, dict) and isinstance(merged[k], dict):
            base = merged[k]
            merged[k] = {
                **base,
                **{
                    kk: ({**base[kk], **vv} if isinstance(vv, dict) and isinstance(base.get(kk), dict) else vv)
                    for kk, vv in v.items()
                },
            }
        elif k == "Layers" and isinstance(v, list) and isinstance(merged.get(k), list):
            merged[k] = [*merged[k], *v]
        else:
            merged[k] = v
        origin[k] = f"{at}.{k}"
    return merged, origin


def _function(
    t: Template, name: str, global_fn: dict[str, Any], props: dict[str, Any], at: str, keymap: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    p, origin = _merged(t, global_fn, props, at)
    here = f"functions.{name}"
    keymap[here] = at.removesuffix(".Properties")
    ignored = [k for k in p if k not in _FUNCTION_PROPS]
    if ignored:
        t.warn(at, f"properties ignored by Squall: {', '.join(map(str, ignored))}")
    for k in ("InlineCode", "ImageUri"):
        if k in p:
            raise t.fail(origin[k], "not supported by squall deploy: put the code in a directory and set CodeUri")
    if p.get("PackageType", "Zip") != "Zip":
        raise t.fail(origin["PackageType"], "only Zip packages are supported (Squall runs no container images)")
    arch = t.resolve(p.get("Architectures"), origin.get("Architectures", at))
    if arch and arch != ["x86_64"] and arch != ["arm64"]:
        raise t.fail(origin["Architectures"], f"must be [x86_64] or [arm64], got {arch!r}")

    fn: dict[str, Any] = {}
    extra: dict[str, Any] = {}

    def put(squall_key: str, prop: str, value: Any) -> None:
        fn[squall_key] = value
        keymap[f"{here}.{squall_key}"] = origin[prop]

    if "Handler" not in p:
        raise t.fail(f"{at}.Handler", "missing; set it to 'module.function', e.g. Handler: app.handler")
    put("handler", "Handler", t.resolve(p["Handler"], origin["Handler"]))
    code = t.resolve(p.get("CodeUri", "."), origin.get("CodeUri", at))
    if not isinstance(code, str) or code.startswith("s3://"):
        raise t.fail(
            origin.get("CodeUri", f"{at}.CodeUri"), f"must be a local directory relative to the template, got {code!r}"
        )
    fn["code"] = code
    keymap[f"{here}.code"] = origin.get("CodeUri", f"{at}.CodeUri")
    for squall_key, prop in (
        ("memory", "MemorySize"),
        ("timeout", "Timeout"),
        ("reserved_concurrency", "ReservedConcurrentExecutions"),
    ):
        if prop in p:
            put(squall_key, prop, t.resolve(p[prop], origin[prop]))
    if "EphemeralStorage" in p:
        storage = t.resolve(p["EphemeralStorage"], origin["EphemeralStorage"])
        put("ephemeral_storage", "EphemeralStorage", storage.get("Size") if isinstance(storage, dict) else storage)
        keymap[f"{here}.ephemeral_storage"] = origin["EphemeralStorage"] + ".Size"
    if "ProvisionedConcurrencyConfig" in p:
        pc = t.resolve(p["ProvisionedConcurrencyConfig"], origin["ProvisionedConcurrencyConfig"])
        value = pc.get("ProvisionedConcurrentExecutions") if isinstance(pc, dict) else pc
        put("provisioned_concurrency", "ProvisionedConcurrencyConfig", value)
    if "SnapStart" in p:
        snap = t.resolve(p["SnapStart"], origin["SnapStart"])
        apply_on = snap.get("ApplyOn") if isinstance(snap, dict) else None
        if apply_on not in ("PublishedVersions", "None"):
            raise t.fail(origin["SnapStart"] + ".ApplyOn", f"must be PublishedVersions or None, got {apply_on!r}")
        put("snapshot", "SnapStart", apply_on == "PublishedVersions")
    if "Environment" in p:
        env = t.resolve(p["Environment"], origin["Environment"])
        if not isinstance(env, dict) or set(env) - {"Variables"}:
            raise t.fail(origin["Environment"], "must be a mapping with Variables: {NAME: value}")
        put("environment", "Environment", env.get("Variables") or {})
        keymap[f"{here}.environment"] = origin["Environment"] + ".Variables"
    if "Runtime" in p:
        runtime = t.resolve(p["Runtime"], origin["Runtime"])
        if runtime not in _RUNTIMES:
            raise t.fail(
                origin["Runtime"], f"Squall runs Python functions: use one of {', '.join(_RUNTIMES)}, got {runtime!r}"
            )
        extra["runtime"] = runtime
    if "Layers" in p:
        refs = t.resolve(p["Layers"], origin["Layers"])
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs) or len(refs) > 5:
            raise t.fail(origin["Layers"], "must be a list of at most 5 layer ARNs or !Ref of a LayerVersion")
        extra["layers"] = tuple(refs)
    if "Role" in p:
        role = t.resolve(p["Role"], origin["Role"])
        if not isinstance(role, str) or not role.startswith("arn:"):
            raise t.fail(origin["Role"], f"must be a role ARN (Squall creates no AWS::IAM::Role), got {role!r}")
        if "Policies" in p:
            raise t.fail(origin["Policies"], "cannot be combined with Role: put the statements in that role")
        extra["role"] = role
    if "Policies" in p:
        extra["policies"] = tuple(
            policy_statements(t, t.resolve(p["Policies"], origin["Policies"]), origin["Policies"])
        )

    events: list[dict[str, Any]] = []
    formats: dict[int, str] = {}
    evs = t.resolve(p.get("Events") or {}, origin.get("Events", at))
    if not isinstance(evs, dict):
        raise t.fail(origin["Events"], "must be a mapping of event name to {Type, Properties}")
    for ename, ev in evs.items():
        ekey = f"{origin['Events']}.{ename}"
        i = len(events)
        kind, body, fmt, leaves = _event(t, ev, ekey)
        events.append({kind: body})
        keymap[f"{here}.events[{i}]"] = ekey
        keymap[f"{here}.events[{i}].{kind}"] = f"{ekey}.Properties"
        for leaf, sam_key in leaves.items():
            keymap[f"{here}.events[{i}].{kind}.{leaf}"] = f"{ekey}.Properties.{sam_key}"
        if fmt:
            formats[i] = fmt
    if events:
        fn["events"] = events
    if formats:
        extra["payload_formats"] = formats
    return fn, extra


def _event(t: Template, ev: Any, key: str) -> tuple[str, dict[str, Any], str | None, dict[str, str]]:
    """(squall trigger type, its settings, payload format or None, squall leaf key -> SAM property)."""
    if not isinstance(ev, dict) or "Type" not in ev:
        raise t.fail(key, "must be a mapping with Type and Properties")
    etype = ev["Type"]
    props = ev.get("Properties") or {}
    if not isinstance(props, dict):
        raise t.fail(f"{key}.Properties", "must be a mapping")

    def only(*allowed: str, ignorable: tuple[str, ...] = ()) -> None:
        extra = [k for k in props if k not in allowed]
        unknown = [k for k in extra if k not in ignorable]
        if unknown:
            raise t.fail(
                f"{key}.Properties.{unknown[0]}", f"not supported for {etype} events; supported: {', '.join(allowed)}"
            )
        if extra:
            t.warn(f"{key}.Properties", f"ignored by Squall: {', '.join(extra)}")

    if etype in ("Api", "HttpApi"):
        ignorable = (
            "RestApiId",
            "ApiId",
            "Auth",
            "RequestModel",
            "RequestParameters",
            "TimeoutInMillis",
            "RouteSettings",
            "Stage",
        )
        only("Path", "Method", "PayloadFormatVersion", ignorable=ignorable)
        path = props.get("Path", "/{proxy+}" if etype == "HttpApi" else None)
        method = str(props.get("Method", "ANY")).upper()
        if path is None:
            raise t.fail(f"{key}.Properties.Path", "missing; e.g. Path: /hello/{name}")
        fmt = "1.0" if etype == "Api" else str(props.get("PayloadFormatVersion", "2.0"))
        return (
            "http",
            {"method": method, "path": path},
            (fmt if fmt != "2.0" else None),
            {"path": "Path", "method": "Method"},
        )
    if etype == "S3":
        only("Bucket", "Events", "Filter")
        bucket = props.get("Bucket")
        if not isinstance(bucket, str) or ("AWS::S3::Bucket", bucket) not in t.resources.values():
            raise t.fail(
                f"{key}.Properties.Bucket",
                f"must be a !Ref of an AWS::S3::Bucket of this template (as SAM requires), got {bucket!r}",
            )
        kinds = props.get("Events", "s3:ObjectCreated:*")
        body: dict[str, Any] = {"bucket": bucket, "events": kinds if isinstance(kinds, list) else [kinds]}
        rules = ((props.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        for j, rule in enumerate(rules if isinstance(rules, list) else []):
            rname = str(rule.get("Name", "")).lower() if isinstance(rule, dict) else ""
            if rname not in ("prefix", "suffix"):
                raise t.fail(f"{key}.Properties.Filter.S3Key.Rules[{j}].Name", "must be prefix or suffix")
            body[rname] = rule.get("Value", "")
        return "s3", body, None, {"bucket": "Bucket", "events": "Events", "prefix": "Filter", "suffix": "Filter"}
    if etype == "SQS":
        only(
            "Queue",
            "BatchSize",
            "Enabled",
            ignorable=("MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig", "FilterCriteria"),
        )
        queue = queue_name_from_arn(props["Queue"]) if isinstance(props.get("Queue"), str) else None
        if queue is None:
            raise t.fail(
                f"{key}.Properties.Queue", f"must be a queue ARN, e.g. !GetAtt MyQueue.Arn, got {props.get('Queue')!r}"
            )
        if props.get("Enabled") is False:
            t.warn(f"{key}.Properties.Enabled", "false: the mapping is created enabled anyway")
        body = {"queue": queue}
        if "BatchSize" in props:
            body["batch_size"] = props["BatchSize"]
        return "sqs", body, None, {"queue": "Queue", "batch_size": "BatchSize"}
    if etype in ("Schedule", "ScheduleV2"):
        expr_key = "Schedule" if etype == "Schedule" else "ScheduleExpression"
        only(
            expr_key,
            "Input",
            "Enabled",
            "State",
            "ScheduleExpressionTimezone",
            ignorable=(
                "Name",
                "Description",
                "RetryPolicy",
                "DeadLetterConfig",
                "FlexibleTimeWindow",
                "GroupName",
                "RoleArn",
                "StartDate",
                "EndDate",
                "OmitName",
                "PermissionsBoundary",
            ),
        )
        tz = props.get("ScheduleExpressionTimezone", "UTC")
        if tz not in ("UTC", "Etc/UTC"):
            raise t.fail(f"{key}.Properties.ScheduleExpressionTimezone", f"Squall schedules run in UTC, got {tz!r}")
        if expr_key not in props:
            raise t.fail(f"{key}.Properties.{expr_key}", "missing; e.g. rate(5 minutes) or cron(0 12 * * ? *)")
        enabled = props.get("Enabled", True)
        if "State" in props:
            enabled = props["State"] == "ENABLED"
        body = {"expression": props[expr_key], "enabled": enabled}
        if "Input" in props:
            try:
                body["input"] = json.loads(props["Input"]) if isinstance(props["Input"], str) else props["Input"]
            except ValueError as e:
                raise t.fail(f"{key}.Properties.Input", f"must be a JSON document: {e}") from None
        return "schedule", body, None, {"expression": expr_key, "enabled": "Enabled"}
    raise t.fail(f"{key}.Type", f"event type {etype!r} is not supported; supported: {', '.join(_EVENT_TYPES)}")


def policy_statements(t: Template, policies: Any, key: str) -> list[dict[str, Any]]:
    """SAM ``Policies`` (a managed policy name, a policy document, or a list of those and policy templates) as IAM
    statements."""
    items = policies if isinstance(policies, list) else [policies]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        at = f"{key}[{i}]" if isinstance(policies, list) else key
        if isinstance(item, str):
            name = item.rsplit("/", 1)[-1]  # arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole
            if name not in _MANAGED:
                raise t.fail(
                    at,
                    f"managed policy {item!r} is not known to Squall; write its statements inline "
                    f"(known: {', '.join(_MANAGED)})",
                )
            out.extend(dict(s) for s in _MANAGED[name])
        elif isinstance(item, dict) and "Statement" in item:
            statements = item["Statement"]
            statements = statements if isinstance(statements, list) else [statements]
            for j, s in enumerate(statements):
                if not isinstance(s, dict) or "Effect" not in s or not ("Action" in s or "NotAction" in s):
                    raise t.fail(f"{at}.Statement[{j}]", "must be an IAM statement with Effect, Action and Resource")
                out.append(s)
        elif isinstance(item, dict) and len(item) == 1:
            ((template, params),) = item.items()
            if template not in _POLICY_TEMPLATES:
                raise t.fail(
                    f"{at}.{template}",
                    f"policy template not supported by Squall; supported: "
                    f"{', '.join(_POLICY_TEMPLATES)} (or inline statements)",
                )
            param, shapes = _POLICY_TEMPLATES[template]
            value = params.get(param) if isinstance(params, dict) else None
            if not isinstance(value, str) or not value:
                raise t.fail(f"{at}.{template}.{param}", "missing; e.g. {" + f"{param}: !Ref MyResource" + "}")
            for actions, resources in shapes:
                out.append(
                    {
                        "Effect": "Allow",
                        "Action": list(actions),
                        "Resource": [r.replace("{}", value) for r in resources],
                    }
                )
        else:
            raise t.fail(
                at,
                "must be a managed policy name, a policy document with Statement, or a policy "
                "template such as S3ReadPolicy: {BucketName: !Ref Bucket}",
            )
    return out
