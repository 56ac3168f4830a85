"""Every knob, its default and its unit, in one place.  docs/config.md is the table of these."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from squall.core.errors import ConfigError

__all__ = ["NodeConfig", "ServerConfig", "default_data_dir"]


def default_data_dir() -> Path:
    return Path(os.environ.get("SQUALL_DATA_DIR", str(Path.home() / ".squall")))


def _env_int(name: str, default: int, minimum: int | None = None) -> int:
    """The integer knob ``name`` (``default`` when unset or empty); a ConfigError naming it otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number (default {default})") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum} (default {default})")
    return value


def _outbox_lease_s() -> float:
    """SQUALL_OUTBOX_LEASE_S: under the event stream's 120 s duplicate window (a row re-published after its claim
    expired must still be recognised as the same event)."""
    value = _env_float("SQUALL_OUTBOX_LEASE_S", 30.0, 0.1)
    if value >= 110.0:
        raise ConfigError(f"SQUALL_OUTBOX_LEASE_S={value:g} must be below 110 s (the event stream's duplicate "
                          "window is 120 s); the default is 30")  # fmt: skip
    return value


def _env_float(name: str, default: float, minimum: float | None = None) -> float:
    """The number knob ``name`` (``default`` when unset or empty); a ConfigError naming it otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number (default {default:g})") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ConfigError(
            f"{name}={raw!r} must be a finite number of at least {minimum:g} (default {default:g})"
            if minimum is not None
            else f"{name}={raw!r} must be a finite number (default {default:g})"
        )
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} must be one of {', '.join(_TRUE + _FALSE)} (default {int(default)})")


def _env_url(name: str) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/") or any(c.isspace() for c in raw):
        raise ConfigError(f"{name}={raw!r} must be an http:// or https:// URL such as https://squall.example.com")
    return raw.rstrip("/")


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(repr(c) for c in choices)} (default {default!r})")
    return raw


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
    #: CPU shares of a 1769 MB instance (Lambda gives one vCPU at 1769 MB); shares scale with memory
    cpu_shares_per_vcpu: int = 1024
    mb_per_vcpu: int = 1769
    #: Lambda's init phase limit, seconds
    init_timeout_s: float = 10.0
    #: network namespaces kept ready per function zygote (network "nat": wired by the node; "none": empty)
    netns_pool_size: int = 4
    #: SQUALL_NETWORK_CIDR: addresses for network "nat"; each node (server) on the host takes one free
    #: /network_slice_prefix of it: a gateway address and one /32 per instance namespace
    network_cidr: str = field(default_factory=lambda: os.environ.get("SQUALL_NETWORK_CIDR", "10.250.0.0/16"))
    network_slice_prefix: int = 21
    #: how often the node checks that its firewall table is still loaded (and reloads it), seconds
    network_check_s: float = 5.0
    #: SQUALL_INSTANCE_SCHED: "batch" runs instances under SCHED_BATCH (same CPU share, but a woken instance does not
    #: preempt the running edge/control process: the server keeps serving while instances queue for the CPU);
    #: "normal" is SCHED_OTHER
    instance_sched: str = field(
        default_factory=lambda: _env_choice("SQUALL_INSTANCE_SCHED", "batch", ("batch", "normal"))
    )
    #: SQUALL_ZYGOTE_MEMORY_MB: memory a function zygote may use beyond the function's MemorySize, MB (its limit is
    #: MemorySize + this: room for the init Lambda would run in MemorySize, plus what forking instances costs it)
    zygote_memory_mb: int = field(default_factory=lambda: _env_int("SQUALL_ZYGOTE_MEMORY_MB", 64, 0))
    #: SQUALL_SPARE_INSTANCES: per warm function zygote, instances made ahead of need: forked into a free slot and
    #: fully sandboxed (its cgroups, uid, /tmp, network namespace, seccomp), parked before any of the function's
    #: code runs; a cold start takes one and runs only the init (0 = off).  Each costs ~1-2 MB while parked
    spare_instances: int = field(default_factory=lambda: _env_int("SQUALL_SPARE_INSTANCES", 1, 0))
    #: SQUALL_ZYGOTE_TIMEOUT_S: how long the node waits for a function zygote's answer to a request (start an
    #: instance), seconds; a zygote that does not answer is stopped and the next invocation starts a new one
    zygote_timeout_s: float = field(default_factory=lambda: _env_float("SQUALL_ZYGOTE_TIMEOUT_S", 10.0, 0.0))
    #: SQUALL_FREEZE_AFTER_MS: an instance idle this long is frozen (cgroup freezer) until its next invocation,
    #: milliseconds; negative disables freezing
    freeze_after_ms: float = field(default_factory=lambda: _env_float("SQUALL_FREEZE_AFTER_MS", 50.0))
    #: bytes of log kept per invocation (the rest is cut with a marker)
    log_max_bytes_per_invocation: int = 256 * 1024
    #: name of the cgroup directory under each controller
    cgroup_name: str = "squall"
    #: the region reported to functions
    region: str = "us-east-1"
    #: the account id used in ARNs
    account_id: str = "000000000000"


@dataclass(frozen=True)
class ServerConfig:
    """Knobs of ``squall up``.  Each may be set by a flag or by the SQUALL_* environment variable named here."""

    #: SQUALL_DATA_DIR: SQLite database, code, keys
    data_dir: Path = field(default_factory=default_data_dir)
    #: SQUALL_DATABASE_URL: a PostgreSQL URL (postgresql://user:pass@host:port/db) to keep all metadata, records,
    #: queues, triggers and IAM there instead of SQLite files in the data dir (cluster mode); empty = embedded SQLite
    database_url: str = field(default_factory=lambda: os.environ.get("SQUALL_DATABASE_URL", "").strip())
    #: SQUALL_HOST
    host: str = field(default_factory=lambda: os.environ.get("SQUALL_HOST", "127.0.0.1"))
    #: SQUALL_PORT: the one HTTP port (Lambda API, S3, SQS, function URLs, /ui, /metrics)
    port: int = field(default_factory=lambda: _env_int("SQUALL_PORT", 9070, 0))
    #: SQUALL_KEEP_ALIVE_S: idle seconds before an instance is stopped (scale to zero)
    keep_alive_s: float = field(default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_S", 300.0))
    #: SQUALL_ZYGOTE_KEEP_ALIVE_S: idle seconds before a function's zygote is stopped
    zygote_keep_alive_s: float = field(default_factory=lambda: _env_float("SQUALL_ZYGOTE_KEEP_ALIVE_S", 600.0))
    #: SQUALL_KEEP_ALIVE_POLICY: "fixed" (every idle instance stays SQUALL_KEEP_ALIVE_S) or "hybrid" (per function,
    #: the idle-time histogram policy of Shahrad et al. 2020: unload between predictable calls, pre-warm before them;
    #: SQUALL_KEEP_ALIVE_S / SQUALL_ZYGOTE_KEEP_ALIVE_S while a function's histogram is not representative)
    keep_alive_policy: str = field(
        default_factory=lambda: _env_choice("SQUALL_KEEP_ALIVE_POLICY", "hybrid", ("fixed", "hybrid"))
    )
    #: SQUALL_KEEP_ALIVE_BIN_S: width of one idle-time histogram bin, seconds
    keep_alive_bin_s: float = field(default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_BIN_S", 60.0))
    #: SQUALL_KEEP_ALIVE_RANGE_S: idle times the histogram covers, seconds (longer ones are out of bounds)
    keep_alive_range_s: float = field(default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_RANGE_S", 14400.0))
    #: SQUALL_KEEP_ALIVE_MIN_SAMPLES: idle times a function needs before its histogram is trusted
    keep_alive_min_samples: int = field(default_factory=lambda: _env_int("SQUALL_KEEP_ALIVE_MIN_SAMPLES", 10))
    #: SQUALL_KEEP_ALIVE_CV_MIN: coefficient of variation of the bin counts a trusted histogram reaches
    keep_alive_cv_min: float = field(default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_CV_MIN", 2.0))
    #: SQUALL_KEEP_ALIVE_HEAD_PCT / _TAIL_PCT: percentiles of idle times that end the pre-warm and keep-alive windows
    keep_alive_head_pct: float = field(default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_HEAD_PCT", 5.0))
    keep_alive_tail_pct: float = field(default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_TAIL_PCT", 99.0))
    #: SQUALL_KEEP_ALIVE_CAP: 1 = when a function's pre-warm window is 0, keep it warm no longer than
    #: SQUALL_KEEP_ALIVE_S (not in the paper; 0 = the paper's policy as published)
    keep_alive_cap: bool = field(default_factory=lambda: _env_bool("SQUALL_KEEP_ALIVE_CAP", True))
    #: SQUALL_KEEP_ALIVE_COLD_COST_S: what one cold start is worth in seconds of one idle instance; the keep-alive
    #: window is the one with the least idle seconds + this x cold starts over the idle times seen (0 = the paper's
    #: tail percentile)
    keep_alive_cold_cost_s: float = field(
        default_factory=lambda: _env_float("SQUALL_KEEP_ALIVE_COLD_COST_S", 600.0, 0.0)
    )
    #: SQUALL_REAP_INTERVAL_S: how often idle instances are checked against the keep-alive
    reap_interval_s: float = field(default_factory=lambda: _env_float("SQUALL_REAP_INTERVAL_S", 1.0))
    #: SQUALL_MAX_CONCURRENT_STARTS: instances initialising at once (0 = 4 per CPU); more requests queue for a slot
    max_concurrent_starts: int = field(default_factory=lambda: _env_int("SQUALL_MAX_CONCURRENT_STARTS", 0, 0))
    #: SQUALL_ACCOUNT_CONCURRENCY: account-wide concurrent executions
    account_concurrency: int = field(default_factory=lambda: _env_int("SQUALL_ACCOUNT_CONCURRENCY", 1000, 1))
    #: SQUALL_THROTTLE_WAIT_S: how long a sync caller waits for capacity before 429
    throttle_wait_s: float = field(default_factory=lambda: _env_float("SQUALL_THROTTLE_WAIT_S", 1.0))
    #: SQUALL_MEMORY_BUDGET_MB: memory instances may use on this node (0 = 80% of RAM)
    memory_budget_mb: int = field(default_factory=lambda: _env_int("SQUALL_MEMORY_BUDGET_MB", 0, 0))
    #: SQUALL_ASYNC_RETRY_BASE_S: delay before the first async retry (Lambda: 60 s, then 120 s)
    async_retry_base_s: float = field(default_factory=lambda: _env_float("SQUALL_ASYNC_RETRY_BASE_S", 60.0))
    #: SQUALL_ASYNC_MAX_IN_FLIGHT: async events being delivered at once (the rest wait in the durable queue)
    async_max_in_flight: int = field(default_factory=lambda: _env_int("SQUALL_ASYNC_MAX_IN_FLIGHT", 256, 1))
    #: SQUALL_PRICES: path of a JSON/YAML price table (default: Lambda's x86 us-east-1 prices)
    prices_path: str = field(default_factory=lambda: os.environ.get("SQUALL_PRICES", ""))
    #: SQUALL_LOG_RETENTION_DAYS: records and logs older than this are pruned
    log_retention_days: float = field(default_factory=lambda: _env_float("SQUALL_LOG_RETENTION_DAYS", 7.0))
    #: SQUALL_METRICS: 0 switches /metrics and the invocation counters off
    metrics: bool = field(default_factory=lambda: _env_bool("SQUALL_METRICS", True))
    #: SQUALL_METRICS_PUBLIC: 1 lets /metrics be scraped without a SigV4 signature (Prometheus cannot sign)
    metrics_public: bool = field(default_factory=lambda: _env_bool("SQUALL_METRICS_PUBLIC", False))
    #: SQUALL_TRACING: 0 switches spans, the local trace store and OTLP export off
    tracing: bool = field(default_factory=lambda: _env_bool("SQUALL_TRACING", True))
    #: SQUALL_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT): OTLP/HTTP collector base URL; empty = no export
    otlp_endpoint: str = field(
        default_factory=lambda: (
            os.environ.get("SQUALL_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        )
    )
    #: SQUALL_TRACE_SAMPLE: ratio of new traces recorded beyond the reservoir (callers' sampled flags are followed);
    #: 1 records every trace.  With the reservoir: AWS X-Ray's default rule (1 per second + 5%)
    trace_sample: float = field(default_factory=lambda: _env_float("SQUALL_TRACE_SAMPLE", 0.05))
    #: SQUALL_TRACE_RESERVOIR: new traces recorded per second per function (and per API: S3, SQS) before the ratio
    trace_reservoir: int = field(default_factory=lambda: max(0, _env_int("SQUALL_TRACE_RESERVOIR", 1)))
    #: SQUALL_TRACE_BUFFER: traces kept in memory for /_squall/api/traces (oldest dropped first)
    trace_buffer: int = field(default_factory=lambda: _env_int("SQUALL_TRACE_BUFFER", 2000, 1))
    #: SQUALL_PRUNE_INTERVAL_S: how often records and logs past the retention are deleted
    prune_interval_s: float = field(default_factory=lambda: _env_float("SQUALL_PRUNE_INTERVAL_S", 600.0))
    #: SQUALL_HTTP_MAX_REQUEST_LINE: bytes of a request's target (URL); longer -> 414
    http_max_request_line: int = field(default_factory=lambda: _env_int("SQUALL_HTTP_MAX_REQUEST_LINE", 16384))
    #: SQUALL_HTTP_MAX_HEADER_BYTES: bytes of a request's header fields; more -> 431
    http_max_header_bytes: int = field(default_factory=lambda: _env_int("SQUALL_HTTP_MAX_HEADER_BYTES", 16384))
    #: SQUALL_HTTP_HEADER_TIMEOUT_S: a request head must be complete this long after its first byte (or the accept)
    http_header_timeout_s: float = field(default_factory=lambda: _env_float("SQUALL_HTTP_HEADER_TIMEOUT_S", 10.0))
    #: SQUALL_HTTP_BODY_TIMEOUT_S: a request body may stall this long while the server waits for it
    http_body_timeout_s: float = field(default_factory=lambda: _env_float("SQUALL_HTTP_BODY_TIMEOUT_S", 30.0))
    #: SQUALL_HTTP_IDLE_TIMEOUT_S: an idle keep-alive connection is closed after this long
    http_idle_timeout_s: float = field(default_factory=lambda: _env_float("SQUALL_HTTP_IDLE_TIMEOUT_S", 5.0))
    #: SQUALL_HTTP_MAX_CONNECTIONS: connections served at once; more get 503 (0 = no cap)
    http_max_connections: int = field(default_factory=lambda: _env_int("SQUALL_HTTP_MAX_CONNECTIONS", 4096))
    #: SQUALL_DISK_RESERVE_MB: space kept in <data dir>/.reserve and released when the disk fills, so deletes can
    #: still run (writes are refused from then until the reserve can be re-created); 0 = no reserve, no checks
    disk_reserve_mb: int = field(default_factory=lambda: _env_int("SQUALL_DISK_RESERVE_MB", 64, 0))
    #: SQUALL_PUBLIC_URL: the URL clients reach this Squall at, when it is not ``http://<host>:<port>`` (behind a
    #: TLS-terminating proxy: ``https://squall.example.com``); queue URLs, function URLs, code locations and the
    #: banner use it, and the dashboard's session cookie is ``Secure`` when it is https
    public_url_setting: str = field(default_factory=lambda: _env_url("SQUALL_PUBLIC_URL"))
    #: SQUALL_NATS_URL: join a cluster: NATS JetStream server URLs, comma-separated (empty = one embedded node)
    nats_url: str = field(default_factory=lambda: os.environ.get("SQUALL_NATS_URL", ""))
    #: SQUALL_NODE_ID: this node's name in the cluster (empty = hostname:port, stable across restarts)
    node_id: str = field(default_factory=lambda: os.environ.get("SQUALL_NODE_ID", ""))
    #: SQUALL_NATS_REPLICAS: replicas of the event stream and the node bucket (0 = one per NATS URL, at most 3)
    nats_replicas: int = field(default_factory=lambda: _env_int("SQUALL_NATS_REPLICAS", 0, 0))
    #: SQUALL_NATS_ACK_WAIT_S: seconds a fetched event may go without an ack or in-progress report before another
    #: node gets it (in-progress reports every third of it keep long deliveries)
    nats_ack_wait_s: float = field(default_factory=lambda: _env_float("SQUALL_NATS_ACK_WAIT_S", 10.0, 0.1))
    #: SQUALL_CLUSTER_HEARTBEAT_S: seconds between a node's heartbeats
    cluster_heartbeat_s: float = field(default_factory=lambda: _env_float("SQUALL_CLUSTER_HEARTBEAT_S", 0.3, 0.01))
    #: SQUALL_CLUSTER_EXPIRY_S: seconds without a heartbeat after which a node is out of placement
    cluster_expiry_s: float = field(default_factory=lambda: _env_float("SQUALL_CLUSTER_EXPIRY_S", 1.5, 0.05))
    #: SQUALL_CLUSTER_CHANGES_POLL_S: seconds between reads of the cluster's change log in PostgreSQL (a change
    #: a node missed on NATS reaches it within this)
    cluster_changes_poll_s: float = field(
        default_factory=lambda: _env_float("SQUALL_CLUSTER_CHANGES_POLL_S", 1.0, 0.05)
    )
    #: SQUALL_OUTBOX_LEASE_S: seconds an outbox drain holds the rows it claimed; a node that dies holding rows has
    #: them published by another node after this (cluster mode with PostgreSQL; below the 120 s duplicate window)
    outbox_lease_s: float = field(default_factory=lambda: _outbox_lease_s())
    region: str = "us-east-1"
    account_id: str = "000000000000"

    @property
    def cluster_node_id(self) -> str:
        """The node id: SQUALL_NODE_ID, else hostname:port (unique per server on a host, stable across restarts)."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def public_url(self) -> str:
        if self.public_url_setting:
            return self.public_url_setting
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"
