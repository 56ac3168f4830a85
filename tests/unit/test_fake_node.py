"""The fake node keeps the real node's interface: the methods the pool calls have the same parameters, and are
coroutines on both; the instance methods the invoker calls too.  (Its behaviour is exercised by the shells' tests,
test_pool_shell.py and test_invoker_shell.py.)"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from squall.sandbox.fake import FakeInstance, FakeNode
from squall.sandbox.node.instance import Instance
from squall.sandbox.node.node import Node


def shape(method: Callable[..., object]) -> tuple[bool, list[tuple[str, inspect._ParameterKind, bool]]]:
    sig = inspect.signature(method)
    params = [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in sig.parameters.values()]
    return inspect.iscoroutinefunction(method), params


@pytest.mark.parametrize("name", ["load", "start_instance", "stop_instance", "unload"])
def test_node_methods_match(name: str) -> None:
    assert shape(getattr(FakeNode, name)) == shape(getattr(Node, name))


def test_instance_invoke_matches() -> None:
    assert shape(FakeInstance.invoke) == shape(Instance.invoke)
