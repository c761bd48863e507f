"""RolloutGroup: rollout replicas with least-loaded dispatch and replica-death recovery.

Prompts are sent in chunks to the replica with the fewest chunks in flight. When a replica dies,
its unanswered chunks go back on the queue for the others (and for the replica itself once Ray
has restarted it, which re-runs ``setup`` and reloads the last pushed weights): every prompt is
answered exactly once, none lost, none duplicated. A replica that died between calls (during a
learner step, say) answers its next chunk with ``ReplicaRestarted`` and is restored the same way;
a weight push reaching it sets its engine up first.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ray

from diadem_ray.actors.rollout import ReplicaRestarted, RolloutWorker
from diadem_ray.cluster.worker_env import cpu_worker_env
from diadem_ray.types import Prompt, Rollout

log = logging.getLogger(__name__)


class ReplicasLost(RuntimeError):
    """The group could not finish a call: replicas died and could not be restored in time."""


class RolloutGroup:
    def __init__(
        self,
        *,
        num_replicas: int = 1,
        num_cpus_per_replica: float = 0.5,
        num_gpus_per_replica: float = 0.0,
        chunk_size: int = 8,
        max_chunk_retries: int = 2,
        cpu_threads: int = 0,
        wait: bool = True,
        resources: Optional[Dict[str, float]] = None,
        restore_wait_s: float = 600.0,
        reuse_freed_memory: bool = True,
        **worker_kwargs: Any,
    ):
        """``cpu_threads``: OpenMP threads of a CPU engine; rollouts and learner steps alternate,
        so a replica may use more threads than its fractional CPU reservation. ``wait=False``: the
        engines load in the background until :meth:`ready` (the driver starts the learners meanwhile).
        ``resources``: custom resources each replica asks for (a node-type marker);
        ``restore_wait_s``: how long a call waits for dead replicas to be restarted when no other
        replica can take their prompts. ``reuse_freed_memory``: CPU engines keep freed weight
        memory for the next push (:mod:`~diadem_ray.cluster.worker_env`)."""
        self.restore_wait_s = float(restore_wait_s)
        env = {
            k: os.environ[k]
            for k in (
                "VLLM_CPU_KVCACHE_SPACE",
                "VLLM_ENABLE_V1_MULTIPROCESSING",
                "HF_HUB_OFFLINE",
                "TRANSFORMERS_OFFLINE",
            )
            if k in os.environ
        }
        if not num_gpus_per_replica:
            env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            if cpu_threads > 0:
                env["OMP_NUM_THREADS"] = str(cpu_threads)
            env.update(cpu_worker_env(reuse_freed_memory))
        remote: Any = ray.remote(RolloutWorker).options(
            num_cpus=num_cpus_per_replica,
            num_gpus=num_gpus_per_replica,
            max_restarts=-1,
            max_task_retries=0,
            runtime_env={"env_vars": env},
            resources=dict(resources or {}) or None,
        )
        self.replicas: List[Any] = [remote.remote(replica_id=i, **worker_kwargs) for i in range(num_replicas)]
        self._setup_refs = [r.setup.remote() for r in self.replicas]
        self.info: List[Any] = []
        self.sleep_mode = bool(worker_kwargs.get("sleep_mode", False))
        self.chunk_size = chunk_size
        self.max_chunk_retries = max_chunk_retries
        self._version = 0  # written only by loaded(), which WeightSync calls
        self.last_buckets: Optional[Any] = None  # ObjectRef of the last pushed weights (a list of buckets)
        if wait:
            self.ready()

    @property
    def version(self) -> int:
        """The policy_version every replica holds (0: the base weights)."""
        return self._version

    def loaded(self, version: int, buckets: Optional[Any] = None) -> None:
        """Record that every replica confirmed ``version`` (and, for object-store pushes, the
        buckets a restarted replica is given). Versions only increase."""
        if version <= self._version:
            raise ValueError(f"policy_version {version} after {self._version}: versions only increase")
        self._version = version
        if buckets is not None:
            self.last_buckets = buckets

    def ready(self) -> List[Any]:
        """Wait until every engine has loaded; raises the first engine's setup error."""
        if self._setup_refs:
            self.info = ray.get(self._setup_refs)
            self._setup_refs = []
        return self.info

    def sleep(self) -> None:
        """Colocated layout: every engine frees its GPU memory for the learner step (no-op otherwise)."""
        if self.sleep_mode:
            ray.get([r.sleep.remote() for r in self.replicas])

    def wake_up(self, tags: Optional[List[str]] = None) -> None:
        if self.sleep_mode:
            ray.get([r.wake_up.remote(tags) for r in self.replicas])

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        samples_per_prompt: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: Optional[int] = None,
    ) -> Tuple[List[Rollout], Dict[str, float]]:
        """Rollouts for every prompt (prompt-major, in input order) and dispatch metrics."""
        start = time.perf_counter()
        chunks = [
            list(range(i, min(i + self.chunk_size, len(prompts)))) for i in range(0, len(prompts), self.chunk_size)
        ]
        results: List[Optional[List[Rollout]]] = [None] * len(chunks)
        load = [0] * len(self.replicas)
        healthy = [True] * len(self.replicas)
        pending: Dict[Any, Tuple[int, int, int, float]] = {}  # generate ref -> (chunk, replica, attempt, t0)
        restoring: Dict[Any, Tuple[int, str]] = {}  # restore ref -> (replica, phase)
        queue = [(c, 0) for c in range(len(chunks))]
        latencies: List[float] = []
        requeued = 0
        while queue or pending:
            while queue and any(healthy):
                c, attempt = queue.pop(0)
                w = min((i for i in range(len(self.replicas)) if healthy[i]), key=lambda i: load[i])
                ref = self.replicas[w].generate.remote(
                    [prompts[i] for i in chunks[c]],
                    samples_per_prompt=samples_per_prompt,
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    seed=None if seed is None else seed + c,
                    expected_version=self.version,
                )
                pending[ref] = (c, w, attempt, time.perf_counter())
                load[w] += 1
            if not pending and not restoring:
                raise ReplicasLost("rollout: every replica is dead and none could be restored")
            # Only restarts left to wait for (their node is gone): wait for a node, but not for ever.
            only_restoring = not pending and not any(healthy)
            done, _ = ray.wait(
                list(pending) + list(restoring), num_returns=1, timeout=self.restore_wait_s if only_restoring else None
            )
            if not done:
                raise ReplicasLost(
                    f"rollout: no replica could be restarted within {self.restore_wait_s:.0f} s "
                    "(cluster.node_wait_s); their node is gone and none offering their resources joined"
                )
            ref = done[0]
            if ref in restoring:
                self._advance_restore(ref, restoring, healthy)
                continue
            c, w, attempt, t0 = pending.pop(ref)
            load[w] -= 1
            try:
                results[c] = ray.get(ref)
                latencies.append(time.perf_counter() - t0)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ReplicaRestarted) as exc:
                if attempt >= self.max_chunk_retries:
                    raise ReplicasLost(f"rollout chunk {c} failed on {attempt + 1} replicas; last: {exc}") from exc
                log.warning("rollout replica %d died; re-queueing %d prompts", w, len(chunks[c]))
                requeued += len(chunks[c])
                queue.append((c, attempt + 1))
                if healthy[w]:
                    # Ray restarts the actor (constructor only; ReplicaRestarted: it died between calls);
                    # set it up and reload weights, then reuse it.
                    healthy[w] = False
                    restoring[self.replicas[w].setup.options(max_task_retries=-1).remote()] = (w, "setup")
        rollouts = [r for chunk in results for r in (chunk or [])]
        elapsed = time.perf_counter() - start
        tokens = sum(len(r.token_ids) for r in rollouts)
        lat = sorted(latencies) or [0.0]
        while restoring:  # finish restores so the next call sees every replica ready
            done, _ = ray.wait(list(restoring), num_returns=1, timeout=self.restore_wait_s)
            if not done:
                raise ReplicasLost(
                    f"rollout: a replica could not be restarted within {self.restore_wait_s:.0f} s "
                    "(cluster.node_wait_s)"
                )
            self._advance_restore(done[0], restoring, healthy)
        return rollouts, {
            "rollout/seconds": elapsed,
            "rollout/tokens": float(tokens),
            "rollout/tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            "rollout/latency_p50_s": lat[len(lat) // 2],
            "rollout/latency_p90_s": lat[int(0.9 * (len(lat) - 1))],
            "rollout/requeued_prompts": float(requeued),
        }

    def _advance_restore(self, ref: Any, restoring: Dict[Any, Tuple[int, str]], healthy: List[bool]) -> None:
        """A restarted replica: after ``setup`` reload the last pushed weights, then mark it healthy."""
        w, phase = restoring.pop(ref)
        try:
            ray.get(ref)
        except Exception as exc:
            raise ReplicasLost(f"rollout replica {w} could not be restored ({phase}): {exc}") from exc
        if phase == "setup" and self.last_buckets is not None:
            restoring[self.replicas[w].load_weight_buckets.remote(self.version, self.last_buckets)] = (w, "weights")
        else:
            healthy[w] = True

    def shutdown(self) -> None:
        for r in self.replicas:
            try:
                ray.kill(r, no_restart=True)
            except Exception:
                pass
        self.replicas = []
