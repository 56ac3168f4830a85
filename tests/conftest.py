"""Shared fixtures.  The helpers live in sandbox_helpers.py (importable from every test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg_helpers import PgServer, close_shared, find_pg_bin
from tests.sandbox_helpers import NodeRunner, make_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunner]:
    """One running Node per test module (starting a node costs ~100 ms)."""
    yield from make_node(tmp_path_factory)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (skips when Debian's postgresql package is not installed)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/_prereqs.sh does it)")
    server = PgServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session", autouse=True)
def _shared_pg() -> Iterator[None]:
    """Stop the suite's shared PostgreSQL (started only on the postgres backend, at first use) at the end."""
    yield
    close_shared()
