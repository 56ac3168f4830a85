"""Shared fixtures.  The helpers live in sandbox_helpers.py (importable from every test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox_helpers import NodeRunner, make_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    """One running Node per test module (starting a node costs ~100 ms)."""
    yield from make_node(tmp_path_factory)
