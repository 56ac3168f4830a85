"""``squall deploy PATH``: build packages and create or update functions through the Lambda API.

PATH is a function's code directory (one function: name from the directory, handler guessed from ``app.py`` or
``lambda_function.py``, overridable with flags), or a project file (``squall.yaml``, a SAM ``template.yaml`` or a
``serverless.yml``: see ``squall.cli.project_files``), or a directory holding one (every function of the project, or only
``--name``; the buckets and queues a template defines are created first).  Each package is built like ``sam build`` does
(``squall.cli.packaging.build_package``, dependencies cached in ``<data dir>/build-cache``), then:

1. CreateFunction, or UpdateFunctionCode (only when the zip changed) and UpdateFunctionConfiguration (only when
   the configuration changed), waiting for the update to finish in between;
2. network mode through the tag ``squall:network`` and snapshot mode through ``SnapStart``;
   the execution role: ``role:`` as given, else ``squall-<name>-role`` created or updated through the ``iam`` API
   with the function's ``policies:`` as its inline policy ``squall-policies`` (none: the role allows nothing);
3. reserved concurrency: PutFunctionConcurrency when declared (for projects, DeleteFunctionConcurrency when not);
4. provisioned concurrency when declared: PublishVersion, alias ``live`` -> that version,
   PutProvisionedConcurrencyConfig on ``live``.

Triggers under ``events:`` are applied by ``squall.cli.triggers`` (routes, schedules, bucket notifications, queues).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from squall.cli.client import Client, CliError, add_connection_args, endpoint_from, make_client
from squall.cli.packaging import StepSink
from squall.cli.progress import DeployProgress
from squall.cli.project import PROJECT_FILE, FunctionDef, Project
from squall.cli.project_files import find_project_file, load_any_project
from squall.cli.resources import apply_resources, publish_layers
from squall.cli.triggers import apply_triggers

__all__ = ["DeployResult", "add_parser", "plan", "run"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
NETWORK_TAG = "squall:network"
LIVE_ALIAS = "live"
_HANDLER_GUESSES = (("app.py", "app.handler"), ("lambda_function.py", "lambda_function.lambda_handler"))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "deploy", help="build and deploy a function directory, a squall.yaml project, a SAM template or serverless.yml"
    )
    p.add_argument(
        "path",
        type=Path,
        help="a function's code directory, or a squall.yaml / template.yaml (SAM) / serverless.yml file or a directory "
        "with one",
    )
    p.add_argument("--name", help="function name (default: the directory name); with squall.yaml: deploy only this one")
    p.add_argument("--handler", help="module.function (default: app.handler or lambda_function.lambda_handler)")
    p.add_argument("--memory", type=int, help="memory in MB, 128..10240 (default 128)")
    p.add_argument("--timeout", type=int, help="timeout in seconds, 1..900 (default 3)")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeatable)")
    add_connection_args(p)
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- planning


def _parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise CliError(
                f"invalid --env {item!r}: use KEY=VALUE with KEY starting with a letter (letters, digits, '_')"
            )
        env[key] = value
    return env


def _guess_handler(code: Path) -> str:
    for filename, handler in _HANDLER_GUESSES:
        if (code / filename).is_file():
            return handler
    raise CliError(
        f"cannot guess the handler of {code}: it has neither app.py nor lambda_function.py; "
        "pass --handler module.function"
    )


def _check_range(option: str, value: int | None, low: int, high: int, unit: str) -> None:
    if value is not None and not low <= value <= high:
        raise CliError(f"invalid {option} {value}: use {low}..{high} ({unit})")


def plan(args: argparse.Namespace) -> tuple[list[FunctionDef], bool]:
    """The functions to deploy and whether they come from a project file (declarative concurrency)."""
    functions, declarative, _ = plan_project(args)
    return functions, declarative


def plan_project(args: argparse.Namespace) -> tuple[list[FunctionDef], bool, Project | None]:
    """``plan``, with the project (squall.yaml, SAM template or serverless.yml) when there is one."""
    path: Path = args.path.expanduser()
    if not path.exists():
        raise CliError(f"{path} does not exist: pass a function directory or a {PROJECT_FILE} file")
    project_file: Path | None = None
    if path.is_file():
        if path.suffix not in (".yaml", ".yml"):
            raise CliError(
                f"{path} is a file: pass a function directory, a {PROJECT_FILE}, a SAM template.yaml or a "
                "serverless.yml"
            )
        project_file = path
    else:
        project_file = find_project_file(path)
    if project_file is not None:
        flags = [f for f, v in (("--handler", args.handler), ("--memory", args.memory), ("--timeout", args.timeout),
                                ("--env", args.env)) if v]  # fmt: skip
        if flags:
            raise CliError(f"{', '.join(flags)} cannot be combined with {project_file}: set them in the file")
        project = load_any_project(project_file, endpoint_from(args))
        if args.name:
            return [project.function(args.name)], True, project
        return list(project.functions.values()), True, project

    code = path.resolve()
    name = args.name or code.name
    if not _NAME.fullmatch(name):
        raise CliError(f"invalid function name {name!r}: use 1-64 letters, digits, '-' or '_' (pass --name)")
    _check_range("--memory", args.memory, 128, 10240, "MB")
    _check_range("--timeout", args.timeout, 1, 900, "seconds")
    requirements = code / "requirements.txt"
    fn = FunctionDef(
        name=name,
        handler=args.handler or _guess_handler(code),
        code=code,
        memory=args.memory or 128,
        timeout=args.timeout or 3,
        environment=_parse_env(args.env),
        requirements=requirements if requirements.is_file() else None,
    )
    return [fn], False, None


# ------------------------------------------------------------------------------------------- deploying


@dataclass
class DeployResult:
    name: str
    action: str = "unchanged"
    version: str = "$LATEST"
    code_size: int = 0
    code_sha256: str = ""
    notes: list[str] = field(default_factory=list)


def _runtime() -> str:
    minor = sys.version_info.minor
    return f"python3.{minor}" if 8 <= minor <= 13 else "python3.12"


def _desired_config(fn: FunctionDef, role: str) -> dict[str, Any]:
    return {
        "Role": role,
        "Runtime": fn.runtime or _runtime(),
        "Handler": fn.handler,
        "MemorySize": fn.memory,
        "Timeout": fn.timeout,
        "Environment": {"Variables": dict(fn.environment)},
        "EphemeralStorage": {"Size": fn.ephemeral_storage},
        "SnapStart": {"ApplyOn": "PublishedVersions" if fn.snapshot else "None"},
    }


def _layer_name(function: str, directory: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{function}-{directory.name}")[:140]


def _resolve_layers(client: Client, fn: FunctionDef, say: Callable[[str], None], cache_dir: Path) -> list[str]:
    """The function's layer version ARNs, publishing each local layer directory whose zip changed."""
    from squall.cli.packaging import build_package

    arns: list[str] = []
    lam = client.lambda_
    for layer in fn.layers:
        if isinstance(layer, str):
            arns.append(layer)
            continue
        name = _layer_name(fn.name, layer)
        data, info = build_package(layer, None, cache_dir)
        with client.errors():
            versions = lam.list_layer_versions(LayerName=name, MaxItems=1)["LayerVersions"]
            latest = lam.get_layer_version_by_arn(Arn=versions[0]["LayerVersionArn"]) if versions else None
            if latest is not None and latest["Content"]["CodeSha256"] == info.code_sha256:
                arns.append(latest["LayerVersionArn"])
                continue
            say(f"{fn.name}: publishing layer {name} from {layer}")
            arns.append(lam.publish_layer_version(LayerName=name, Content={"ZipFile": data})["LayerVersionArn"])
    return arns


def _config_differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    now = {
        "Role": current.get("Role"),
        "Runtime": current.get("Runtime"),
        "Handler": current.get("Handler"),
        "MemorySize": current.get("MemorySize"),
        "Timeout": current.get("Timeout"),
        "Environment": {"Variables": dict((current.get("Environment") or {}).get("Variables") or {})},
        "EphemeralStorage": {"Size": (current.get("EphemeralStorage") or {}).get("Size", 512)},
        "SnapStart": {"ApplyOn": (current.get("SnapStart") or {}).get("ApplyOn", "None")},
    }
    if "Layers" in desired:
        now["Layers"] = [layer["Arn"] for layer in current.get("Layers") or []]
    return now != desired


def _wait(client: Client, waiter: str, name: str) -> None:
    with client.errors():
        client.lambda_.get_waiter(waiter).wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})


def _existing(client: Client, name: str) -> dict[str, Any] | None:
    lam = client.lambda_
    try:
        with client.errors():
            result: dict[str, Any] = lam.get_function(FunctionName=name)
            return result
    except CliError as e:
        if e.message.startswith("ResourceNotFoundException"):
            return None
        raise


def _apply_network(client: Client, fn: FunctionDef, arn: str, tags: dict[str, str], result: DeployResult) -> None:
    lam = client.lambda_
    current = tags.get(NETWORK_TAG, "nat") or "nat"
    if current == fn.network:
        return
    with client.errors():
        if fn.network != "nat":
            lam.tag_resource(Resource=arn, Tags={NETWORK_TAG: fn.network})
        else:
            lam.untag_resource(Resource=arn, TagKeys=[NETWORK_TAG])
    result.notes.append(f"network: {fn.network}")


def _apply_reserved(
    client: Client, fn: FunctionDef, declarative: bool, current: int | None, result: DeployResult
) -> None:
    lam = client.lambda_
    with client.errors():
        if fn.reserved_concurrency is not None and fn.reserved_concurrency != current:
            lam.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=fn.reserved_concurrency)
            result.notes.append(f"reserved concurrency {fn.reserved_concurrency}")
        elif fn.reserved_concurrency is None and declarative and current is not None:
            lam.delete_function_concurrency(FunctionName=fn.name)
            result.notes.append("reserved concurrency removed")


def _apply_provisioned(client: Client, fn: FunctionDef, result: DeployResult) -> None:
    if fn.provisioned_concurrency is None:
        return
    lam = client.lambda_
    with client.errors():
        version = lam.publish_version(FunctionName=fn.name)["Version"]
        try:
            lam.get_alias(FunctionName=fn.name, Name=LIVE_ALIAS)
            exists = True
        except lam.exceptions.ResourceNotFoundException:
            exists = False
        if exists:
            lam.update_alias(FunctionName=fn.name, Name=LIVE_ALIAS, FunctionVersion=version)
        else:
            lam.create_alias(FunctionName=fn.name, Name=LIVE_ALIAS, FunctionVersion=version)
        lam.put_provisioned_concurrency_config(
            FunctionName=fn.name, Qualifier=LIVE_ALIAS, ProvisionedConcurrentExecutions=fn.provisioned_concurrency
        )
    result.version = f"{version} ({LIVE_ALIAS})"
    result.notes.append(f"provisioned concurrency {fn.provisioned_concurrency} on {LIVE_ALIAS} -> {version}")


def _apply_role(client: Client, fn: FunctionDef, say: Callable[[str], None], result: DeployResult) -> str:
    """The function's execution role ARN: ``role:`` as given, else its own role made from ``policies:``."""
    if fn.role:
        return fn.role
    from squall.iam.roles import ensure_role, role_name_for

    say(f"{fn.name}: execution role {role_name_for(fn.name)}")
    with client.errors():
        arn, changed = ensure_role(client.boto("iam"), fn.name, fn.policies)
    if changed:
        n = len(fn.policies)
        result.notes.append(f"role {role_name_for(fn.name)}: {n} statement{'s' if n != 1 else ''}" if n else
                            f"role {role_name_for(fn.name)}: no permissions (declare policies: to grant some)")  # fmt: skip
    return arn


def deploy_one(
    client: Client,
    fn: FunctionDef,
    declarative: bool,
    say: Callable[[str], None],
    cache_dir: Path,
    steps: StepSink | None = None,
) -> DeployResult:
    """Build and deploy one function; ``say`` reports each step ("<name>: <what>"), ``steps`` the build's phases."""
    from squall.cli.packaging import build_package

    result = DeployResult(fn.name)
    say(f"{fn.name}: building package from {fn.code}")
    data, info = build_package(fn.code, fn.requirements, cache_dir, progress=None if steps else (
        lambda m: say(f"{fn.name}: {m}")), steps=steps)  # fmt: skip
    result.code_size, result.code_sha256 = info.size, info.code_sha256
    lam = client.lambda_
    desired = _desired_config(fn, _apply_role(client, fn, say, result))
    if fn.layers or declarative:
        desired["Layers"] = _resolve_layers(client, fn, say, cache_dir)
    say(f"{fn.name}: looking up the deployed function")
    existing = _existing(client, fn.name)
    if existing is None:
        say(f"{fn.name}: uploading {_mb(len(data))} (creating the function)")
        create: dict[str, Any] = {**desired, "FunctionName": fn.name, "Code": {"ZipFile": data}, "Publish": False}
        if fn.network != "nat":
            create["Tags"] = {NETWORK_TAG: fn.network}
        with client.errors():
            created = lam.create_function(**create)
        _wait(client, "function_active_v2", fn.name)
        result.action = "created"
        arn = created.get("FunctionArn", "")
        tags: dict[str, str] = dict(create.get("Tags") or {})
        reserved: int | None = None
    else:
        config = existing.get("Configuration", {})
        arn = config.get("FunctionArn", "")
        tags = dict(existing.get("Tags") or {})
        reserved = (existing.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
        changed: list[str] = []
        if config.get("CodeSha256") != info.code_sha256:
            say(f"{fn.name}: uploading {_mb(len(data))} (updating the code)")
            with client.errors():
                lam.update_function_code(FunctionName=fn.name, ZipFile=data)
            _wait(client, "function_updated_v2", fn.name)
            changed.append("code")
        if _config_differs(config, desired):
            say(f"{fn.name}: updating configuration")
            with client.errors():
                layers_gone: dict[str, Any] = {"Layers": []} if config.get("Layers") and "Layers" not in desired else {}
                lam.update_function_configuration(FunctionName=fn.name, **desired, **layers_gone)
            _wait(client, "function_updated_v2", fn.name)
            changed.append("configuration")
        result.action = f"updated ({' + '.join(changed)})" if changed else "unchanged"
    _apply_network(client, fn, arn, tags, result)
    _apply_reserved(client, fn, declarative, reserved, result)
    if fn.provisioned_concurrency is not None:
        say(f"{fn.name}: publishing a version for provisioned concurrency")
    _apply_provisioned(client, fn, result)
    if fn.events or declarative:
        result.notes.extend(apply_triggers(client, fn, arn, declarative, say))
    return result


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):,.1f} MB" if n >= 100 * 1024 else f"{n / 1024:,.1f} KB"


def _summary(results: list[DeployResult]) -> Table:
    table = Table(title="deployed", title_justify="left")
    table.add_column("function", style="bold")
    table.add_column("action")
    table.add_column("version")
    table.add_column("code", justify="right")
    table.add_column("notes", overflow="fold")
    for r in results:
        style = "green" if r.action == "created" else ("yellow" if r.action.startswith("updated") else "dim")
        table.add_row(r.name, Text(r.action, style), r.version, f"{r.code_size / 1024:,.1f} KB", "; ".join(r.notes))
    return table


def _summary_text(results: list[DeployResult]) -> str:
    lines = ["function\taction\tversion\tcode\tnotes"]
    for r in results:
        lines.append(f"{r.name}\t{r.action}\t{r.version}\t{r.code_size / 1024:,.1f} KB\t{'; '.join(r.notes)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    out, err = Console(), Console(stderr=True)
    functions, declarative, project = plan_project(args)
    client = make_client(args)
    cache_dir = client.data_dir / "build-cache"
    results: list[DeployResult] = []
    if project is not None:
        for warning in project.warnings:
            err.print(Text(f"warning: {warning}", "yellow"), highlight=False, soft_wrap=True)
    with DeployProgress(err) as progress:

        def say(message: str) -> None:
            name, _, what = message.partition(": ")
            progress.phase(name, what)

        if project is not None and (project.buckets or project.queues):
            progress.phase("resources", "buckets and queues")
            apply_resources(client, project)
            progress.finish("resources", f"{len(project.buckets)} bucket(s), {len(project.queues)} queue(s)")
        if project is not None and any(fn.layers for fn in functions):
            functions = publish_layers(client, project, functions, cache_dir, say)
            for arn in sorted({arn for fn in functions for arn in fn.layers if isinstance(arn, str)}):
                progress.finish(f"layer {arn.split(':')[6]}", f"version {arn.split(':')[7]}")

        for fn in functions:
            result = deploy_one(client, fn, declarative, say, cache_dir, steps=partial(progress.build, fn.name))
            progress.finish(fn.name, result.action)
            results.append(result)
    if out.is_terminal:
        out.print(_summary(results))
    else:
        print(_summary_text(results), flush=True)
    return 0
