"""LearnerGroup: ``num_ranks`` Learner actors in one placement group, driven as one.

Sequences of a step are split evenly over ranks (ZeRO-3 needs every rank to run the same number
of forward passes). A rank that dies surfaces as :class:`LearnerDied` naming the rank and the
step; the other ranks fail their collectives after ``collective_timeout_s`` instead of hanging,
and the group is torn down so the run can resume from the last checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from diadem_ray.actors.learner import Learner
from diadem_ray.cluster.worker_env import cpu_worker_env
from diadem_ray.types import GrpoBatch


class LearnerDied(RuntimeError):
    """A learner rank died; ``rank`` and ``step`` say which and when."""

    def __init__(self, rank: int, step: int, cause: BaseException):
        self.rank, self.step = rank, step
        super().__init__(
            f"learner rank {rank} died at step {step} ({type(cause).__name__}: {str(cause)[:300]}); "
            "resume from the last checkpoint"
        )


class LearnerGroup:
    def __init__(
        self,
        *,
        num_ranks: int,
        num_cpus_per_rank: float = 1.0,
        num_gpus_per_rank: float = 0.0,
        setup_timeout_s: float = 600.0,
        resources: Optional[Dict[str, float]] = None,
        reuse_freed_memory: bool = True,
        **learner_kwargs: Any,
    ):
        """``resources``: custom resources each rank's bundle also asks for (a node-type marker such
        as ``{"diadem_gpu_node": 0.001}`` keeps the ranks on the GPU node type).
        ``reuse_freed_memory``: CPU ranks keep freed activation and export memory for reuse
        (:mod:`~diadem_ray.cluster.worker_env`)."""
        self.num_ranks = num_ranks
        custom = dict(resources or {})
        bundle = {"CPU": num_cpus_per_rank, **({"GPU": num_gpus_per_rank} if num_gpus_per_rank else {}), **custom}
        self.pg = placement_group([dict(bundle) for _ in range(num_ranks)], strategy="PACK")
        ray.get(self.pg.ready(), timeout=setup_timeout_s)
        env = {"DS_ACCELERATOR": "cpu", **cpu_worker_env(reuse_freed_memory)} if not num_gpus_per_rank else {}
        env.update(
            {
                k: os.environ[k]
                for k in ("TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                if k in os.environ
            }
        )
        remote: Any = ray.remote(Learner)
        self.actors: List[Any] = [
            remote.options(
                num_cpus=num_cpus_per_rank,
                num_gpus=num_gpus_per_rank,
                max_restarts=0,
                runtime_env={"env_vars": env},
                resources=custom or None,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=r),
            ).remote(rank=r, world_size=num_ranks, **learner_kwargs)
            for r in range(num_ranks)
        ]
        single_node = len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 1
        addr, port = ray.get(self.actors[0].node_address.remote(single_node))
        self.info = self._all("setup", addr, port, step=-1, timeout=setup_timeout_s)
        self.step = 0

    def _all(
        self, method: str, *args: Any, step: Optional[int] = None, timeout: Optional[float] = None, **kwargs: Any
    ) -> List[Any]:
        refs = [getattr(a, method).remote(*args, **kwargs) for a in self.actors]
        return self._get(refs, self.step if step is None else step, timeout)

    def _get(self, refs: Sequence[Any], step: int, timeout: Optional[float] = None) -> List[Any]:
        out: List[Any] = [None] * len(refs)
        pending = {ref: r for r, ref in enumerate(refs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not done:
                raise TimeoutError(f"learner group: no rank answered within {timeout} s at step {step}")
            ref = done[0]
            rank = pending.pop(ref)
            try:
                out[rank] = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                self.shutdown()
                raise LearnerDied(rank, step, exc) from exc
        return out

    def _check_media(self, media: Optional[Sequence[Any]], n: int) -> None:
        """With media references, every rank fetches its part first; lost media (their decode
        worker's node is gone) raise ``MediaLost`` before any rank starts the step, whose
        collectives would otherwise wait for a rank that failed."""
        from diadem_ray.data.media_refs import MediaLost
        from diadem_ray.types import MediaRef

        if media is None or not any(isinstance(m, MediaRef) for m in media):
            return
        lost = sorted(
            {
                c
                for part in self._get(
                    [a.check_media.remote(_part(media, s)) for a, s in zip(self.actors, self._shards(n))], self.step
                )
                for c in part
            }
        )
        if lost:
            raise MediaLost(f"media of clip(s) {', '.join(lost)} lost with the decode worker that held them", lost)

    def _shards(self, n: int) -> List[slice]:
        if n % self.num_ranks:
            raise ValueError(f"{n} sequences do not split evenly over {self.num_ranks} learner ranks")
        k = n // self.num_ranks
        return [slice(r * k, (r + 1) * k) for r in range(self.num_ranks)]

    def grpo_step(self, batch: GrpoBatch, **loss_kwargs: Any) -> Dict[str, float]:
        """One optimizer step over ``batch`` (each rank gets an equal part); returns rank-summed
        loss parts and rank-0 metrics. ``loss_kwargs``: those of the ranks' ``grpo_step``."""
        n = len(batch)
        self._check_media(batch.media or None, n)
        # Dr. GRPO's constant must be the same on every rank and micro-batch: the step's longest response
        # (at least 1: a step whose rollouts all ended before their first token has no loss, not a 0/0).
        loss_kwargs.setdefault("max_response_len", max(1, batch.max_response_len))
        refs = [
            a.grpo_step.remote(batch.part(s), num_tokens=float(batch.num_tokens), num_sequences=float(n), **loss_kwargs)
            for a, s in zip(self.actors, self._shards(n))
        ]
        metrics = self._get(refs, self.step)
        self.step += 1
        return _merge(metrics)

    def sft_step(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        media: Optional[Sequence[Any]] = None,
    ) -> Dict[str, float]:
        self._check_media(media, len(prompt_ids))
        num_tokens = float(sum(len(r) for r in response_ids))
        refs = [
            a.sft_step.remote(list(prompt_ids[s]), list(response_ids[s]), num_tokens=num_tokens, media=_part(media, s))
            for a, s in zip(self.actors, self._shards(len(prompt_ids)))
        ]
        metrics = self._get(refs, self.step)
        self.step += 1
        return _merge(metrics)

    def compute_logprobs(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        media: Optional[Sequence[Any]] = None,
        temperature: float = 1.0,
    ) -> List[List[float]]:
        """Per-token log-probs of each response at the sampling ``temperature``, gathered in order."""
        refs = [
            a.compute_logprobs.remote(list(prompt_ids[s]), list(response_ids[s]), _part(media, s), temperature)
            for a, s in zip(self.actors, self._shards(len(prompt_ids)))
        ]
        return [row for part in self._get(refs, self.step) for row in part]

    def set_lr(self, lr: float) -> None:
        self._all("set_lr", lr)

    def export_weights(self, bucket_bytes: int = 256 << 20):
        return self._all("export_weights", bucket_bytes)[0]

    def export_weights_ref(self, timeout: Optional[float] = None):
        """Rank 0's exported weights (host arrays: :class:`~diadem_ray.actors.host_weights.HostWeights`)
        as an ObjectRef, never fetched into the driver; every rank runs the export (ZeRO-3 gathers
        are collectives) and is awaited, failures named."""
        return self._rank0_ref([a.export_host_weights.remote() for a in self.actors], timeout)

    def export_buckets_ref(self, bucket_bytes: int, timeout: Optional[float] = None):
        """As :meth:`export_weights_ref`, in the earlier wire format: pickled torch tensors in
        ``bucket_bytes`` buckets (the weight-sync benchmark's baseline)."""
        return self._rank0_ref([a.export_weights.remote(bucket_bytes) for a in self.actors], timeout)

    def _rank0_ref(self, refs: List[Any], timeout: Optional[float]):
        pending = {ref: r for r, ref in enumerate(refs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout, fetch_local=False)
            if not done:
                raise TimeoutError(f"learner group: weight export not finished within {timeout} s at step {self.step}")
            rank = pending.pop(done[0])
            if rank != 0:
                self._get([done[0]], self.step)
        return refs[0]

    def parameter_snapshot(self, trainable_only: bool = True):
        return self._all("parameter_snapshot", trainable_only)[0]

    def run_all(self, method: str, *args: Any, timeout: Optional[float] = None) -> List[Any]:
        """Call ``method`` on every rank (a dead rank raises :class:`LearnerDied`, a silent one
        ``TimeoutError`` after ``timeout`` s)."""
        return self._all(method, *args, timeout=timeout)

    def anchor_reference(self, path: str) -> str:
        """The KL reference becomes the policy as it is now (every rank), written to ``path`` for
        a resumed run (rank 0); returns ``path``."""
        self._all("anchor_reference")
        self._all("save_reference", path)
        return path

    def load_reference(self, path: str) -> None:
        """Every rank restores the reference :meth:`anchor_reference` wrote (resume)."""
        self._all("load_reference", path)

    def save_policy(self, directory: str, meta: Mapping[str, Any]) -> str:
        """A servable policy directory (see :mod:`diadem_ray.models.policy`); returns its path."""
        return self._all("save_policy", directory, dict(meta))[0]

    def save_checkpoint(self, directory: str, metadata: Mapping[str, Any], keep_last: int = 0) -> str:
        """Write ``step_<n>`` on every rank, then the ``latest`` marker (atomically, last); then
        remove all but the newest ``keep_last`` step folders (0 keeps everything)."""
        tag = f"step_{self.step}"
        self._all("save_checkpoint", directory, tag, dict(metadata, learner_step=self.step))
        marker = Path(directory) / "latest"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(tag)
        os.replace(tmp, marker)
        if keep_last > 0:
            import shutil

            old = sorted((p for p in Path(directory).glob("step_*") if p.is_dir()), key=lambda p: int(p.name[5:]))
            for p in old[:-keep_last]:
                if p.name != tag:
                    shutil.rmtree(p, ignore_errors=True)
        return str(Path(directory) / tag)

    def amend_checkpoint(self, directory: str, metadata: Mapping[str, Any]) -> bool:
        """Replace the metadata of the latest checkpoint, when it holds the learners as they are now
        (no optimizer step since it was written): work done after it that left the weights alone
        (an evaluation, a profile, a policy export) is then not repeated by a resumed run. Returns
        False, changing nothing, when there is no checkpoint or the learners stepped since."""
        marker = Path(directory) / "latest"
        if not marker.is_file():
            return False
        meta_file = Path(directory) / marker.read_text().strip() / "meta.json"
        if not meta_file.is_file() or int(json.loads(meta_file.read_text()).get("learner_step", -1)) != self.step:
            return False
        tmp = meta_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(dict(metadata, learner_step=self.step), indent=2, sort_keys=True))
        os.replace(tmp, meta_file)
        return True

    def load_checkpoint(self, directory: str) -> Dict[str, Any]:
        marker = Path(directory) / "latest"
        if not marker.is_file():
            raise FileNotFoundError(f"{directory}: no 'latest' marker; nothing to resume from")
        tag = marker.read_text().strip()
        meta = self._all("load_checkpoint", directory, tag)[0]
        self.step = int(meta.get("learner_step", 0))
        return meta

    def shutdown(self) -> None:
        for a in getattr(self, "actors", []):
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self.actors = []
        if getattr(self, "pg", None) is not None:
            try:
                remove_placement_group(self.pg)
            except Exception:
                pass
            self.pg = None


def _merge(per_rank: List[Dict[str, float]]) -> Dict[str, float]:
    """``*_part`` values are each rank's share of the step's loss: sum them (and drop the
    suffix); everything else is reported from rank 0, and tokens/s are summed."""
    out: Dict[str, float] = {}
    for k, v in per_rank[0].items():
        if k.endswith("_part"):
            out[k[: -len("_part")]] = sum(m[k] for m in per_rank)
        elif k in ("learner/tokens", "learner/tokens_per_s"):
            out[k] = sum(m[k] for m in per_rank)
        else:
            out[k] = v
    return out


def _part(media: Optional[Sequence[Any]], s: slice) -> Optional[List[Any]]:
    return None if media is None else list(media[s])
