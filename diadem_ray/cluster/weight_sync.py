"""WeightSync: learner → rollout engines, every push stamped with a new policy_version.

CPU (this machine, tested): learner rank 0 gathers the full weights (ZeRO-3 too) in
``bucket_bytes``-bounded buckets; the buckets go through the object store once and every replica
loads them in place with vLLM's ``reload_weights`` (tied embeddings pushed explicitly), then resets
its prefix cache. Every replica call has ``timeout_s``; a replica that misses it fails the push
with its id and the version.

GPU clusters: the same path works; an NCCL broadcast from rank 0 straight into the engines
(vLLM's weight-transfer API) is the faster route and is not implemented yet — it cannot be run on
this machine.
"""

from __future__ import annotations

import time
from typing import Dict

import ray


class WeightSyncTimeout(TimeoutError):
    """A replica did not confirm a weight version in time."""


class WeightSync:
    def __init__(self, learners, rollouts, *, bucket_bytes: int = 256 << 20, timeout_s: float = 120.0):
        self.learners = learners
        self.rollouts = rollouts
        self.bucket_bytes = bucket_bytes
        self.timeout_s = timeout_s

    def push(self) -> Dict[str, float]:
        """Export, publish and load the learner's weights as version ``rollouts.version + 1``."""
        version = self.rollouts.version + 1
        start = time.perf_counter()
        # The buckets go from learner rank 0's object store to every replica by reference: the
        # driver never deserialises them. (The export is bounded by the learners' own collective
        # timeout; ``timeout_s`` bounds the replicas' loading.)
        ref = self.learners.export_weights_ref(self.bucket_bytes)
        calls = {r.load_weight_buckets.remote(version, ref): i for i, r in enumerate(self.rollouts.replicas)}
        deadline = time.perf_counter() + self.timeout_s
        results = []
        while calls:
            done, _ = ray.wait(list(calls), num_returns=1, timeout=max(0.0, deadline - time.perf_counter()))
            if not done:
                missing = sorted(calls.values())
                raise WeightSyncTimeout(f"weight sync: replica(s) {missing} did not load policy_version {version} "
                                        f"within {self.timeout_s} s")
            calls.pop(done[0])
            results.append(ray.get(done[0]))  # re-raises a replica's refusal (VersionMismatch) with its message
        nbytes = float(results[0]["bytes"]) if results else 0.0
        nbuckets = float(results[0].get("buckets", 0.0)) if results else 0.0
        self.rollouts.version = version
        self.rollouts.last_buckets = ref
        seconds = time.perf_counter() - start
        return {"sync/seconds": seconds, "sync/bytes": nbytes, "sync/gb_per_s": nbytes / seconds / 1e9 if seconds > 0 else 0.0,
                "sync/buckets": nbuckets, "sync/policy_version": float(version)}
