"""``squall deploy PATH``: build packages and create or update functions through the Lambda API.

PATH is a function's code directory (one function: name from the directory, handler guessed from ``app.py`` or
``lambda_function.py``, overridable with flags), or a ``squall.yaml`` project file, or a directory holding one
(every function of the project, or only ``--name``).  Each package is built like ``sam build`` does
(``squall.packaging.build_package``, dependencies cached in ``<data dir>/build-cache``), then:

1. CreateFunction, or UpdateFunctionCode (only when the zip changed) and UpdateFunctionConfiguration (only when
   the configuration changed), waiting for the update to finish in between;
2. network mode through the tag ``squall:network`` and snapshot mode through ``SnapStart``;
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
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from squall.cli.client import ROLE_ARN, Client, CliError, add_connection_args, make_client
from squall.cli.triggers import apply_triggers
from squall.project import PROJECT_FILE, FunctionDef, load_project

__all__ = ["DeployResult", "add_parser", "plan", "run"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
NETWORK_TAG = "squall:network"
LIVE_ALIAS = "live"
_HANDLER_GUESSES = (("app.py", "app.handler"), ("lambda_function.py", "lambda_function.lambda_handler"))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy", help="build and deploy a function directory or a squall.yaml project")
    p.add_argument("path", type=Path, help="a function's code directory, a squall.yaml file, or a directory with one")
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
    path: Path = args.path.expanduser()
    if not path.exists():
        raise CliError(f"{path} does not exist: pass a function directory or a {PROJECT_FILE} file")
    project_file: Path | None = None
    if path.is_file():
        if path.suffix not in (".yaml", ".yml"):
            raise CliError(f"{path} is a file: pass a function directory or a {PROJECT_FILE} file")
        project_file = path
    elif (path / PROJECT_FILE).is_file():
        project_file = path / PROJECT_FILE
    if project_file is not None:
        flags = [f for f, v in (("--handler", args.handler), ("--memory", args.memory), ("--timeout", args.timeout),
                                ("--env", args.env)) if v]  # fmt: skip
        if flags:
            raise CliError(f"{', '.join(flags)} cannot be combined with {project_file}: set them in the file")
        project = load_project(project_file)
        if args.name:
            return [project.function(args.name)], True
        return list(project.functions.values()), True

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
    return [fn], False


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


def _desired_config(fn: FunctionDef) -> dict[str, Any]:
    return {
        "Role": ROLE_ARN,
        "Runtime": _runtime(),
        "Handler": fn.handler,
        "MemorySize": fn.memory,
        "Timeout": fn.timeout,
        "Environment": {"Variables": dict(fn.environment)},
        "EphemeralStorage": {"Size": fn.ephemeral_storage},
        "SnapStart": {"ApplyOn": "PublishedVersions" if fn.snapshot else "None"},
    }


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


def deploy_one(
    client: Client, fn: FunctionDef, declarative: bool, say: Callable[[str], None], cache_dir: Path
) -> DeployResult:
    """Build and deploy one function; ``say`` reports each step."""
    from squall.packaging import build_package

    result = DeployResult(fn.name)
    say(f"{fn.name}: building package from {fn.code}")
    data, info = build_package(fn.code, fn.requirements, cache_dir, progress=lambda m: say(f"{fn.name}: {m}"))
    result.code_size, result.code_sha256 = info.size, info.code_sha256
    lam = client.lambda_
    desired = _desired_config(fn)
    say(f"{fn.name}: looking up the deployed function")
    existing = _existing(client, fn.name)
    if existing is None:
        say(f"{fn.name}: creating function")
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
            say(f"{fn.name}: updating code")
            with client.errors():
                lam.update_function_code(FunctionName=fn.name, ZipFile=data)
            _wait(client, "function_updated_v2", fn.name)
            changed.append("code")
        if _config_differs(config, desired):
            say(f"{fn.name}: updating configuration")
            with client.errors():
                lam.update_function_configuration(FunctionName=fn.name, **desired)
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


def run(args: argparse.Namespace) -> int:
    out, err = Console(), Console(stderr=True)
    functions, declarative = plan(args)
    client = make_client(args)
    cache_dir = client.data_dir / "build-cache"
    results: list[DeployResult] = []
    with err.status("deploying ...") as status:

        def say(message: str) -> None:
            status.update(message)
            if not err.is_terminal:
                err.print(Text(message, "dim"), highlight=False)

        for fn in functions:
            result = deploy_one(client, fn, declarative, say, cache_dir)
            err.print(Text.assemble(("✓ ", "green"), (fn.name, "bold"), f" {result.action}"), highlight=False)
            results.append(result)
    out.print(_summary(results))
    return 0
