"""Learner: one DeepSpeed data-parallel rank, owning the policy (and its frozen reference).

A plain class; :mod:`diadem_ray.cluster.learner_group` makes it a Ray actor and creates the ranks
in one placement group. ``deepspeed`` and ``peft`` are imported inside methods (docs/style.md §11).

Gradient bookkeeping: DeepSpeed runs with ``managed_gradient_accumulation: false``, so
``backward`` only accumulates locally and the single ``step()`` per optimizer step reduces and
updates. Losses are normalised by the *step's* token (or sequence) count over all ranks and
micro-batches (grpo.aggregate), and multiplied by the world size because DeepSpeed averages
gradients over data-parallel ranks; the gradient is then independent of how the batch is split.

Every collective has a timeout (``collective_timeout_s``): a dead peer fails the step instead of
hanging it.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from diadem_ray import grpo, packing
from diadem_ray.actors.learner_forward import ForwardMixin
from diadem_ray.actors.learner_reference import ReferenceMixin
from diadem_ray.actors.learner_weights import WeightsMixin
from diadem_ray.actors.net import free_port
from diadem_ray.types import GrpoBatch


def _skip_shm_build() -> None:
    """DeepSpeed JIT-compiles a shared-memory comm op on CPU (30–40 s per venv); the gloo backend
    never calls it, so the build is skipped."""
    import sys

    import deepspeed.comm.torch  # noqa: F401  (module object taken from sys.modules on purpose)

    comm: Any = sys.modules["deepspeed.comm.torch"]
    comm.build_shm_op = lambda: None


def _lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"lr_schedule must be constant, linear or cosine, got {schedule!r}")

    return factor


class Learner(ForwardMixin, WeightsMixin, ReferenceMixin):
    """One DeepSpeed rank. Construct, then :meth:`setup` on every rank with the same address."""

    def __init__(
        self,
        *,
        rank: int,
        world_size: int,
        model_path: str,
        zero_stage: int = 2,
        comm_backend: str = "auto",
        bf16: bool = False,
        lr: float = 1e-5,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
        total_steps: int = 1000,
        weight_decay: float = 0.0,
        grad_clip_norm: float = 1.0,
        micro_batch_size: int = 4,
        collective_timeout_s: float = 120.0,
        lora: Optional[Mapping[str, Any]] = None,
        optimizer: str = "adamw",
        need_reference: bool = True,
        seed: int = 0,
        family: str = "tiny_av",
        threads: int = 0,
        shared_prefix: bool = True,
    ):
        from diadem_ray.models.families import get_family

        if threads > 0:  # CPU: torch's intra-op threads (else Ray's OMP_NUM_THREADS: the rank's whole CPUs, >= 1)
            torch.set_num_threads(threads)
        self.rank, self.world_size = rank, world_size
        self.model_path = model_path
        self.family = get_family(family)
        self.zero_stage = zero_stage
        self.comm_backend = comm_backend
        self.bf16 = bf16
        self.lr, self.lr_schedule, self.warmup_steps, self.total_steps = lr, lr_schedule, warmup_steps, total_steps
        self.weight_decay, self.grad_clip_norm = weight_decay, grad_clip_norm
        self.micro_batch_size = micro_batch_size
        self.collective_timeout_s = collective_timeout_s
        self.lora = dict(lora) if lora and lora.get("enabled") else None
        self.optimizer_name = optimizer
        self.need_reference = need_reference
        self.seed = seed
        self.engine: Any = None
        self.reference: Any = None  # frozen full model (no LoRA); None with LoRA: see _reference_adapter
        # LoRA: the adapter weights the reference uses (None: the adapter-disabled base model)
        self._reference_adapter: Optional[Dict[str, torch.Tensor]] = None
        self.step_count = 0
        # a group's prompt runs once for all its samples (learner_forward); False: once per sequence
        self.shared_prefix = bool(shared_prefix)
        # per sequence: logits only where a response token is predicted (text-only batches); False: every position
        self.response_logits = True

    # ---- setup -----------------------------------------------------------------------------

    def node_address(self, single_node: bool) -> Tuple[str, int]:
        """(address, free port) for rank 0 to host the process group: loopback when every rank
        is on this node (nothing leaves the machine), else this host's resolvable address."""
        host = "127.0.0.1" if single_node else socket.gethostbyname(socket.gethostname())
        return host, free_port()

    def setup(self, master_addr: str, master_port: int) -> Dict[str, Any]:
        """Join the process group, load the model, build the DeepSpeed engine."""
        cuda = torch.cuda.is_available()
        backend = ("nccl" if cuda else "gloo") if self.comm_backend == "auto" else self.comm_backend
        os.environ.update(
            {
                "MASTER_ADDR": master_addr,
                "MASTER_PORT": str(master_port),
                "RANK": str(self.rank),
                "WORLD_SIZE": str(self.world_size),
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
            }
        )
        if not cuda:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        import deepspeed

        if backend == "gloo":
            _skip_shm_build()
        deepspeed.init_distributed(dist_backend=backend, timeout=timedelta(seconds=self.collective_timeout_s))
        self.device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        model = self._load_model()
        params = [p for p in model.parameters() if p.requires_grad]
        if self.optimizer_name == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "sgd":  # tests: the update equals -lr * gradient
            opt = torch.optim.SGD(params, lr=self.lr)
        else:
            raise ValueError(f"optimizer must be adamw or sgd, got {self.optimizer_name!r}")
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, _lr_lambda(self.lr_schedule, self.warmup_steps, self.total_steps)
        )
        ds_config = {
            "train_micro_batch_size_per_gpu": self.micro_batch_size,
            "gradient_accumulation_steps": 1,
            "managed_gradient_accumulation": False,
            "gradient_clipping": self.grad_clip_norm,
            "zero_optimization": {"stage": self.zero_stage},
            "zero_allow_untested_optimizer": True,  # SGD (tests) is a plain torch optimizer too
            "bf16": {"enabled": bool(self.bf16)},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        self._optimizer = opt
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=opt, lr_scheduler=sched, config=ds_config
        )
        if self.need_reference and self.lora is None:
            self.reference = self._load_model(trainable=False)
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in params)
        return {"rank": self.rank, "backend": backend, "params": n_params, "trainable_params": n_train}

    def _load_model(self, trainable: bool = True):
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        model = self.family.load_causal_lm(self.model_path, dtype=dtype)
        if not trainable:
            model.requires_grad_(False)
            return model.eval().to(self.device)
        if self.lora is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(
                    r=int(self.lora.get("rank", 16)),
                    lora_alpha=float(self.lora.get("alpha", 32)),  # type: ignore[arg-type]
                    lora_dropout=float(self.lora.get("dropout", 0.0)),
                    target_modules=list(self.lora.get("target_modules", ["q_proj", "v_proj"])),
                ),
            )
        return model.to(self.device)

    # ---- forward helpers ---------------------------------------------------------------------

    def _reference_logprobs(
        self, packed: Dict[str, torch.Tensor], media: Optional[Sequence[Any]] = None, temperature: float = 1.0
    ) -> torch.Tensor:
        with torch.no_grad():
            if self.lora is not None and self._reference_adapter is not None:  # the anchored adapter, swapped in
                with self._SwappedAdapter(self):
                    return self._forward(self.engine.module, packed, media=media, temperature=temperature)[0]
            if self.lora is not None:  # the reference is the adapter-disabled policy
                with self.engine.module.disable_adapter():
                    return self._forward(self.engine.module, packed, media=media, temperature=temperature)[0]
            if self.reference is None:
                raise RuntimeError("learner built with need_reference=False cannot compute a KL term")
            return self._forward(self.reference, packed, media=media, temperature=temperature)[0]

    @staticmethod
    def _media(media: Optional[Sequence[Any]], n: int) -> Optional[Sequence[Any]]:
        if media is None:
            return None
        if len(media) != n:
            raise ValueError(f"{n} prompts but {len(media)} media entries (give one per prompt, None for text-only)")
        from diadem_ray.data.media_refs import resolve
        from diadem_ray.models.media import expand_media, learner_media

        # References are fetched from the decode workers' nodes here; fields only the engines take
        # are dropped once per clip (the samples of a group share one mapping).
        kept: Dict[int, Any] = {}
        fetched = [m if m is None else kept.setdefault(id(m), learner_media(m)) for m in resolve(media) or []]
        return expand_media(fetched)

    def check_media(self, media: Optional[Sequence[Any]]) -> List[str]:
        """Fetch this rank's media references ahead of a step; the clips whose media are lost
        (their decode worker's node is gone), so that the group can stop before any rank starts."""
        from diadem_ray.data.media_refs import MediaLost, resolve

        try:
            resolve(media)
        except MediaLost as exc:
            return exc.clip_ids
        return []

    def compute_logprobs(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        media: Optional[Sequence[Any]] = None,
        temperature: float = 1.0,
    ) -> List[List[float]]:
        """Per-token log-probs of each response under the current policy at ``temperature`` (the
        rollouts' sampling temperature; no gradient). ``media``: one entry per prompt (the clip's
        video/audio features) for multimodal families, else None."""
        if not temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (log-probs of greedy decoding are not defined), got {temperature!r}"
            )
        media = self._media(media, len(prompt_ids))
        out: List[List[float]] = []
        self.engine.eval()
        with torch.no_grad():
            for unit in self._units(prompt_ids, media):
                packed = self._pack(prompt_ids, response_ids, unit)
                mb = unit.rows
                lp, _ = self._forward(
                    self.engine, packed, media=media[mb] if media is not None else None, temperature=temperature
                )
                for row, mask in zip(lp.float().cpu(), packed["response_mask"]):
                    out.append(row[mask.bool()].tolist())
        return out

    # ---- steps -------------------------------------------------------------------------------

    def grpo_step(
        self,
        batch: GrpoBatch,
        *,
        num_tokens: float,
        num_sequences: float,
        clip_eps_low: float = 0.2,
        clip_eps_high: float = 0.28,
        dual_clip_c: Optional[float] = None,
        kl_coef: float = 0.0,
        kl_estimator: str = "k3",
        entropy_coef: float = 0.0,
        loss_aggregation: str = "token_mean",
        max_response_len: Optional[int] = None,
        temperature: float = 1.0,
    ) -> Dict[str, float]:
        """One optimizer step on this rank's part of a batch (advantages per sequence, or per
        token with per-line credit; media as in :meth:`compute_logprobs`). ``num_tokens`` /
        ``num_sequences``: the whole step's response-token and sequence counts over all ranks;
        ``temperature``: the rollouts' sampling temperature, applied to the policy's and the
        reference's logits alike."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (the rollouts' sampling temperature), got {temperature!r}")
        start = time.perf_counter()
        prompt_ids, response_ids = batch.prompt_token_ids, batch.response_token_ids
        advantages: Sequence[Any] = batch.advantages
        rollout_logprobs = batch.rollout_logprobs or None
        media = self._media(batch.media or None, len(prompt_ids))
        # One optimizer step per rollout batch, so the weights of this forward are the weights that
        # generated the batch: the old log-probs are this forward's, detached (ratio exactly 1, the
        # gradient is A·∇logπ; verl does the same with one mini-batch and one epoch). This saves the
        # no-grad forward that recomputed them (1.29x per step, docs/benchmarks.md). Anything that
        # makes several updates per batch (PPO epochs, mini-batches, async) must recompute them first.
        self.engine.train()
        sums: Dict[str, float] = {}
        tokens = 0
        diff_sum, diff_n = 0.0, 0
        per_token = any(isinstance(a, (list, tuple)) for a in advantages)
        if per_token:  # mixed rows: a scalar advantage covers every token of its response
            advantages = [
                list(a) if isinstance(a, (list, tuple)) else [float(a)] * len(r)
                for a, r in zip(advantages, response_ids)
            ]
        for unit in self._units(prompt_ids, media):
            mb = unit.rows
            # the engine's sampling log-probs ride along as packed rows (packing checks their lengths)
            packed = self._pack(
                prompt_ids,
                response_ids,
                unit,
                old_logprobs=rollout_logprobs,
                advantages=advantages if per_token else None,
            )
            mb_media = media[mb] if media is not None else None
            lp, ent = self._forward(
                self.engine, packed, need_entropy=entropy_coef != 0.0, media=mb_media, temperature=temperature
            )
            mask = packed["response_mask"].to(self.device)
            old = lp.detach()
            if rollout_logprobs is not None:  # engine vs learner log-probs of the sampled tokens
                sampled = packed["old_logprobs"].to(self.device)
                diff_sum += float(((old.float() - sampled).abs() * mask).sum())
                diff_n += int(mask.sum())
            ref = self._reference_logprobs(packed, mb_media, temperature) if kl_coef != 0.0 else None
            if per_token:
                adv = packed["advantages"].to(self.device, lp.dtype)
            else:
                adv = torch.tensor(list(advantages[mb]), dtype=lp.dtype, device=self.device)
            loss, metrics = grpo.grpo_loss(
                lp,
                old,
                adv,
                mask,
                ref_logprobs=ref,
                entropy=ent,
                clip_eps_low=clip_eps_low,
                clip_eps_high=clip_eps_high,
                dual_clip_c=dual_clip_c,
                kl_coef=kl_coef,
                kl_estimator=kl_estimator,
                entropy_coef=entropy_coef,
                loss_aggregation=loss_aggregation,
                num_tokens=num_tokens,
                num_sequences=num_sequences,
                max_response_len=max_response_len,
            )
            self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            n = float(mask.sum())
            tokens += int(n)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k in ("clip_frac", "ratio_mean"):
                sums[k] = sums.get(k, 0.0) + metrics[k] * n
            for k in ("kl", "entropy"):
                if k in metrics:
                    sums[k] = sums.get(k, 0.0) + metrics[k]
        self.engine.step()
        self.step_count += 1
        elapsed = time.perf_counter() - start
        out = {
            "learner/loss_part": sums.pop("loss"),
            "learner/grad_norm": self._grad_norm(),
            "learner/lr": float(self.scheduler.get_last_lr()[0]),
            "learner/tokens": float(tokens),
            "learner/tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            "learner/seconds": elapsed,
            "learner/clip_frac": sums.pop("clip_frac") / max(1, tokens),
            "learner/ratio_mean": sums.pop("ratio_mean") / max(1, tokens),
        }
        out.update({f"learner/{k}_part": v for k, v in sums.items()})
        if rollout_logprobs is not None:
            out["learner/rollout_logprob_abs_diff"] = diff_sum / max(1, diff_n)
        return out

    def sft_step(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        *,
        num_tokens: float,
        media: Optional[Sequence[Any]] = None,
    ) -> Dict[str, float]:
        """One optimizer step of cross-entropy on response (caption) tokens only."""
        start = time.perf_counter()
        media = self._media(media, len(prompt_ids))
        self.engine.train()
        total, tokens = 0.0, 0
        for mb in self._micro_batches(len(prompt_ids)):  # one response per prompt: nothing to share
            packed = packing.pack_sequences(prompt_ids[mb], response_ids[mb])
            logits = self._logits(self.engine, packed, media[mb] if media is not None else None)
            mask = packed["response_mask"].to(self.device)
            loss = grpo.sft_loss(logits, packed["targets"].to(self.device), mask, num_tokens=num_tokens)
            self.engine.backward(loss * self.world_size, scale_wrt_gas=False)
            total += float(loss.detach())
            tokens += int(mask.sum())
        self.engine.step()
        self.step_count += 1
        elapsed = time.perf_counter() - start
        return {
            "learner/sft_loss_part": total,
            "learner/grad_norm": self._grad_norm(),
            "learner/tokens": float(tokens),
            "learner/lr": float(self.scheduler.get_last_lr()[0]),
            "learner/seconds": elapsed,
        }

    def set_shared_prefix(self, on: bool, micro_batch_size: int = 0) -> None:
        """A group's prompt once for all its samples (default) or once per sequence (kept for
        comparison: ``bench/learner_step.py --compare prefix``); ``micro_batch_size`` > 0 also
        sets the sequences per forward (each path at the size that fits its memory)."""
        self.shared_prefix = bool(on)
        if micro_batch_size > 0:
            self.micro_batch_size = int(micro_batch_size)

    def set_response_logits(self, on: bool) -> None:
        """Per sequence: logits only from the first response position (default) or at every position
        (kept for comparison: ``bench/learner_step.py --compare logits``)."""
        self.response_logits = bool(on)

    def set_lr(self, lr: float) -> None:
        """A stage's learning rate: the schedule's base value from now on."""
        self.scheduler.base_lrs = [lr for _ in self.scheduler.base_lrs]
        for g, f in zip(self._optimizer.param_groups, self.scheduler.lr_lambdas):
            g["lr"] = lr * f(self.scheduler.last_epoch)

    def _grad_norm(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    # ---- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, directory: str, tag: str, metadata: Mapping[str, Any]) -> str:
        """DeepSpeed state + this rank's RNG; rank 0 writes ``meta.json`` into the tag folder.
        The ``latest`` marker is written by the group after every rank has returned."""
        root = Path(directory)
        self.engine.save_checkpoint(str(root), tag=tag, client_state={"step_count": self.step_count}, save_latest=False)
        tag_dir = root / tag
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(rng, tag_dir / f"rng_rank{self.rank}.pt")
        if self.rank == 0:
            tmp = tag_dir / "meta.json.tmp"
            tmp.write_text(json.dumps(dict(metadata), indent=2, sort_keys=True))
            os.replace(tmp, tag_dir / "meta.json")
        return str(tag_dir)

    def load_checkpoint(self, directory: str, tag: str) -> Dict[str, Any]:
        root = Path(directory)
        _, client = self.engine.load_checkpoint(str(root), tag=tag)
        if client is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {root / tag}")
        self.step_count = int(client.get("step_count", 0))
        rng = torch.load(root / tag / f"rng_rank{self.rank}.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return json.loads((root / tag / "meta.json").read_text())

    def ping(self) -> int:
        return self.rank
