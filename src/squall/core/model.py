"""Frozen value types shared by the node, the invoker and the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FunctionSpec",
    "InitType",
    "InvokeOutcome",
    "InvokeRequest",
    "NetworkMode",
    "function_arn",
]

#: "nat" (default): own namespace, outside world through NAT plus the platform endpoint, nothing host-local;
#: "none": own empty namespace (loopback only); "host": the host's network namespace (unsafe, explicit opt-in)
NetworkMode = Literal["nat", "none", "host"]
InitType = Literal["on-demand", "provisioned-concurrency", "snap-start"]


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


@dataclass(frozen=True)
class FunctionSpec:
    """What the node needs to run one version of a function."""

    name: str
    code_dir: Path
    handler: str  # "module.func" (module may be dotted: "pkg/mod.func" or "pkg.mod.func")
    version: str = "$LATEST"
    memory_mb: int = 128
    timeout_s: float = 3.0
    environment: dict[str, str] = field(default_factory=dict)
    network: NetworkMode = "nat"
    tmp_mb: int = 512
    snapshot: bool = False
    region: str = "us-east-1"
    account_id: str = "000000000000"
    #: digest of the code, so the node can cache the import probe
    code_sha256: str = ""
    #: "python3.x", or a custom runtime ("provided.al2023", "provided.al2"): the zip's ``bootstrap`` then runs
    #: behind the Lambda Runtime API (squall.sandbox.runtime.runtime_api)
    runtime: str = "python3.11"
    #: the extracted trees of the function's layers, in order: merged under /opt, later layers overriding earlier
    layers: tuple[Path, ...] = ()

    @property
    def key(self) -> str:
        """Identity of this loaded version inside a node."""
        return f"{self.name}:{self.version}:{self.code_sha256}"

    @property
    def arn(self) -> str:
        return function_arn(self.region, self.account_id, self.name)


@dataclass(frozen=True)
class InvokeRequest:
    payload: bytes
    request_id: str
    invoked_arn: str = ""
    trace_id: str = ""
    client_context: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    traceparent: str = ""


@dataclass(frozen=True)
class InvokeOutcome:
    """The result of one invocation, as the node saw it."""

    request_id: str
    payload: bytes  # the JSON response, or the JSON error document when error_type is set
    error_type: str | None  # None on success; "Unhandled"-class errors carry the Lambda errorType
    duration_ms: float
    billed_ms: int
    init_ms: float | None  # set on cold starts
    max_memory_mb: int
    memory_mb: int
    logs: str  # START ... REPORT
    cold: bool
    instance_id: str = ""

    @property
    def ok(self) -> bool:
        return self.error_type is None
