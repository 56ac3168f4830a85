"""Every knob, its default and its unit, in one place.  docs/config.md is the table of these."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NodeConfig", "default_data_dir"]


def default_data_dir() -> Path:
    return Path(os.environ.get("SQUALL_DATA_DIR", str(Path.home() / ".squall")))


@dataclass(frozen=True)
class NodeConfig:
    """Knobs of one node: the sandbox and its limits."""

    #: where code, logs and state live
    data_dir: Path = field(default_factory=default_data_dir)
    #: host uid of the first function's user namespace; function N gets [base + N*65536, +65536)
    uid_base: int = 200_000
    #: uid (inside the function's user namespace) of the first instance; instance k gets uid_first + k
    instance_uid_first: int = 1000
    #: processes/threads an instance may hold at once (fork-bomb guard; cgroup pids.max and RLIMIT_NPROC)
    pids_max: int = 256
    #: open files per instance (RLIMIT_NOFILE)
    nofile_max: int = 4096
    #: default size of an instance's private /tmp in MB (Lambda's default ephemeral storage)
    tmp_mb_default: int = 512
    #: CPU shares of a 1769 MB instance (Lambda gives one vCPU at 1769 MB); shares scale with memory
    cpu_shares_per_vcpu: int = 1024
    mb_per_vcpu: int = 1769
    #: Lambda's init phase limit, seconds
    init_timeout_s: float = 10.0
    #: network namespaces kept ready per function that uses network "none"
    netns_pool_size: int = 4
    #: cgroup directories kept ready per function zygote
    cgroup_pool_size: int = 4
    #: bytes of log kept per invocation (the rest is cut with a marker)
    log_max_bytes_per_invocation: int = 256 * 1024
    #: name of the cgroup directory under each controller
    cgroup_name: str = "squall"
    #: the region reported to functions
    region: str = "us-east-1"
    #: the account id used in ARNs
    account_id: str = "000000000000"
