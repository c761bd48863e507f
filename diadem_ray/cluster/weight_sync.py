"""WeightSync: learner → rollout engines, every push stamped with a new policy_version.

CPU (this machine, tested): learner rank 0 gathers the full weights (ZeRO-3 too) as host arrays
(:class:`~diadem_ray.actors.host_weights.HostWeights`; ZeRO-1/2 parameters viewed, not copied);
Ray puts them into the object store as out-of-band buffers, every replica on the node maps them
without a copy and loads them into its CPU engine's kept plain weights, repacking each linear layer
(:mod:`~diadem_ray.actors.vllm_cpu_load`; vLLM's ``reload_weights`` where that cannot serve the
engine or ``rollout.cpu_staged_load`` is off; tied embeddings pushed explicitly), then resets its
prefix cache. Replicas on other nodes get the object in Ray's own chunks.
``wire="torch_buckets"`` keeps the earlier format (pickled torch tensors in ``bucket_bytes``
buckets) as the benchmark's baseline. Every replica call has ``timeout_s``; a replica that misses it fails the push
with its id and the version.

GPU clusters (``mode="nccl"``): learner rank 0 broadcasts the weights straight into every replica
through vLLM's weight-transfer API (``NCCLTrainerWeightTransferEngine`` on the learner side,
``WeightTransferConfig(backend="nccl")`` in the engines): one NCCL group of rank 0 plus one rank per
replica, set up once by :meth:`WeightSync.setup`; each push is start → concurrent broadcast/receive →
finish, every replica call bounded by ``timeout_s`` and stamped with the version. This path is
written against vLLM 0.32's documented API and is **unverified here** (no GPU on the development
machine); the object-store path is what the tests exercise. A replica restarted by Ray cannot
rejoin an NCCL group by itself: in this mode its death fails the next push loudly.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Sequence

import ray

log = logging.getLogger(__name__)


def store_too_small(nbytes: float, store_bytes: float) -> Optional[str]:
    """A warning when an object store of ``store_bytes`` cannot hold two pushes of ``nbytes``
    (the version the engines hold, kept for a restarted replica, and the next one): each push
    then spills the previous weights to disk first; ``None`` when it can."""
    if store_bytes <= 0 or 2 * nbytes <= store_bytes:
        return None
    want = int(2.5 * nbytes / 1e8 + 1) * 100_000_000
    return (
        f"weight sync: the object store ({store_bytes / 1e6:.0f} MB on the smallest node) holds fewer than two "
        f"pushes of the policy's weights ({nbytes / 1e6:.0f} MB each), so every push first spills the previous "
        f"weights to disk (seen as sync/export_seconds); set cluster.object_store_memory_bytes to at least {want} "
        "(or give the nodes more object store memory)"
    )


def smallest_store_bytes() -> float:
    """The object store capacity (bytes) of the smallest alive node; 0 when Ray reports none."""
    sizes = [float(n["Resources"].get("object_store_memory", 0.0)) for n in ray.nodes() if n.get("Alive")]
    return min((s for s in sizes if s > 0), default=0.0)


class WeightSyncTimeout(TimeoutError):
    """A replica did not confirm a weight version in time."""


def wait_all(refs: Sequence[Any], *, timeout_s: float, what: str) -> List[Any]:
    """Results of ``refs`` (one per replica, in order), or :class:`WeightSyncTimeout` naming the
    replicas that did not answer within ``timeout_s`` and ``what`` they were doing."""
    pending = {ref: i for i, ref in enumerate(refs)}
    out: List[Any] = [None] * len(refs)
    deadline = time.perf_counter() + timeout_s
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.perf_counter()))
        if not done:
            raise WeightSyncTimeout(
                f"weight sync: replica(s) {sorted(pending.values())} did not {what} within {timeout_s} s"
            )
        out[pending.pop(done[0])] = ray.get(done[0])  # re-raises a replica's refusal with its message
    return out


class ReplicaSyncClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol over our rollout replicas (Ray actors), driven by
    learner rank 0's trainer engine. Each replica is its own vLLM instance, so each gets its own
    NCCL rank (``rank_offset`` 1 + replica index; rank 0 is the learner); every call is bounded
    by ``timeout_s`` and names the replicas that missed it. ``version`` is set by the learner
    before each push; replicas refuse a version that does not increase."""

    def __init__(self, replicas: Sequence[Any], *, timeout_s: float):
        self.replicas = list(replicas)
        self.timeout_s = timeout_s
        self.version = 0

    def init_weight_transfer_engine(self, init_info: Dict[str, Any]) -> None:
        refs = [r.wt_init.remote(dict(init_info, rank_offset=1 + i)) for i, r in enumerate(self.replicas)]
        wait_all(refs, timeout_s=self.timeout_s, what="join the NCCL weight-transfer group")

    def start_weight_update(self) -> None:
        wait_all(
            [r.wt_start.remote(self.version) for r in self.replicas],
            timeout_s=self.timeout_s,
            what=f"start policy_version {self.version}",
        )

    def update_weights(self, update_info: Dict[str, Any]) -> None:
        wait_all(
            [r.wt_update.remote(update_info) for r in self.replicas],
            timeout_s=self.timeout_s,
            what=f"receive policy_version {self.version}",
        )

    def finish_weight_update(self, weight_version: Optional[str] = None) -> None:
        wait_all(
            [r.wt_finish.remote() for r in self.replicas],
            timeout_s=self.timeout_s,
            what=f"finish policy_version {self.version}",
        )


class WeightSync:
    def __init__(
        self,
        learners,
        rollouts,
        *,
        timeout_s: float = 120.0,
        mode: str = "object_store",
        wire: str = "host_arrays",
        bucket_bytes: int = 256 << 20,
    ):
        if mode not in ("object_store", "nccl"):
            raise ValueError(f"weight sync mode must be 'object_store' or 'nccl', got {mode!r}")
        if wire not in ("host_arrays", "torch_buckets"):
            raise ValueError(f"weight sync wire must be 'host_arrays' or 'torch_buckets', got {wire!r}")
        self.wire = wire
        self.learners = learners
        self.rollouts = rollouts
        self.bucket_bytes = bucket_bytes
        self.timeout_s = timeout_s
        self.mode = mode
        self._ready = mode == "object_store"
        self._store_checked = False

    def setup(self) -> None:
        """NCCL mode: form the transfer group (learner rank 0 + one rank per replica), once."""
        if self._ready:
            return
        # Preflight on every rank: what the replicas will be told to expect is what the learners
        # iterate (a mismatch would hang NCCL; here it raises naming the parameter).
        self.learners.run_all("export_metadata", True, timeout=4 * self.timeout_s)
        client = ReplicaSyncClient(self.rollouts.replicas, timeout_s=self.timeout_s)
        address, port = ray.get(self.learners.actors[0].nccl_endpoint.remote(), timeout=self.timeout_s)
        world = 1 + len(self.rollouts.replicas)
        self.learners.run_all("nccl_init", address, port, world, client, timeout=self.timeout_s)
        self._ready = True

    def push(self, version: Optional[int] = None) -> Dict[str, float]:
        """Export, publish and load the learner's weights as ``version`` (default: the engines'
        version + 1; a resumed run gives its checkpoint's). The one place a policy_version is made."""
        version = self.rollouts.version + 1 if version is None else version
        start = time.perf_counter()
        if self.mode == "nccl":
            self.setup()
            # Every learner rank runs send (ZeRO-3 gathers are collectives); rank 0 broadcasts and
            # drives the replicas, each of whose calls has its own timeout (ReplicaSyncClient).
            res = self.learners.run_all("nccl_send", version, timeout=4 * self.timeout_s)[0]
            self.rollouts.loaded(version)
            seconds = time.perf_counter() - start
            return {
                "sync/seconds": seconds,
                "sync/bytes": res["bytes"],
                "sync/gb_per_s": res["bytes"] / seconds / 1e9,
                "sync/buckets": 0.0,
                "sync/policy_version": float(version),
            }
        # The weights go from learner rank 0's object store to every replica by reference, as host
        # arrays a replica on the same node maps without a copy; the driver never deserialises them.
        # (The export is bounded by the learners' own collective timeout; ``timeout_s`` bounds the
        # replicas' loading.)
        if self.wire == "host_arrays":
            ref = self.learners.export_weights_ref()
        else:
            ref = self.learners.export_buckets_ref(self.bucket_bytes)
        exported = time.perf_counter()
        # A replica Ray is restarting gets the call once it is back (it then sets its engine up first).
        results = wait_all(
            [r.load_weight_buckets.options(max_task_retries=-1).remote(version, ref) for r in self.rollouts.replicas],
            timeout_s=self.timeout_s,
            what=f"load policy_version {version}",
        )
        nbytes = float(results[0]["bytes"]) if results else 0.0
        nbuckets = float(results[0].get("buckets", 0.0)) if results else 0.0
        self.rollouts.loaded(version, ref)
        seconds = time.perf_counter() - start
        if not self._store_checked:
            self._store_checked = True
            warning = store_too_small(nbytes, smallest_store_bytes())
            if warning:
                log.warning(warning)
        return {
            "sync/seconds": seconds,
            "sync/bytes": nbytes,
            "sync/gb_per_s": nbytes / seconds / 1e9 if seconds > 0 else 0.0,
            "sync/buckets": nbuckets,
            "sync/policy_version": float(version),
            "sync/export_seconds": exported - start,  # learner ranks' export into the object store
            # the slowest replica's own time: reading the weights and loading them into its engine
            "sync/load_seconds": max((float(r["seconds"]) for r in results), default=0.0),
        }
