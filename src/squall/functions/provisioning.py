"""Provisioned concurrency: the pool's targets follow the stored configs, and the API reports their progress.

``sync(name)`` after every control-plane change of a function (and for every function at start) makes the pool
keep as many initialised instances of each configured version or alias as requested.  ``report_forever`` writes
back what is ready: ``IN_PROGRESS`` until the instances are initialised, then ``READY``, as Lambda reports it.

In a cluster the requested count holds for the whole cluster, not per node: ``share(name, requested)`` is this
node's part of it (the cluster splits it over the live nodes in the function's rendezvous order, as reserved
concurrency; ``resync`` re-reads every target when the membership changes), ``ready_total`` counts the ready
instances on every live node (their heartbeats carry them), and only the node ``reports(name)`` names writes the
status back, so the nodes do not overwrite each other's counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from squall.core.errors import ResourceNotFound
from squall.core.model import FunctionSpec
from squall.functions.pool import InstancePool
from squall.functions.store.metadata import SqliteMetadataStore
from squall.functions.store.records import StoredFunction

__all__ = ["Provisioning"]

log = logging.getLogger("squall")


class Provisioning:
    """``spec_of``: the FunctionSpec a stored version runs as (the invoker's ``spec_from_stored`` with this
    server's region, account and function environment)."""

    def __init__(
        self,
        store: SqliteMetadataStore,
        pool: InstancePool,
        spec_of: Callable[[StoredFunction], FunctionSpec],
        *,
        interval_s: float = 0.5,
        share: Callable[[str, int], int] | None = None,
        ready_total: Callable[[str, str], int] | None = None,
        reports: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.spec_of = spec_of
        self.interval_s = interval_s
        self.share = share
        self.ready_total = ready_total
        self.reports = reports
        self._provisioned: dict[tuple[str, str], FunctionSpec] = {}

    def sync(self, name: str) -> None:
        """Make the pool's provisioned targets for ``name`` match the stored provisioned-concurrency configs."""
        for key in [k for k in self._provisioned if k[0] == name]:
            spec_key = self._provisioned.pop(key)
            self.pool.set_provisioned(spec_key, 0)
        try:
            configs, _ = self.store.list_provisioned_concurrency(name, None, 1000)
        except ResourceNotFound:
            return
        for qc in configs:
            try:
                sf = self.store.get_function(name, qc.qualifier)
            except ResourceNotFound:
                continue
            spec = self.spec_of(sf)
            wanted = int(qc.config.get("RequestedProvisionedConcurrentExecutions", 0))
            if self.share is not None:  # a cluster: this node's part of the cluster-wide count
                wanted = self.share(name, wanted)
            self.pool.set_provisioned(spec, wanted)
            self._provisioned[(name, qc.qualifier)] = spec

    def resync(self) -> None:
        """Re-read every provisioned target (the cluster's membership changed: the shares moved)."""
        for name in sorted({name for name, _ in self._provisioned}):
            try:
                self.sync(name)
            except Exception:
                log.exception("provisioned concurrency of %s", name)

    async def report_forever(self) -> None:
        """Report provisioned concurrency back to the API: IN_PROGRESS until the instances are initialised."""
        while True:
            await asyncio.sleep(self.interval_s)
            for (name, qualifier), spec in list(self._provisioned.items()):
                if self.reports is not None and not self.reports(name):
                    continue
                try:
                    cfg = self.store.get_provisioned_concurrency(name, qualifier)
                    if cfg is None:
                        continue
                    count = self.ready_total or self.pool.provisioned_ready
                    ready = min(
                        count(name, spec.version),
                        int(cfg.get("RequestedProvisionedConcurrentExecutions", 0)),
                    )
                    status = (
                        "READY"
                        if ready >= int(cfg.get("RequestedProvisionedConcurrentExecutions", 0))
                        else "IN_PROGRESS"
                    )
                    if cfg.get("AllocatedProvisionedConcurrentExecutions") != ready or cfg.get("Status") != status:
                        patch = {
                            "AllocatedProvisionedConcurrentExecutions": ready,
                            "AvailableProvisionedConcurrentExecutions": ready,
                            "Status": status,
                        }
                        await asyncio.to_thread(self.store.update_provisioned_concurrency, name, qualifier, patch)
                except Exception:
                    log.exception("provisioned concurrency status for %s:%s", name, qualifier)
