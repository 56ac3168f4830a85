"""What SAM templates and serverless.yml share: CloudFormation's YAML tags, the intrinsic functions Squall resolves
(``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``) for resources the file defines, the resources that become
Squall buckets and queues, and the last step of every translation: the squall.yaml-shaped document is validated by
``squall.cli.project.parse_project`` and its errors are re-keyed to the key of the original file.

Names (there is no stack to generate names from): a function is named by its ``FunctionName`` / ``name`` if set,
else by its logical id / key; a bucket by its ``BucketName``, else its logical id in lower case; a queue by its
``QueueName``, else its logical id (``.fifo`` appended for FIFO queues).  Pseudo parameters: ``AWS::Region`` is
us-east-1, ``AWS::AccountId`` 000000000000, ``AWS::Partition`` aws, ``AWS::StackName`` the project directory's
name, ``AWS::URLSuffix`` amazonaws.com, ``AWS::NoValue`` removes the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from squall.cli.project import (
    BucketDef,
    EventSpec,
    FunctionDef,
    Project,
    ProjectError,
    QueueDef,
    _Loader,
    _parse_yaml,
    parse_project,
)
from squall.core.arn import queue_of_arn

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "CfnLoader",
    "Template",
    "layer_arn",
    "parse_cfn_yaml",
    "queue_name_from_arn",
    "validate_functions",
]

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
_NO_VALUE = object()
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
#: SQS attributes a queue resource may set (CloudFormation property = SQS attribute name)
QUEUE_PROPERTIES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
)


# -- YAML: CloudFormation's short-form tags --


class CfnLoader(_Loader):
    """squall.yaml's loader (duplicate keys refused) that also reads ``!Ref``, ``!GetAtt``, ``!Sub``, ... as the
    long forms ``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``, ``{"Fn::Sub": ...}``."""


def _tag_constructor(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        if name == "Ref":
            return {"Ref": value}
        if name == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        if name == "Condition":
            return {"Condition": value}
        return {f"Fn::{name}": value}

    return construct


for _tag in (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "ImportValue",
    "Base64",
    "GetAZs",
    "Cidr",
    "Condition",
    "Transform",
    "Length",
    "ToJsonString",
):
    CfnLoader.add_constructor(f"!{_tag}", _tag_constructor(_tag))


def parse_cfn_yaml(text: str, source: str) -> Any:
    return _parse_yaml(text, source, CfnLoader)


def layer_arn(name: str) -> str:
    """The unversioned ARN that stands for a layer of the template (``Ref`` of an AWS::Serverless::LayerVersion)
    until ``squall deploy`` publishes it and puts the version's ARN in its place."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}"


def queue_name_from_arn(arn: str) -> str | None:
    parsed = queue_of_arn(arn)
    return parsed[2] if parsed else None


# -- a template's resources and the intrinsics over them --


@dataclass
class Template:
    """What intrinsic functions can refer to, and what the translation has found so far."""

    source: str
    root: Path
    endpoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    #: logical id -> (type, physical name)
    resources: dict[str, tuple[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: extra variables for ``${...}`` in Fn::Sub (serverless: none)
    stack_name: str = ""

    def fail(self, key: str, message: str) -> ProjectError:
        return ProjectError(self.source, key, message)

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}")

    # -- names and attributes --

    def queue_url(self, name: str) -> str:
        return f"{self.endpoint.rstrip('/')}/{ACCOUNT_ID}/{name}"

    def ref(self, name: str, key: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/squall",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise self.fail(key, f"Ref to {name!r}: no parameter or resource of that name in this file")
        kind, physical = self.resources[name]
        if kind == "AWS::SQS::Queue":
            return self.queue_url(physical)
        if kind == "AWS::Serverless::LayerVersion":  # the version is known once deploy has published it
            return layer_arn(physical)
        return physical  # buckets, functions: the name, as on AWS

    def get_att(self, name: str, attribute: str, key: str) -> str:
        if name not in self.resources:
            raise self.fail(key, f"Fn::GetAtt of {name!r}: no resource of that name in this file")
        kind, physical = self.resources[name]
        known: dict[str, dict[str, str]] = {
            "AWS::S3::Bucket": {
                "Arn": f"arn:aws:s3:::{physical}",
                "DomainName": f"{physical}.s3.amazonaws.com",
                "RegionalDomainName": f"{physical}.s3.{REGION}.amazonaws.com",
                "WebsiteURL": f"http://{physical}.s3-website-{REGION}.amazonaws.com",
            },
            "AWS::SQS::Queue": {
                "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{physical}",
                "QueueName": physical,
                "QueueUrl": self.queue_url(physical),
            },
            "AWS::Serverless::Function": {"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}"},
        }
        attrs = known.get(kind)
        if attrs is None or attribute not in attrs:
            allowed = ", ".join(attrs) if attrs else "none"
            raise self.fail(
                key, f"Fn::GetAtt {name}.{attribute}: not an attribute Squall knows of a {kind} (known: {allowed})"
            )
        return attrs[attribute]

    # -- resolving --

    def resolve(self, value: Any, key: str) -> Any:
        """``value`` with every Ref / Fn::GetAtt / Fn::Sub / Fn::Join replaced; other intrinsics are refused."""
        out = self._resolve(value, key)
        return None if out is _NO_VALUE else out

    def _resolve(self, value: Any, key: str) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v, f"{key}[{i}]") for i, v in enumerate(value)]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if not isinstance(arg, str):
                    raise self.fail(f"{key}.Ref", "must name a parameter or resource")
                return self.ref(arg, f"{key}.Ref")
            if fn == "Fn::GetAtt":
                arg = self._resolve(arg, f"{key}.Fn::GetAtt")
                if isinstance(arg, str):
                    arg = arg.split(".", 1)
                if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
                    raise self.fail(f"{key}.Fn::GetAtt", "must be [LogicalId, Attribute] or 'LogicalId.Attribute'")
                return self.get_att(arg[0], arg[1], f"{key}.Fn::GetAtt")
            if fn == "Fn::Sub":
                return self._sub(arg, f"{key}.Fn::Sub")
            if fn == "Fn::Join":
                if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
                    raise self.fail(f"{key}.Fn::Join", "must be [delimiter, [values]]")
                parts = self._resolve(arg[1], f"{key}.Fn::Join[1]")
                if not isinstance(parts, list) or not all(isinstance(p, str | int | float) for p in parts):
                    raise self.fail(f"{key}.Fn::Join", "the values must resolve to a list of strings")
                return arg[0].join(str(p) for p in parts)
            if isinstance(fn, str) and (fn.startswith("Fn::") or fn == "Condition"):
                raise self.fail(
                    f"{key}.{fn}",
                    f"{fn} is not supported by squall deploy (supported: Ref, Fn::GetAtt, Fn::Sub, Fn::Join); "
                    "write the value out",
                )
        return {k: v for k, v in ((k, self._resolve(v, f"{key}.{k}")) for k, v in value.items()) if v is not _NO_VALUE}

    def _sub(self, arg: Any, key: str) -> str:
        variables: dict[str, Any] = {}
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[0], str) or not isinstance(arg[1], dict):
                raise self.fail(key, "must be a string or [string, {Name: value}]")
            variables = {k: self._resolve(v, f"{key}[1].{k}") for k, v in arg[1].items()}
            arg = arg[0]
        if not isinstance(arg, str):
            raise self.fail(key, "must be a string or [string, {Name: value}]")

        def one(m: re.Match[str]) -> str:
            name = m.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is the literal ${Literal}
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute, key)
            value = self.ref(name, key)
            if value is _NO_VALUE:
                return ""
            return str(value)

        return _SUB_VAR.sub(one, arg)

    # -- buckets and queues --

    def name_resources(
        self, resources: dict[str, Any], at: str, naming: dict[str, Callable[[str, dict[str, Any]], str]]
    ) -> None:
        """Give every resource of a type in ``naming`` its physical name (before anything is resolved)."""
        for logical, body in resources.items():
            kind = body.get("Type") if isinstance(body, dict) else None
            if isinstance(kind, str) and kind in naming:
                props = body.get("Properties") or {}
                if not isinstance(props, dict):
                    raise self.fail(f"{at}.{logical}.Properties", "must be a mapping")
                self.resources[str(logical)] = (kind, naming[kind](str(logical), props))

    def bucket_name(self, logical: str, props: dict[str, Any], key: str) -> str:
        raw = props.get("BucketName")
        name = self.resolve(raw, f"{key}.BucketName") if raw is not None else logical.lower()
        if not isinstance(name, str) or not _BUCKET.fullmatch(name):
            where = f"{key}.BucketName" if raw is not None else key
            raise self.fail(
                where,
                f"bucket names are 3-63 characters of lowercase letters, digits, '.' and '-', "
                f"got {name!r}" + ("" if raw is not None else " (set BucketName)"),
            )
        return name

    def queue_name(self, logical: str, props: dict[str, Any], key: str) -> str:
        raw = props.get("QueueName")
        name = self.resolve(raw, f"{key}.QueueName") if raw is not None else logical
        if not isinstance(name, str):
            raise self.fail(f"{key}.QueueName", f"must be a string, got {name!r}")
        if raw is None and props.get("FifoQueue") in (True, "true") and not name.endswith(".fifo"):
            name += ".fifo"
        return name

    def bucket(self, logical: str, props: dict[str, Any], key: str) -> BucketDef:
        self.ignore_properties(props, ("BucketName",), key, "AWS::S3::Bucket")
        return BucketDef(self.resources[logical][1], key)

    def queue(self, logical: str, props: dict[str, Any], key: str) -> QueueDef:
        self.ignore_properties(props, ("QueueName", *QUEUE_PROPERTIES), key, "AWS::SQS::Queue")
        attributes: dict[str, str] = {}
        for prop in QUEUE_PROPERTIES:
            if prop not in props:
                continue
            value = self.resolve(props[prop], f"{key}.{prop}")
            if isinstance(value, dict):
                value = json.dumps(value, separators=(",", ":"))
            elif isinstance(value, bool):
                value = "true" if value else "false"
            attributes[prop] = str(value)
        return QueueDef(self.resources[logical][1], attributes, key)

    def ignore_properties(self, props: dict[str, Any], used: tuple[str, ...], key: str, what: str) -> None:
        extra = [k for k in props if k not in used]
        if extra:
            self.warn(key, f"{what} properties ignored by Squall: {', '.join(map(str, extra))}")


# -- the squall.yaml-shaped document, validated, errors re-keyed --


def validate_functions(
    t: Template,
    functions: dict[str, dict[str, Any]],
    keymap: dict[str, str],
    extras: dict[str, dict[str, Any]],
) -> dict[str, FunctionDef]:
    """Validate ``{"functions": functions}`` as squall.yaml would, then add ``extras`` per function (fields squall.yaml
    does not parse here: policies, runtime, layers, payload formats).  ``keymap`` maps squall.yaml keys
    ("functions.f.memory") to the original file's keys; the longest matching prefix re-keys an error."""
    try:
        project = parse_project({"functions": functions}, base_dir=t.root, source=t.source)
    except ProjectError as e:
        raise _rekey(e, keymap) from None
    out: dict[str, FunctionDef] = {}
    for name, fn in project.functions.items():
        extra = dict(extras.get(name, {}))
        formats: dict[int, str] = extra.pop("payload_formats", {})
        if formats:
            events = tuple(
                EventSpec(e.type, {**e.config, "payload_format": formats[i]}) if i in formats else e
                for i, e in enumerate(fn.events)
            )
            fn = replace(fn, events=events)
        out[name] = replace(fn, **extra)
    return out


def _rekey(e: ProjectError, keymap: dict[str, str]) -> ProjectError:
    prefix = f"{e.source}: {e.key}: " if e.key else f"{e.source}: "
    message = e.message[len(prefix) :] if e.message.startswith(prefix) else e.message
    best = ""
    for squall_key in keymap:
        if (e.key == squall_key or e.key.startswith((squall_key + ".", squall_key + "["))) and len(squall_key) > len(
            best
        ):
            best = squall_key
    if not best:
        return ProjectError(e.source, e.key, message)
    rest = e.key[len(best) :]
    return ProjectError(e.source, keymap[best] + rest, message)


def finish(
    t: Template,
    functions: dict[str, FunctionDef],
    buckets: list[BucketDef],
    queues: list[QueueDef],
    layers: list[Any],
) -> Project:
    return Project(
        path=(t.root / Path(t.source).name).resolve(),
        root=t.root,
        functions=functions,
        buckets=tuple(buckets),
        queues=tuple(queues),
        layers=tuple(layers),
        warnings=tuple(t.warnings),
    )
