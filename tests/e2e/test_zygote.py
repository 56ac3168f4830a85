"""Function zygotes: dependency pre-import, the thread fallback, snapshot mode and init types."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox_helpers import NodeRunner, body, eventually

FAKEDEP = {
    "fakedep/__init__.py": """
        import os
        IMPORTED_IN = [os.getpid(), os.getuid()]
        IMPORTS = 0
        IMPORTS += 1
        def answer():
            return 42
    """,
    "fakedep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fakedep\nVersion: 1.0\n",
    "fakedep-1.0.dist-info/RECORD": "",
    "app.py": """
        import os
        import fakedep
        HANDLER_MODULE_INIT_PID = os.getpid()
        HANDLER_INITS = 0
        HANDLER_INITS += 1
        print("handler module init")
        def handler(event, context):
            return {"answer": fakedep.answer(), "dep_imported_in": fakedep.IMPORTED_IN, "dep_imports": fakedep.IMPORTS,
                    "handler_init_pid": HANDLER_MODULE_INIT_PID, "handler_inits": HANDLER_INITS, "pid": os.getpid()}
    """,
}


@pytest.fixture(scope="module")
def fakedep_fn(node: NodeRunner) -> Any:
    return node.load_learned(FAKEDEP, name="withdep")


def test_vendored_dependency_is_preloaded(node: NodeRunner, fakedep_fn: Any) -> None:
    assert "fakedep" in fakedep_fn.preloaded
    assert "app" not in fakedep_fn.preloaded  # the user's own module is never pre-imported
    assert fakedep_fn.report["threads"] == 1
    assert fakedep_fn.report.get("warnings") == []
    out = body(node.call(fakedep_fn))
    assert out["answer"] == 42
    # the dependency was imported once, in the zygote (PID 1 of its own PID namespace, root of the function's user
    # namespace), and inherited by the instance (PID 1 of a namespace nested in the zygote's, another uid)
    assert out["dep_imported_in"] == [1, 0]
    assert out["dep_imports"] == 1
    assert out["pid"] == 1


def test_handler_module_runs_per_instance(node: NodeRunner, fakedep_fn: Any) -> None:
    a, b = node.start(fakedep_fn), node.start(fakedep_fn)
    try:
        oa = [node.invoke(a), node.invoke(a)]
        ob = node.invoke(b)
    finally:
        node.stop(a)
        node.stop(b)
    for out in [*oa, ob]:
        res = body(out)
        assert res["handler_init_pid"] == 1  # the handler module was imported in the instance, not the zygote
        assert res["handler_inits"] == 1
    # its init output belongs to each instance's first invocation
    assert "handler module init" in oa[0].logs
    assert "handler module init" not in oa[1].logs
    assert "handler module init" in ob.logs


THREADED = {
    "threaddep/__init__.py": """
        import threading, time
        threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
    """,
    "threaddep-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: threaddep\nVersion: 2.0\n",
    "app.py": """
        import threading
        import threaddep
        def handler(event, context):
            return {"threads": threading.active_count(), "n": event.get("n")}
    """,
}


def test_dependency_with_threads_falls_back(node: NodeRunner) -> None:
    fn = node.load_learned(THREADED, name="threaded")
    assert fn.preloaded == []
    assert any("thread" in w for w in fn.report["warnings"]), fn.report
    assert fn.report["threads"] == 1  # the zygote that serves forks has no threads
    inst = node.start(fn)
    try:
        for n in range(3):
            out = node.invoke(inst, {"n": n})
            assert out.ok, out.payload
            assert body(out) == {"threads": 2, "n": n}  # the dependency's thread runs in the instance
    finally:
        node.stop(inst)


def test_preload_argument_is_honoured(node: NodeRunner) -> None:
    fn = node.run(node.node.load(_spec(node, FAKEDEP, "explicit-preload"), preload=["json", "fakedep"]))
    assert fn.preloaded == ["json", "fakedep"]
    assert "probe" not in fn.report  # no probe when told what to pre-import
    assert body(node.call(fn))["answer"] == 42


def _spec(node: NodeRunner, files: dict[str, str], name: str, **kw: Any) -> Any:
    from squall.core.model import FunctionSpec

    return FunctionSpec(name=name, code_dir=node.write_function(files, name), handler="app.handler", **kw)


SNAP = {
    "app.py": """
        import os, random
        from snapshot_restore_py import register_after_restore, register_before_snapshot
        STATE = {"module_init_pid": [os.getpid(), os.getuid()], "before": [], "after": [],
                 "seed_at_init": random.random()}

        @register_before_snapshot
        def before():
            STATE["before"].append([os.getpid(), os.getuid()])

        def after(tag):
            STATE["after"].append([tag, os.getpid(), os.getuid() != 0])

        register_after_restore(after, "restored")

        def handler(event, context):
            return {**STATE, "rand": random.random(), "itype": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
                    "pid": os.getpid()}
    """
}


@pytest.fixture(scope="module")
def snap_fn(node: NodeRunner) -> Any:
    return node.load(SNAP, name="snap", snapshot=True)


def test_snapshot_hooks(node: NodeRunner, snap_fn: Any) -> None:
    assert snap_fn.snapshot is True
    a, b = node.start(snap_fn), node.start(snap_fn)
    try:
        ra1, ra2 = body(node.invoke(a)), body(node.invoke(a))
        rb = body(node.invoke(b))
    finally:
        node.stop(a)
        node.stop(b)
    for r in (ra1, ra2, rb):
        # init and the before-snapshot hook ran once, in the zygote (PID 1 of its namespace, uid 0 in its user
        # namespace)
        assert r["module_init_pid"] == [1, 0]
        assert r["before"] == [[1, 0]]
        # the after-restore hook ran once per instance, inside it (PID 1, an unprivileged uid), with its arguments
        assert r["after"] == [["restored", 1, True]]
        assert r["pid"] == 1
        assert r["itype"] == "snap-start"
    assert a.init_type == b.init_type == "snap-start"
    # random state is reseeded per instance, not cloned from the snapshot
    assert ra1["rand"] != rb["rand"]
    assert ra1["seed_at_init"] == rb["seed_at_init"]  # (what was computed at init is shared, as on Lambda)


def test_snapshot_restore_is_fast_init(node: NodeRunner, snap_fn: Any) -> None:
    inst = node.start(snap_fn)
    try:
        out = node.invoke(inst)
    finally:
        node.stop(inst)
    assert out.ok
    assert out.init_ms is not None
    assert "Init Duration:" in out.logs


def test_snapshot_init_failure_falls_back(node: NodeRunner) -> None:
    files = {
        "app.py": """
            from snapshot_restore_py import register_before_snapshot
            def boom():
                raise RuntimeError("cannot snapshot")
            register_before_snapshot(boom)
            def handler(event, context):
                return "served"
        """
    }
    fn = node.load(files, name="badsnap", snapshot=True)
    assert fn.snapshot is False
    assert any("snapshot init failed" in w for w in fn.report["warnings"]), fn.report
    out = node.call(fn)
    assert out.ok
    assert body(out) == "served"


@pytest.mark.parametrize("init_type", ["provisioned-concurrency", "on-demand"])
def test_init_type_env(node: NodeRunner, init_type: str) -> None:
    fn = node.load(
        {"app.py": "import os\ndef handler(e, c):\n    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"}
    )
    inst = node.start(fn, init_type=init_type)
    try:
        assert inst.init_type == init_type
        assert body(node.invoke(inst)) == init_type
    finally:
        node.stop(inst)


def test_unload_kills_instances_and_zygote(node: NodeRunner) -> None:
    from pathlib import Path

    fn = node.load({"app.py": "def handler(e, c):\n    return 1\n"})
    inst = node.start(fn)
    assert body(node.invoke(inst)) == 1
    node.unload(fn)
    assert not inst.alive

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(") ", 1)[1].startswith("Z")  # a zombie is dead
        except FileNotFoundError:
            return True

    eventually(lambda: gone(fn.pid), what=f"zygote {fn.pid} gone after unload")
    if fn.kill_cgroup is not None:  # the node's own view: nothing left in the function's cgroup (then removed)
        eventually(lambda: not Path(fn.kill_cgroup, "cgroup.events").exists(), what="function cgroup removed")
    assert fn.spec.key not in node.node.functions


@pytest.mark.slow
def test_unload_removes_function_cgroups(node: NodeRunner) -> None:
    fn = node.load({"app.py": "def handler(e, c):\n    return 1\n"})
    if not fn.cgroups:
        pytest.skip("no cgroups")
    inst = node.start(fn)
    assert body(node.invoke(inst)) == 1
    node.unload(fn)
    from pathlib import Path

    eventually(lambda: not any(Path(d).exists() for d in fn.cgroups.values()), timeout=3, what="fn cgroups removed")


def test_a_load_reports_where_its_time_went_and_prepares_the_first_instance_slot(node: NodeRunner) -> None:
    """The load report splits the zygote's load (the node's side, the base zygote's clone and the child's set-up as
    host root, the zygote's own phases); the first instance's slot cgroups are made during the load, the import
    probe's slot 0 only when a probe runs."""
    from pathlib import Path

    fn = node.load({"app.py": "def handler(e, c):\n    return 1\n"})
    try:
        rep = fn.report
        assert {"cgroups", "before_clone", "clone", "total", "base_clone"} <= set(rep["node_ms"]), rep["node_ms"]
        if node.node.caps.userns:
            assert {"base_child_setup", "base_id_maps"} <= set(rep["node_ms"]), rep["node_ms"]
        assert all(v >= 0 for v in rep["node_ms"].values())
        for phase in ("cgroups", "mounts", "userns", "runtime", "lockdown", "preload", "freeze"):
            assert phase in rep["phases"], rep["phases"]
        if fn.cgroups:
            mem = Path(fn.cgroups.get("memory") or fn.cgroups["unified"])
            assert (mem / "i1").is_dir()  # the first instance's (fn.take_slot() gives 1 first)
            assert not (mem / "i0").exists()  # no probe here (no code digest): no probe slot
            assert 1 in fn.cg.limits
        inst = node.start(fn)
        try:
            assert inst.slot == 1 and body(node.invoke(inst)) == 1
        finally:
            node.stop(inst)
    finally:
        node.unload(fn)
