"""DecodePool: long-lived decode workers (:class:`~diadem_ray.actors.decoder.ClipDecoder`) that the
driver's clip feeds submit clips to, a bounded number of steps ahead of use.

Workers ask for ``{"CPU": num_cpus_per_worker}`` plus ``resources`` (``{"decode_cpu": 1}`` keeps them
on the CPU node type). They are the owners of the media they put in the object store, and they live
as long as the run, so no media object dies with a finished task or pipeline.

Node loss: workers are created with ``max_restarts=-1``; a clip whose worker died is submitted again
to another worker (Ray restarts the dead one where the resources remain or when a node offering
them joins). The log names the worker, the node lost and the clip resubmitted. A clip that no
worker decodes within ``node_wait_s`` raises :class:`DecodeUnavailable`, naming the resources.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import ray

from diadem_ray.actors.decoder import ClipDecoder
from diadem_ray.types import EncodedClip

log = logging.getLogger(__name__)


class DecodeUnavailable(RuntimeError):
    """No decode worker answered within ``node_wait_s`` (lost nodes, no capacity)."""


@dataclass
class Pending:
    """A clip submitted for decoding: ``future`` resolves to its :class:`EncodedClip`."""

    clip_id: str
    uri: str
    worker: int
    future: Any


class DecodePool:
    """``num_workers`` decode actors; ``decoder_kwargs`` go to :class:`ClipDecoder`."""

    def __init__(
        self,
        *,
        num_workers: int = 1,
        num_cpus_per_worker: float = 0.5,
        resources: Optional[Dict[str, float]] = None,
        node_wait_s: float = 600.0,
        **decoder_kwargs: Any,
    ):
        if num_workers < 1:
            raise ValueError(f"data.decode_workers must be >= 1, got {num_workers}")
        self.resources = {"CPU": num_cpus_per_worker, **dict(resources or {})}
        remote: Any = ray.remote(ClipDecoder).options(
            num_cpus=num_cpus_per_worker, max_restarts=-1, max_task_retries=0, resources=dict(resources or {}) or None
        )
        self.workers: List[Any] = [remote.remote(**decoder_kwargs) for _ in range(num_workers)]
        self.outstanding = [0] * num_workers
        self.node_wait_s = float(node_wait_s)
        self.resubmitted = 0
        self._rr = itertools.count()

    def nodes(self) -> List[str]:
        """The node each worker runs on (waits for the workers to start)."""
        return list(ray.get([w.node.remote() for w in self.workers]))

    def submit(self, clip_id: str, uri: str, avoid: Optional[int] = None) -> Pending:
        """Queue one clip on the least loaded worker (ties: round robin; ``avoid``: a worker just lost)."""
        n = len(self.workers)
        start = next(self._rr) % n
        order = sorted(range(n), key=lambda i: (i == avoid and n > 1, self.outstanding[i], (i - start) % n))
        i = order[0]
        self.outstanding[i] += 1
        return Pending(clip_id, uri, i, self.workers[i].encode.remote(clip_id, uri))

    def result(self, p: Pending) -> EncodedClip:
        """The clip's result; a clip whose worker died is submitted again (see the module docstring)."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

        deadline = time.monotonic() + self.node_wait_s
        while True:
            try:
                out: EncodedClip = ray.get(p.future, timeout=max(0.1, deadline - time.monotonic()))
                self.outstanding[p.worker] -= 1
                return out
            except (ActorDiedError, ActorUnavailableError) as exc:
                self.outstanding[p.worker] -= 1
                if time.monotonic() > deadline:
                    raise self._unavailable(p.clip_id) from exc
                lost = p.worker
                time.sleep(1.0)
                p = self.submit(p.clip_id, p.uri, avoid=lost)
                self.resubmitted += 1
                log.warning(
                    "decode worker %d lost (%s); clip %s resubmitted to worker %d",
                    lost,
                    type(exc).__name__,
                    p.clip_id,
                    p.worker,
                )
            except GetTimeoutError as exc:
                raise self._unavailable(p.clip_id) from exc

    def _unavailable(self, clip_id: str) -> DecodeUnavailable:
        return DecodeUnavailable(
            f"no decode worker finished clip {clip_id} within cluster.node_wait_s {self.node_wait_s:.0f} s; the "
            "workers "
            f"need {self.resources} each: add a node that offers them, or lower data.decode_num_cpus / "
            "data.decode_resources"
        )

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)
        self.workers = []
