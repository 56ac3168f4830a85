"""Shared fixtures, and the PostgreSQL variants of the store-backed modules.  The helpers live in sandbox_helpers.py
(importable from every test module).

``SQUALL_TEST_BACKEND=both`` (what scripts/test.sh sets) collects each module of :data:`POSTGRES_PASS` twice: as
itself (on SQLite) and as ``<path>[postgres]``, a second module node whose selected tests run with the store on the
suite's PostgreSQL (its module-scoped servers start again, on a database of their own).  The two are separate work
units for pytest-xdist's ``--dist loadfile`` (its unit is the node id's part before the first ``::``), so the
PostgreSQL pass runs on the workers alongside everything else instead of as a second pytest run after it.
``SQUALL_TEST_BACKEND=postgres`` runs every test on PostgreSQL (and no variants); ``sqlite`` (the default for a bare
``pytest``) only the first.  One variant alone: ``SQUALL_TEST_BACKEND=postgres pytest tests/contract/test_s3_api.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.nodeid import NodeId

from tests.pg_helpers import BACKEND_ENV, PgServer, backend_setting, close_shared, find_pg_bin
from tests.sandbox_helpers import NodeRunner, make_node

#: the modules that also run on PostgreSQL (cluster mode's state layer): the contract suites and the store-backed
#: e2e modules.  Value: None for every test of the module, else the substrings of the test names to keep (the
#: rest touches no store: the sandbox and HTTP behaviour in test_platform and test_function_urls)
POSTGRES_PASS: dict[str, tuple[str, ...] | None] = {
    "tests/contract/test_lambda_control.py": None,
    "tests/contract/test_sqs_api.py": None,
    "tests/contract/test_s3_api.py": None,
    "tests/contract/test_s3_presign_post.py": None,
    "tests/contract/test_iam_api.py": None,
    "tests/e2e/test_schedule_api.py": None,
    "tests/e2e/test_event_source_mappings.py": None,
    "tests/e2e/test_function_urls.py": ("url_config_crud", "routes", "deleting_function"),
    "tests/e2e/test_storage_events_durable.py": None,
    "tests/e2e/test_platform.py": ("records", "async_retries", "weighted_alias", "reserved_concurrency"),
}
#: left out on PostgreSQL to keep it short: the AWS CLI's own parsing (no store behaviour of its own) and restarts of a
#: server whose state PostgreSQL keeps (the storage-event kill test still restarts on it; tests/e2e/test_postgres.py
#: has the PostgreSQL-only promises)
NOT_ON_POSTGRES = ("aws_cli", "cli_v1", "mappings_survive", "iam_survives", "restart", "oldest_first")


def on_postgres(module: str, test_name: str) -> bool:
    """Whether test ``test_name`` (with its parameters) of ``module`` (a path from the root) has a PostgreSQL run."""
    name = test_name.lower()
    keep = POSTGRES_PASS.get(module, ())
    if keep is not None and not any(k in name for k in keep):
        return False
    return not any(k in name for k in NOT_ON_POSTGRES)


class PostgresModule(pytest.Module):
    """A module of :data:`POSTGRES_PASS` again, under the node id ``<path>[postgres]``: its selected tests only."""

    def collect(self) -> Any:
        module = self.nodeid.removesuffix("[postgres]")
        return [n for n in super().collect() if not isinstance(n, pytest.Function) or on_postgres(module, n.name)]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if backend_setting() != "both" or file_path.suffix != ".py":
        return None
    rel = file_path.relative_to(parent.config.rootpath).as_posix()
    if rel not in POSTGRES_PASS:
        return None
    return PostgresModule.from_parent(parent, path=file_path, nodeid=NodeId(path=rel + "[postgres]"))


#: the modules that take longest, longest first (test time of each, measured with ``--durations``/junit on the 2-core
#: machine, 2026-12-03).  They are collected first so that pytest-xdist, which hands out whole modules in collection
#: order (scripts/test.sh passes --no-loadscope-reorder), starts them first and no long module is left for the end
#: while the other workers are idle.  Modules not listed follow in their usual order; a stale list costs time, never
#: a test.
LONGEST_FIRST = (
    "tests/cluster/test_cluster_faults.py",
    "tests/cluster/test_three_nodes.py",
    "tests/cluster/test_spread.py",
    "tests/cluster/test_outbox_cluster.py",
    "tests/cluster/test_forwarding.py",
    "tests/e2e/test_readme.py",
    "tests/e2e/test_postgres.py",
    "tests/cluster/test_squall_on_nats.py",
    "tests/e2e/cli/test_invoke.py",
    "tests/e2e/cli/test_deploy.py",
    "tests/e2e/cli/test_errors.py",
    "tests/e2e/test_account_and_keys.py",
    "tests/e2e/test_layers_runtime_api.py",
    "tests/e2e/cli/test_logs.py",
    "tests/e2e/test_deploy_templates.py",
    "tests/e2e/test_platform.py",
    "tests/unit/test_packaging.py",
    "tests/e2e/test_data_at_rest.py",
    "tests/contract/test_s3_api.py",
    "tests/unit/test_series.py",
    "tests/e2e/test_observability.py",
    "tests/contract/test_iam_api.py",
    "tests/e2e/test_learned_preimport.py",
    "tests/e2e/test_network.py",
    "tests/e2e/test_event_source_mappings.py",
    "tests/e2e/test_crash_recovery.py",
    "tests/e2e/test_storage_events_durable.py",
    "tests/e2e/test_http_fidelity.py",
    "tests/e2e/test_dashboard.py",
    "tests/e2e/test_edge_limits.py",
    "tests/e2e/test_execution_roles.py",
    "tests/e2e/test_storage_events_durable.py[postgres]",
    "tests/e2e/test_event_source_mappings.py[postgres]",
    "tests/contract/test_s3_api.py[postgres]",
    "tests/e2e/test_keep_alive_policy.py",
    "tests/e2e/test_zygote_sandbox.py",
    "tests/e2e/test_thumbnails.py",
    "tests/e2e/test_retention_live.py",
    "tests/e2e/test_platform.py[postgres]",
    "tests/contract/test_iam_api.py[postgres]",
    "tests/e2e/test_s3_form_upload.py",
    "tests/e2e/test_sqs_record_md5.py",
    "tests/e2e/test_schedule_api.py",
    "tests/e2e/test_schedule_api.py[postgres]",
    "tests/contract/test_protocol.py",
    "tests/e2e/test_function_urls.py",
    "tests/e2e/test_function_urls.py[postgres]",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of :data:`LONGEST_FIRST` first, in its order (a stable sort: each module's tests keep theirs)."""
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="module", autouse=True)
def _store_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a :class:`PostgresModule`, ``backend()`` says postgres from before its first fixture until after its last."""
    if not isinstance(request.node, PostgresModule):
        yield
        return
    before = os.environ.get(BACKEND_ENV)
    os.environ[BACKEND_ENV] = "postgres"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BACKEND_ENV, None)
        else:
            os.environ[BACKEND_ENV] = before


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
