"""A rollout replica's weights arriving: a push from the learner through Ray's object store (host
arrays read in place, or pickled buckets), loaded into the engine, and vLLM's NCCL weight transfer
on GPU clusters. A mixin of :class:`diadem_ray.actors.rollout.RolloutWorker`, which owns the engine
(``llm`` or ``hf``), ``backend``, ``replica_id``, ``policy_version`` and ``setup``. Versions only
move forward: a push of a version the replica already holds is refused."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple


class VersionMismatch(RuntimeError):
    """A batch asked for one weight version while the replica holds another."""


class ReplicaWeightsMixin:
    # owned by RolloutWorker, declared here for the type checker
    llm: Any
    hf: Any
    backend: str
    replica_id: int
    policy_version: int
    cpu_staged_load: bool
    load_path: str
    _incoming: Optional[int]
    setup: Callable[[], Dict[str, Any]]  # sets the engine up if this process has none yet

    def update_weights(self, version: int, *buckets: Sequence[Tuple[str, Any]]) -> Dict[str, float]:
        """Load full weights (buckets of (name, tensor)) in place and move to ``version``.

        Buckets are separate positional arguments so Ray resolves each object-store reference."""
        return self.load_weight_buckets(version, buckets)

    def load_weight_buckets(self, version: int, buckets: Any) -> Dict[str, float]:
        """As :meth:`update_weights`, with all weights in one argument: the learner's export
        (:class:`~diadem_ray.actors.host_weights.HostWeights`, or buckets of (name, tensor)) is
        passed by reference straight from learner rank 0 to every replica; host arrays are read in
        place and copied once, into the engine."""
        if version <= self.policy_version:
            raise VersionMismatch(
                f"rollout replica {self.replica_id}: refusing policy_version {version}; "
                f"it already holds {self.policy_version} (versions only increase)"
            )
        self.setup()  # a replica restarted since its last call loads its engine first
        start = time.perf_counter()
        from diadem_ray.actors.host_weights import HostWeights

        if isinstance(buckets, HostWeights):
            items = buckets.tensors()
            buckets = [items]
        else:
            items = [(name, t) for bucket in buckets for name, t in bucket]
        nbytes = sum(t.numel() * t.element_size() for _, t in items)
        if self.backend == "hf":
            missing, unexpected = self.hf.load_state_dict(dict(items), strict=False)
            if unexpected:
                raise KeyError(f"rollout replica {self.replica_id}: unknown weights {unexpected[:5]}")
        else:
            import torch

            from diadem_ray.actors.vllm_cpu_load import load_into_engine

            staged = self.cpu_staged_load and not torch.cuda.is_available()
            self.load_path = load_into_engine(self.llm, items, staged=staged)
            self._drop_caches()
        self.policy_version = version
        return {
            "seconds": time.perf_counter() - start,
            "bytes": float(nbytes),
            "version": float(version),
            "buckets": float(len(buckets)),
        }

    def _drop_caches(self) -> None:
        """After new weights: cached KV blocks and cached video/audio encoder outputs belong to
        the old ones (vLLM keeps both across requests)."""
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()

    # ---- NCCL weight transfer (GPU; vLLM's weight-transfer API, driven by learner rank 0) ------
    # The four calls mirror vLLM's VLLMWeightSyncClient protocol; the learner's trainer engine
    # drives them through cluster.weight_sync.ReplicaSyncClient. Unverified on this machine (no GPU).

    def wt_init(self, init_info: Dict[str, Any]) -> None:
        """Join the NCCL group (blocks until learner rank 0 opens its endpoint)."""
        self.llm.collective_rpc("init_weight_transfer_engine", kwargs={"init_info": dict(init_info)})

    def wt_start(self, version: int) -> None:
        if version <= self.policy_version:
            raise VersionMismatch(
                f"rollout replica {self.replica_id}: refusing policy_version {version}; "
                f"it already holds {self.policy_version} (versions only increase)"
            )
        self.llm.collective_rpc("start_weight_update")
        self._incoming = version

    def wt_update(self, update_info: Dict[str, Any]) -> None:
        """Receive the broadcast (runs concurrently with the learner's send)."""
        self.llm.collective_rpc("update_weights", kwargs={"update_info": update_info})

    def wt_finish(self) -> Dict[str, float]:
        if self._incoming is None:
            raise RuntimeError(f"rollout replica {self.replica_id}: finish_weight_update without a started update")
        self.llm.collective_rpc("finish_weight_update")
        self._drop_caches()
        self.policy_version, self._incoming = self._incoming, None
        return {"version": float(self.policy_version)}
