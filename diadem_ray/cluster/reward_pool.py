"""RewardPool: a group of RewardWorker actors scoring a step's rollouts in parallel.

Dispatch is least-loaded over batches of ``batch_size`` captions. Actors are created with
``max_restarts=-1`` (Ray rebuilds a dead one by re-running its constructor); a batch whose actor
died is submitted again — to another worker when one is alive — up to ``max_task_retries`` times,
after which its captions get reward 0 with the reason. So a killed worker never costs a sample:
the pool returns exactly one ScoredRollout per input, in input order.

Actors request ``{"CPU": num_cpus_per_worker}`` and any custom ``resources`` given (for example a
``reward_cpu`` resource that only a CPU node type offers), so an autoscaler can add CPU nodes
for rewards independently of GPU nodes.

Node loss: the workers of a lost node die together; Ray restarts them where the resources remain
or as soon as a node offering them joins, and their batches wait for them. The log names the
worker and node lost, what was resubmitted, and the node each worker came back on; while no
worker answers it says so every ``wait_log_s``, and after ``node_wait_s`` without progress the
waiting batches get reward 0 with the reason ``no_capacity`` (the step still gets one result per
caption).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import ray

from diadem_ray.actors.reward import Item, RewardWorker
from diadem_ray.types import ScoredRollout

log = logging.getLogger(__name__)


@dataclass
class PoolStats:
    """Per-call counters for the driver's metrics (``reward/*``)."""

    captions: int = 0
    failed: Dict[str, int] = field(default_factory=dict)
    resubmitted_batches: int = 0
    seconds: float = 0.0

    def as_metrics(self) -> Dict[str, float]:
        out = {
            "reward/captions": float(self.captions),
            "reward/failed": float(sum(self.failed.values())),
            "reward/resubmitted_batches": float(self.resubmitted_batches),
            "reward/seconds": self.seconds,
            "reward/captions_per_s": self.captions / self.seconds if self.seconds > 0 else 0.0,
        }
        out.update({f"reward/failed_{k}": float(v) for k, v in self.failed.items()})
        return out


class RewardPool:
    """Creates ``num_workers`` reward actors and scores lists of (rollout, reference) items."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        num_workers: int = 1,
        num_cpus_per_worker: float = 0.5,
        batch_size: int = 32,
        reward_timeout_s: float = 10.0,
        max_task_retries: int = 2,
        resources: Optional[Dict[str, float]] = None,
        generate: Optional[Any] = None,
        node_wait_s: float = 600.0,
        wait_log_s: float = 30.0,
    ):
        """``generate``: a picklable text generator (e.g. ``ActorTextGenerator``) for the ``llm``
        judge or extractor; the reward spec decides whether it is used. ``node_wait_s``: how long
        a call waits without any worker answering (after a node loss) before it gives up on the
        waiting batches; ``wait_log_s``: how often it says that it is waiting."""
        if num_workers < 1 or batch_size < 1:
            raise ValueError(f"RewardPool needs num_workers >= 1 and batch_size >= 1, got {num_workers}, {batch_size}")
        self.batch_size = batch_size
        self.max_task_retries = max_task_retries
        remote: Any = ray.remote(RewardWorker).options(
            num_cpus=num_cpus_per_worker, max_restarts=-1, max_task_retries=0, resources=resources or None
        )
        self.workers: List[Any] = [
            remote.remote(dict(spec), reward_timeout_s=reward_timeout_s, generate=generate) for _ in range(num_workers)
        ]
        self.resources = {"CPU": num_cpus_per_worker, **dict(resources or {})}
        self.node_wait_s = float(node_wait_s)
        self.wait_log_s = float(wait_log_s)
        self.reward_hash: str = self._started(str(spec.get("name", "?")))
        from diadem_ray.cluster import placement

        self.nodes: List[Optional[str]] = list(placement.node_ids(self.workers))

    def score(self, items: Sequence[Item], *, step: int, lines: bool = False) -> Tuple[List[ScoredRollout], PoolStats]:
        """Score every item; returns one result per item in order, and the call's counters.
        ``lines``: each result also carries its caption's per-line speaker verdicts."""
        start = time.perf_counter()
        stats = PoolStats(captions=len(items))
        batches = [list(range(i, min(i + self.batch_size, len(items)))) for i in range(0, len(items), self.batch_size)]
        results: List[Optional[ScoredRollout]] = [None] * len(items)
        pending: Dict[Any, Tuple[int, int, int]] = {}  # ref -> (batch index, worker index, attempt)
        load = [0] * len(self.workers)
        queue = [(b, 0) for b in range(len(batches))]
        avoid: Dict[int, int] = {}  # batch -> worker that last failed it

        def submit(b: int, attempt: int) -> None:
            order = sorted(range(len(self.workers)), key=lambda w: (w == avoid.get(b), load[w]))
            w = order[0]
            ref = self.workers[w].score_batch.remote([items[i] for i in batches[b]], step, lines)
            pending[ref] = (b, w, attempt)
            load[w] += 1

        last_progress = time.perf_counter()  # of the last batch scored
        restarting: set = set()  # workers seen unavailable since their last answer
        waited: set = set()  # batches that waited for a restarting worker
        while queue or pending:
            while queue:
                submit(*queue.pop(0))
            done, _ = ray.wait(list(pending), num_returns=1, timeout=self.wait_log_s)
            if not done:
                idle = time.perf_counter() - last_progress
                if idle < self.node_wait_s:
                    log.warning(
                        "no reward worker answered for %.0f s (%d batch(es) waiting): waiting up to %.0f s for a "
                        "node offering %s",
                        idle,
                        len(pending),
                        self.node_wait_s,
                        self.resources,
                    )
                    continue
                reason = (
                    f"no_capacity: no reward worker answered for {self.node_wait_s:.0f} s (cluster.node_wait_s); "
                    f"no node offered {self.resources}"
                )
                log.warning("%s; %d batch(es) get reward 0", reason, len(pending))
                for ref, (b, _w, _) in list(pending.items()):
                    ray.cancel(ref, force=False)
                    for i in batches[b]:
                        results[i] = ScoredRollout(items[i][0], 0.0, {}, error=reason)
                    stats.failed["no_capacity"] = stats.failed.get("no_capacity", 0) + len(batches[b])
                pending.clear()
                break
            ref = done[0]
            b, w, attempt = pending.pop(ref)
            load[w] -= 1
            try:
                scored = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                lost = self._where(w)
                self.nodes[w] = None  # known again once it answers
                if isinstance(exc, ray.exceptions.ActorUnavailableError):
                    # Being restarted (its node is gone): wait for it, without using up an attempt.
                    if w not in restarting:
                        restarting.add(w)
                        log.warning(
                            "reward worker %d on %s is unavailable (being restarted) while scoring batch %d: "
                            "the batch waits for a worker, up to %.0f s without progress",
                            w,
                            lost,
                            b,
                            self.node_wait_s,
                        )
                    if time.perf_counter() - last_progress < self.node_wait_s:
                        if b not in waited:  # a batch counts once, however often it is re-sent while waiting
                            waited.add(b)
                            stats.resubmitted_batches += 1
                        time.sleep(0.5)
                        queue.append((b, attempt))
                        continue
                if attempt < self.max_task_retries:
                    log.warning(
                        "reward worker %d on %s died while scoring batch %d (%s): resubmitting (attempt %d of %d)",
                        w,
                        lost,
                        b,
                        type(exc).__name__,
                        attempt + 2,
                        self.max_task_retries + 1,
                    )
                    stats.resubmitted_batches += 1
                    avoid[b] = w
                    time.sleep(0.2 * (attempt + 1))  # give Ray a moment to restart the actor
                    queue.append((b, attempt + 1))
                    continue
                reason = f"worker_died: reward worker {w} died {attempt + 1} times on this batch ({type(exc).__name__})"
                scored = [ScoredRollout(items[i][0], 0.0, {}, error=reason) for i in batches[b]]
            else:
                last_progress = time.perf_counter()
                restarting.discard(w)
                if self.nodes[w] is None:
                    self._found(w, b)
            for i, s in zip(batches[b], scored):
                results[i] = s
                if s.error:
                    kind = s.error.split(":", 1)[0]
                    stats.failed[kind] = stats.failed.get(kind, 0) + 1
        stats.seconds = time.perf_counter() - start
        assert all(r is not None for r in results)
        return [r for r in results if r is not None], stats

    def _started(self, name: str) -> str:
        """Wait for the first worker (its reward hash) up to ``node_wait_s``, saying every
        ``wait_log_s`` what it waits for; a pool that cannot be placed raises instead of hanging."""
        ref = self.workers[0].reward_hash.remote()
        waited = 0.0
        while True:
            ready, _ = ray.wait([ref], timeout=min(self.wait_log_s, max(0.1, self.node_wait_s - waited)))
            if ready:
                return str(ray.get(ref))
            waited += self.wait_log_s
            free = {k: round(v, 3) for k, v in ray.available_resources().items() if k == "CPU" or k in self.resources}
            if waited >= self.node_wait_s:
                for w in self.workers:
                    ray.kill(w)
                raise RuntimeError(
                    f"reward pool {name!r}: its {len(self.workers)} worker(s) could not start within "
                    f"{self.node_wait_s:.0f} s (each needs {self.resources}; free now {free}); lower "
                    "reward.num_cpus_per_worker or reward.num_workers, or add a node offering those resources"
                )
            log.warning(
                "reward pool %r: waiting %.0f s for its workers (each needs %s; free now %s)",
                name,
                waited,
                self.resources,
                free,
            )

    def _where(self, w: int) -> str:
        from diadem_ray.cluster import placement

        node = self.nodes[w]
        return f"node {placement.describe(node)}" if node else "a node not yet known"

    def _found(self, w: int, b: int) -> None:
        """Log where a worker that had died answered from."""
        from diadem_ray.cluster import placement

        try:
            node = self.nodes[w] = placement.node_ids([self.workers[w]], timeout_s=30.0)[0]
        except Exception:  # it died again meanwhile: the next answer will tell
            return
        log.warning("reward worker %d is back on node %s (it scored batch %d)", w, placement.describe(node), b)

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w, no_restart=True)
        self.workers = []
