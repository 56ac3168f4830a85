"""The client commands of ``squall`` (everything but ``up``), one module per noun:

* ``squall deploy PATH``            build and deploy a function directory or a squall.yaml project (deploy.py)
* ``squall invoke NAME``            invoke a function, sync or ``--async`` (invoke.py)
* ``squall logs NAME``              logs, ``--follow`` to keep watching (logs.py)
* ``squall functions ls|show|rm``   what is deployed (functions.py)
* ``squall invocations ls|show``    invocation records (invocations.py)
* ``squall usage``                  cost and break-even (usage.py)
* ``squall cluster status``         cluster nodes, load, warm instances (cluster.py)

``squall.cli.main`` calls ``add_parsers``; errors reach it as ``SquallError``s with one-line messages.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from squall.cli import cluster, deploy, functions, invocations, invoke, logs, usage
from squall.cli.client import CliError

__all__ = ["add_parsers"]

_NOUNS = (deploy, invoke, logs, functions, invocations, usage, cluster)


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; botocore errors that escaped a module become one-line CliErrors."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ImportError as e:
            raise CliError(
                f"missing dependency: {e.name or e} (install squall with its test extras or pip install boto3)"
            ) from None
        except Exception as e:
            module = type(e).__module__ or ""
            if module.startswith(("botocore", "boto3")):
                from squall.cli.client import aws_errors

                endpoint = getattr(args, "endpoint", None) or "the server"
                try:
                    with aws_errors(str(endpoint)):
                        raise e
                except CliError as translated:
                    raise translated from None
            raise

    return run


def _wrap_all(parser: argparse.ArgumentParser) -> None:
    func: Any = parser.get_default("func")
    if func is not None:
        parser.set_defaults(func=_guarded(func))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _wrap_all(child)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add deploy, invoke, logs, functions, invocations and usage to ``squall``'s subcommands."""
    for noun in _NOUNS:
        before = set(sub.choices)
        noun.add_parser(sub)
        for name in set(sub.choices) - before:
            _wrap_all(sub.choices[name])
