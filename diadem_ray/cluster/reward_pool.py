"""RewardPool: a group of RewardWorker actors scoring a step's rollouts in parallel.

Dispatch is least-loaded over batches of ``batch_size`` captions. Actors are created with
``max_restarts=-1`` (Ray rebuilds a dead one by re-running its constructor); a batch whose actor
died is submitted again — to another worker when one is alive — up to ``max_task_retries`` times,
after which its captions get reward 0 with the reason. So a killed worker never costs a sample:
the pool returns exactly one ScoredRollout per input, in input order.

Actors request ``{"CPU": num_cpus_per_worker}`` and any custom ``resources`` given (for example a
``reward_worker`` resource that only a CPU node type offers), so an autoscaler can add CPU nodes
for rewards independently of GPU nodes.
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
        out = {"reward/captions": float(self.captions), "reward/failed": float(sum(self.failed.values())),
               "reward/resubmitted_batches": float(self.resubmitted_batches), "reward/seconds": self.seconds,
               "reward/captions_per_s": self.captions / self.seconds if self.seconds > 0 else 0.0}
        out.update({f"reward/failed_{k}": float(v) for k, v in self.failed.items()})
        return out


class RewardPool:
    """Creates ``num_workers`` reward actors and scores lists of (rollout, reference) items."""

    def __init__(self, spec: Mapping[str, Any], *, num_workers: int = 1, num_cpus_per_worker: float = 0.5,
                 batch_size: int = 32, reward_timeout_s: float = 10.0, max_task_retries: int = 2,
                 resources: Optional[Dict[str, float]] = None, generate: Optional[Any] = None):
        """``generate``: a picklable text generator (e.g. ``ActorTextGenerator``) for the ``llm``
        judge or extractor; the reward spec decides whether it is used."""
        if num_workers < 1 or batch_size < 1:
            raise ValueError(f"RewardPool needs num_workers >= 1 and batch_size >= 1, got {num_workers}, {batch_size}")
        self.batch_size = batch_size
        self.max_task_retries = max_task_retries
        remote = ray.remote(RewardWorker).options(num_cpus=num_cpus_per_worker, max_restarts=-1, max_task_retries=0,
                                                  resources=resources or None)
        self.workers = [remote.remote(dict(spec), reward_timeout_s=reward_timeout_s, generate=generate)
                        for _ in range(num_workers)]
        self.reward_hash: str = ray.get(self.workers[0].reward_hash.remote())

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

        while queue or pending:
            while queue:
                submit(*queue.pop(0))
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            b, w, attempt = pending.pop(ref)
            load[w] -= 1
            try:
                scored = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                if attempt < self.max_task_retries:
                    log.warning("reward worker %d died while scoring batch %d (attempt %d): resubmitting", w, b, attempt + 1)
                    stats.resubmitted_batches += 1
                    avoid[b] = w
                    time.sleep(0.2 * (attempt + 1))  # give Ray a moment to restart the actor
                    queue.append((b, attempt + 1))
                    continue
                reason = f"worker_died: reward worker {w} died {attempt + 1} times on this batch ({type(exc).__name__})"
                scored = [ScoredRollout(items[i][0], 0.0, {}, error=reason) for i in batches[b]]
            for i, s in zip(batches[b], scored):
                results[i] = s
                if s.error:
                    kind = s.error.split(":", 1)[0]
                    stats.failed[kind] = stats.failed.get(kind, 0) + 1
        stats.seconds = time.perf_counter() - start
        assert all(r is not None for r in results)
        return [r for r in results if r is not None], stats

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w, no_restart=True)
        self.workers = []
