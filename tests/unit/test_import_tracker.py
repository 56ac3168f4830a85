"""ImportTracker: the modules an instance imported since it started, in import order, without touching the others."""

from __future__ import annotations

import sys
import types
import uuid
from collections.abc import Iterator

import pytest

from squall.sandbox.runtime.imports import ImportTracker


@pytest.fixture
def names() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for n in made:
        sys.modules.pop(n, None)


def _add(names: list[str], name: str) -> str:
    full = f"{name}_{uuid.uuid4().hex[:8]}"
    sys.modules[full] = types.ModuleType(full)
    names.append(full)
    return full


def test_reports_new_modules_in_import_order_once(names: list[str]) -> None:
    before = _add(names, "before")
    t = ImportTracker("handlermod")
    assert t.new() == []
    a, b = _add(names, "deps_a"), _add(names, "deps_b")
    assert t.new() == [a, b]
    assert t.new() == []
    c = _add(names, "deps_c")
    assert t.new() == [c]
    assert before not in t.new()


def test_the_functions_own_module_is_not_a_dependency(names: list[str]) -> None:
    t = ImportTracker("mine")
    sys.modules["mine"] = types.ModuleType("mine")
    names.append("mine")
    dep = _add(names, "dep")
    assert t.new() == [dep]


def test_a_removed_mark_reports_nothing_then_resumes(names: list[str]) -> None:
    mark = _add(names, "mark")
    t = ImportTracker("handlermod")
    del sys.modules[mark]
    _add(names, "lost")  # (cannot be told apart from what was there before: not reported)
    assert t.new() == []
    after = _add(names, "after")
    assert t.new() == [after]


def test_after_invoke_stops_looking(names: list[str]) -> None:
    t = ImportTracker("handlermod", invocations=1)
    dep = _add(names, "dep")
    assert t.after_invoke() == [dep]
    _add(names, "later")
    assert t.after_invoke() is None
