"""Local nats-server processes with JetStream, for tests, benches and trying cluster mode on one machine.

``NatsCluster.start(n)`` runs ``n`` servers on 127.0.0.1 (free ports, a temp store dir each), clustered when
``n > 1``, and returns once JetStream answers with a meta leader (a stream can then be created with ``n``
replicas).  ``stop()`` ends only the processes it started, by pid.  The binary is Debian's ``nats-server``
(``SQUALL_NATS_SERVER`` names another).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsCluster", "NatsServer", "free_port", "nats_server_binary"]

#: the largest message the local servers take: Lambda's 6 MB sync payload and its headers fit
MAX_PAYLOAD = 8 * 1024 * 1024


def nats_server_binary() -> str | None:
    """``SQUALL_NATS_SERVER``, else ``nats-server`` on the PATH, else Debian's /usr/sbin/nats-server (not on the
    PATH of non-root users)."""
    found = os.environ.get("SQUALL_NATS_SERVER") or shutil.which("nats-server")
    if found is None and os.access("/usr/sbin/nats-server", os.X_OK):
        found = "/usr/sbin/nats-server"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def start(self, binary: str) -> None:
        log = open(self.store_dir.parent / f"{self.name}.log", "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log, start_new_session=True)
        log.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process this object started (SIGKILL by default) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def jsz(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/jsz", timeout=2) as r:
            return dict(json.loads(r.read()))


@dataclass
class NatsCluster:
    servers: list[NatsServer] = field(default_factory=list)
    root: Path | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """All servers, comma-separated (the form ``--nats-url`` takes)."""
        return ",".join(self.urls)

    @classmethod
    def start(cls, n: int = 1, *, timeout_s: float = 60.0, root: Path | None = None) -> NatsCluster:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server not found: apt-get install nats-server (or set SQUALL_NATS_SERVER)")
        base = Path(tempfile.mkdtemp(prefix="squall-nats-", dir=root))
        self = cls(root=base)
        ports = [(free_port(), free_port(), free_port()) for _ in range(n)]
        for i, (cp, clp, mp) in enumerate(ports):
            name = f"n{i + 1}"
            store = base / name
            store.mkdir()
            routes = ", ".join(f"nats-route://127.0.0.1:{p[1]}" for j, p in enumerate(ports) if j != i)
            cluster = (
                f"cluster {{\n  name: squall\n  listen: 127.0.0.1:{clp}\n  routes: [{routes}]\n}}\n" if n > 1 else ""
            )
            conf = base / f"{name}.conf"
            conf.write_text(
                f"server_name: {name}\nlisten: 127.0.0.1:{cp}\nhttp: 127.0.0.1:{mp}\n"
                f"max_payload: {MAX_PAYLOAD}\n"
                f'jetstream {{\n  store_dir: "{store}"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n' + cluster
            )
            self.servers.append(NatsServer(name, cp, clp, mp, store, conf))
        for s in self.servers:
            s.start(binary)
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float = 60.0, servers: list[NatsServer] | None = None) -> None:
        """Until every given server (default: all) reports JetStream with a meta leader."""
        deadline = time.monotonic() + timeout_s
        pending = list(servers or self.servers)
        while pending:
            s = pending[0]
            if s.proc is not None and s.proc.poll() is not None:
                raise RuntimeError(f"nats-server {s.name} exited with {s.proc.returncode}; see {s.conf.parent}")
            try:
                info = s.jsz()
                meta = info.get("meta_cluster")
                ready = len(self.servers) == 1 or (isinstance(meta, dict) and bool(meta.get("leader")))
            except OSError:
                ready = False
            if ready:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {s.name}: no JetStream meta leader after {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for s in self.servers:
            s.kill(signal.SIGTERM)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
