"""Three real Squall nodes on loopback: one PostgreSQL (tests.pg_helpers), three clustered nats-servers with
JetStream (squall.cluster.natsd) and three ``squall up --database-url ... --nats-url a,b,c --node-id nN`` processes
with the same admin key and the same environment-variable key.  Everything is stopped by PID at the end.

``ThreeNodes.start(root)`` returns once every node lists the three as live.  ``kill``/``restart`` a node (same
data dir, port and node id: it rejoins), ``stop_nats``/``restart_nats`` one NATS server, ``pg`` is the
PostgreSQL server (``pg.stop()``/``pg.start()`` keep its port and data).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squall.cluster.natsd import NatsCluster, nats_server_binary
from squall.scheduler.placement import rank
from tests.e2e._platform import KEY_ID, SECRET, SquallProcess, eventually, free_port, signed_get
from tests.pg_helpers import PgServer

__all__ = ["NODE_IDS", "ThreeNodes", "home_of", "metrics_text", "signed_request"]

NODE_IDS = ("n1", "n2", "n3")


def home_of(function: str, node_ids: tuple[str, ...] | list[str] = NODE_IDS) -> str:
    """The node a function's invocations go to first when no node has it warm (placement's rendezvous order)."""
    return rank(function, list(node_ids))[0]


def signed_request(base_url: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """A SigV4-signed request (service "lambda", as Squall's own API takes); (status, raw body)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=base_url + path, data=body)
    SigV4Auth(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(req)
    r = urllib.request.Request(base_url + path, data=body or None, method=method, headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metrics_text(base_url: str) -> str:
    status, body = signed_request(base_url, "GET", "/metrics")
    assert status == 200, (status, body[:300])
    return body.decode()


@dataclass
class ThreeNodes:
    root: Path
    pg: PgServer
    nats: NatsCluster
    database_url: str
    env: dict[str, str]
    nodes: list[SquallProcess] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, **env: str) -> ThreeNodes:
        """Start PostgreSQL, three NATS servers and three nodes (``env``: more settings for every node)."""
        if nats_server_binary() is None:
            raise RuntimeError("nats-server is not installed (scripts/_prereqs.sh installs Debian's nats-server)")
        t0 = time.monotonic()
        pg = PgServer().start()
        t_pg = time.monotonic()
        nats: NatsCluster | None = None
        self: ThreeNodes | None = None
        try:
            nats = NatsCluster.start(3, root=root)
            t_nats = time.monotonic()
            env_key = base64.b64encode(os.urandom(32)).decode()  # every node seals and opens env vars alike
            self = cls(root, pg, nats, pg.database("cluster"), {"SQUALL_ENV_KEY": env_key, **env})
            self.nodes = [self._process(i, free_port()) for i in range(3)]
            with ThreadPoolExecutor(3) as ex:  # at once: the schema migrations race, as on a real cluster's start
                list(ex.map(lambda p: p.start(timeout_s=120), self.nodes))
            t_nodes = time.monotonic()
            self.wait_members(3)
            print(
                f"three nodes up in {time.monotonic() - t0:.1f} s (PostgreSQL {t_pg - t0:.1f} s, NATS "
                f"{t_nats - t_pg:.1f} s, nodes {t_nodes - t_nats:.1f} s, membership {time.monotonic() - t_nodes:.1f} s)"
            )
            return self
        except BaseException:
            if self is not None:
                self.stop()
            else:
                if nats is not None:
                    nats.stop()
                pg.close()
            raise

    def _process(self, i: int, port: int) -> SquallProcess:
        return SquallProcess(
            self.root / NODE_IDS[i] / "data", port,
            args=("--database-url", self.database_url, "--nats-url", self.nats.url, "--node-id", NODE_IDS[i]),
            SQUALL_DATABASE_URL=self.database_url,  # the same as the flag (keeps the suite's PostgreSQL pass off it)
            **self.env,
        )  # fmt: skip

    # -- clients ------------------------------------------------------------------------------------------------
    def url(self, i: int) -> str:
        return self.nodes[i].url

    def client(self, i: int, service: str = "lambda", **config: Any) -> Any:
        return self.nodes[i].client(service, **config)

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.nodes) if p.proc is not None and p.proc.poll() is None]

    def cluster_status(self, i: int) -> dict[str, Any]:
        status, body = signed_get(self.url(i), "/_squall/api/cluster")
        assert status == 200, (status, body)
        return dict(body)

    def live_members(self, i: int) -> set[str]:
        try:
            return {n["node_id"] for n in self.cluster_status(i)["nodes"] if n["live"]}
        except (OSError, AssertionError):
            return set()

    def wait_members(self, n: int, timeout_s: float = 60.0) -> None:
        """Until every running node sees ``n`` live nodes."""
        for i in self.alive():
            eventually(lambda i=i: len(self.live_members(i)) == n, timeout_s, 0.1, f"node {NODE_IDS[i]} sees {n} nodes")

    # -- faults -------------------------------------------------------------------------------------------------
    def kill(self, i: int) -> float:
        """kill -9 node ``i``; returns the monotonic time of the kill."""
        rc = self.nodes[i].stop(signal.SIGKILL)
        assert rc == -signal.SIGKILL, rc
        return time.monotonic()

    def restart(self, i: int) -> SquallProcess:
        """Start node ``i`` again on its data dir, port and node id (it rejoins; it kills what a killed
        predecessor left in its cgroups)."""
        assert i not in self.alive()
        self.nodes[i] = self._process(i, self.nodes[i].port).start(timeout_s=120)
        return self.nodes[i]

    def cli(self, i: int, *args: str) -> subprocess.CompletedProcess[str]:
        """``squall <args> --endpoint <node i>`` with the admin key."""
        return subprocess.run(
            [sys.executable, "-m", "squall.cli.main", *args, "--endpoint", self.url(i)],
            env=self.nodes[i].env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the nodes (SIGTERM; a killed one is started and stopped once so it cleans up what it left), the NATS
        servers and PostgreSQL: only the processes started here, by PID."""
        for i, p in enumerate(self.nodes):
            if p.proc is not None and p.proc.returncode == -signal.SIGKILL:
                try:  # its instances may still run in its cgroups: a restart on the same data dir kills them
                    self.restart(i)
                except Exception:
                    pass
        with ThreadPoolExecutor(3) as ex:
            list(ex.map(lambda p: p.stop() if p.proc is not None else None, self.nodes))
        self.nats.stop()
        self.pg.close()


def invoke_json(lam: Any, name: str, payload: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], Any]:
    """A sync invoke; (parsed payload, the response)."""
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **kw)
    return json.loads(r["Payload"].read() or b"null"), r
