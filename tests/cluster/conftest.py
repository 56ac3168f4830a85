"""Real nats-server processes with JetStream on 127.0.0.1: one (fast, a fresh one per test) or three clustered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from squall.cluster.natsd import NatsCluster, nats_server_binary
from tests.pg_helpers import find_pg_bin, shared_server


def _need_server() -> None:
    if nats_server_binary() is None:
        pytest.fail("nats-server is not installed (scripts/_prereqs.sh installs Debian's nats-server)")


@pytest.fixture
def nats1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One JetStream server, fresh for each test (it starts in well under a second)."""
    _need_server()
    cluster = NatsCluster.start(1, root=tmp_path_factory.mktemp("nats1"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three JetStream servers clustered on loopback, ready once a meta leader is elected."""
    _need_server()
    cluster = NatsCluster.start(3, root=tmp_path_factory.mktemp("nats3"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url() -> str:
    """A fresh database on the suite's shared PostgreSQL server (cluster-mode state)."""
    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed (scripts/_prereqs.sh installs Debian's postgresql)")
    return shared_server().database("cluster")
