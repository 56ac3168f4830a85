"""Test helpers: a real Node running in a background event-loop thread (one per test module), and helpers to
write functions to disk, load them, start instances and invoke them from plain (sync) test functions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import tempfile
import textwrap
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

#: put into the test process's environment before any node starts: no function may ever see it
SECRET_ENV = "SQUALL_TEST_SECRET_TOKEN"
SECRET_VALUE = "s3cr3t-" + uuid.uuid4().hex
os.environ[SECRET_ENV] = SECRET_VALUE


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text, dedented) under ``root``; make everything world-readable."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    make_world_readable(root)
    return root


def make_world_readable(root: Path) -> None:
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


class NodeRunner:
    """A started :class:`squall.sandbox.node.node.Node` driven from sync code through a background event loop."""

    def __init__(self, data_dir: Path, code_root: Path, **config: Any) -> None:
        from squall.core.config import NodeConfig
        from squall.sandbox.node.node import Node

        self.data_dir = data_dir
        self.code_root = code_root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="squall-node-loop", daemon=True)
        self.thread.start()
        self.config = NodeConfig(data_dir=data_dir, **config)
        self.node = self.run(self._make(Node, self.config))
        self.run(self.node.start())
        self._names = itertools.count(1)

    @staticmethod
    async def _make(cls: Any, config: Any) -> Any:
        return cls(config)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- functions --------------------------------------------------------------------------------------------
    def write_function(self, files: dict[str, str], name: str | None = None, root: Path | None = None) -> Path:
        name = name or f"fn{next(self._names)}"
        d = (root or self.code_root) / f"{name}-{uuid.uuid4().hex[:6]}"
        return write_tree(d, files)

    def load(
        self,
        files: dict[str, str],
        *,
        name: str | None = None,
        handler: str = "app.handler",
        code_dir: Path | None = None,
        **spec: Any,
    ) -> Any:
        from squall.core.model import FunctionSpec

        name = name or f"fn{next(self._names)}"
        code = code_dir or self.write_function(files, name)
        return self.run(self.node.load(FunctionSpec(name=name, code_dir=code, handler=handler, **spec)))

    def load_learned(self, files: dict[str, str], **kw: Any) -> Any:
        """The function's *next* zygote: load it (with a code digest), start one instance (its init reports what it
        imported), wait until the zygote's background import probe answered, stop that zygote and load again: the
        new zygote pre-imports what the probe found while it loads, before any instance exists."""
        kw.setdefault("code_sha256", uuid.uuid4().hex)
        kw.setdefault("name", f"fn{next(self._names)}")
        if "code_dir" not in kw:
            kw["code_dir"] = self.write_function(files, kw["name"])
        fn = self.load(files, **kw)
        with contextlib.suppress(Exception):  # (an init that fails reports nothing: the next load is what counts)
            self.stop(self.start(fn))
        self.settle(fn)
        self.unload(fn)
        return self.load(files, **kw)

    def settle(self, fn: Any) -> None:
        """Wait (bounded) until no import probe of ``fn``'s zygote is running."""
        self.run(self.node.preimports_settled(fn))

    def unload(self, fn: Any) -> None:
        self.run(self.node.unload(fn))

    def start(self, fn: Any, init_type: str | None = None) -> Any:
        return self.run(self.node.start_instance(fn, init_type))

    def stop(self, inst: Any) -> None:
        self.run(self.node.stop_instance(inst))

    def invoke(self, inst: Any, event: Any = None, *, raw: bytes | None = None, request_id: str | None = None,
               **req: Any) -> Any:  # fmt: skip
        from squall.core.model import InvokeRequest

        body = raw if raw is not None else json.dumps({} if event is None else event).encode()
        rid = request_id or str(uuid.uuid4())
        return self.run(inst.invoke(InvokeRequest(body, request_id=rid, **req)))

    def call(self, fn: Any, event: Any = None, **req: Any) -> Any:
        """Fresh instance, one invocation, stop it; return the outcome."""
        inst = self.start(fn)
        try:
            return self.invoke(inst, event, **req)
        finally:
            self.stop(inst)

    def close(self) -> None:
        try:
            self.run(self.node.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def body(outcome: Any) -> Any:
    """The JSON payload of an invocation outcome."""
    return json.loads(outcome.payload)


def sandbox_available() -> bool:
    return os.geteuid() == 0


def make_node(tmp_path_factory: pytest.TempPathFactory, **config: Any) -> Iterator[NodeRunner]:
    if not sandbox_available():
        pytest.skip("the sandbox needs root")
    # a world-traversable base, so that paths are hidden by the sandbox and not merely by host permissions
    base = Path(tempfile.mkdtemp(prefix="squall-test-"))
    os.chmod(base, 0o755)
    data_dir = base / "data"
    data_dir.mkdir()
    code_root = data_dir / "code"  # the platform keeps code under its data dir
    code_root.mkdir()
    # a cgroup directory of its own: a node's start-up kills whatever runs in the cgroups of its name (left over by
    # a crashed node), so nodes sharing a name on one machine would kill each other's instances
    cgroup_name = config.pop("cgroup_name", f"squall-test-{uuid.uuid4().hex[:8]}")
    runner = NodeRunner(data_dir, code_root, cgroup_name=cgroup_name, **config)
    try:
        yield runner
    finally:
        runner.close()
        shutil.rmtree(base, ignore_errors=True)
        for controller in ("memory", "cpu", "pids"):
            remove_cgroup_tree(Path(f"/sys/fs/cgroup/{controller}/{cgroup_name}"))


def remove_cgroup_tree(root: Path) -> None:
    """rmdir a (process-free) cgroup hierarchy bottom-up; best effort."""
    if not root.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(Path(t[0]).parts)):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def eventually(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (bounded) until it holds; fail the test if it never does."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.01)


#: handler source: ``status()`` -> this process's /proc/self/status as a dict (for handlers that report their sandbox)
PROC_STATUS = """
def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out
"""
