"""The cluster's change log on a real PostgreSQL: two nodes' connections append, each reads what came after its
cursor in commit order, ids never appear below a cursor already passed, and a reader left behind by pruning is told
up to where it missed changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from squall.cluster.changes import ChangeLog
from squall.store.db import PgTarget
from tests.pg_helpers import find_pg_bin, shared_server


@pytest.fixture
def logs() -> Iterator[tuple[ChangeLog, ChangeLog]]:
    if find_pg_bin() is None:
        pytest.fail("PostgreSQL is not installed (scripts/_prereqs.sh installs Debian's postgresql)")
    url = shared_server().database("changes")
    a, b = ChangeLog(PgTarget(url, "cluster_changes")), ChangeLog(PgTarget(url, "cluster_changes"))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_appends_from_two_nodes_are_read_in_order_after_the_cursor(logs: tuple[ChangeLog, ChangeLog]) -> None:
    a, b = logs
    start = b.last_id()
    first = a.append("a", "function", "fn", "$LATEST")
    second = a.append("a", "iam", "", "")
    rows, gap = b.since(start)
    assert [(c.id, c.node, c.kind, c.name) for c in rows] == [(first, "a", "function", "fn"), (second, "a", "iam", "")]
    assert gap == 0
    assert b.since(second) == ([], 0)
    assert a.last_id() == b.last_id() == second


def test_concurrent_appends_never_land_below_a_cursor_already_read(logs: tuple[ChangeLog, ChangeLog]) -> None:
    """Writers on two connections while a reader follows: every id is read once, none skipped (the writers take the
    store's advisory lock, so ids commit in order)."""
    a, b = logs
    reader = ChangeLog(PgTarget(a._conn.url, "cluster_changes"))  # type: ignore[attr-defined]
    written: list[int] = []
    lock = threading.Lock()

    def write(log: ChangeLog, node: str) -> None:
        for i in range(50):
            n = log.append(node, "function", f"f{i}", "$LATEST")
            with lock:
                written.append(n)

    threads = [threading.Thread(target=write, args=(x, n)) for x, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    seen: list[int] = []
    cursor = 0
    while True:
        writing = any(t.is_alive() for t in threads)  # before the read: a row committed after it is read next time
        rows, _ = reader.since(cursor)
        for c in rows:
            assert c.id > cursor
            cursor = c.id
            seen.append(c.id)
        if not writing and not rows:
            break
    for t in threads:
        t.join()
    reader.close()
    assert sorted(seen) == sorted(written) and len(seen) == 100, sorted(set(written) - set(seen))


def test_a_reader_behind_pruned_rows_is_told_up_to_where(logs: tuple[ChangeLog, ChangeLog]) -> None:
    a, b = logs
    behind = b.last_id()
    ids = [a.append("a", "function", f"f{i}", "$LATEST") for i in range(3)]
    assert a.prune(retain_s=-1) == 3  # everything is older than "now + 1 s"
    rows, upto = b.since(behind)
    assert rows == [] and upto == ids[-1]
    assert b.since(ids[-1]) == ([], 0)  # a reader that had read them is not told anything
    assert b.last_id() == ids[-1]  # a node starting now begins after the pruned ones
    later = a.append("a", "esm", "uuid-1", "")
    rows, upto = b.since(ids[-1])
    assert [c.id for c in rows] == [later] and upto == 0
