"""The learner's KL reference: anchored at the policy GRPO starts from, saved and restored for
``--resume``. A mixin of :class:`diadem_ray.actors.learner.Learner`, which owns ``engine``,
``reference``, ``_reference_adapter``, ``lora``, ``rank``, ``zero_stage`` and ``device``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch


class ReferenceMixin:
    # owned by Learner, declared here for the type checker
    engine: Any
    reference: Any
    _reference_adapter: Any
    lora: Any
    rank: int
    zero_stage: int
    device: Any

    # The reference of a KL term is the policy RL starts from (DeepSeekMath's GRPO; OpenRLHF, verl,
    # TRL and NeMo-RL load it from the same path as the actor, which is the SFT checkpoint). A run
    # that does SFT itself must move the reference there when GRPO begins, or the KL pulls the
    # policy back to the untrained backbone it was built from: :meth:`anchor_reference`.

    def _lora_params(self) -> List[Tuple[str, Any]]:
        return [(n, p) for n, p in self.engine.module.named_parameters() if "lora_" in n]

    class _SwappedAdapter:
        """Context: the anchored LoRA weights in the adapter, the policy's own restored on exit
        (in place, ZeRO ≤ 2 only: the parameters are whole on every rank)."""

        def __init__(self, learner: "ReferenceMixin"):
            self.learner = learner
            self.saved: Dict[str, torch.Tensor] = {}

        def __enter__(self):
            for n, p in self.learner._lora_params():
                self.saved[n] = p.data.clone()
                p.data.copy_(self.learner._reference_adapter[n])

        def __exit__(self, *exc):
            for n, p in self.learner._lora_params():
                p.data.copy_(self.saved[n])

    def anchor_reference(self) -> int:
        """Make the KL reference the policy as it is now (every rank calls; no collective except
        ZeRO-3's per-parameter gathers, in the same order on every rank). Returns the number of
        tensors copied. Full fine-tuning copies every parameter into the frozen reference model;
        LoRA keeps a copy of the adapter weights and swaps them in for the reference forward."""
        import deepspeed

        if self.lora is not None:
            if self.zero_stage == 3:
                raise RuntimeError(
                    "a LoRA learner under ZeRO-3 cannot anchor its KL reference (the adapter swap needs "
                    "whole parameters): use learner.zero_stage <= 2, or grpo.kl_coef=0"
                )
            self._reference_adapter = {n: p.detach().clone() for n, p in self._lora_params()}
            return len(self._reference_adapter)
        if self.reference is None:
            raise RuntimeError("learner built with need_reference=False has no KL reference to anchor")
        ref = dict(self.reference.named_parameters())
        missing = [n for n, _ in self.engine.module.named_parameters() if n not in ref]
        if missing:
            raise RuntimeError(f"policy parameters absent from the reference model: {missing[:5]}")
        for name, param in self.engine.module.named_parameters():
            with deepspeed.zero.GatheredParameters([param], enabled=self.zero_stage == 3):
                ref[name].data.copy_(param.data)
        return len(ref)

    def save_reference(self, path: str) -> str:
        """Rank 0 writes the anchored reference to ``path`` (safetensors; the frozen model's
        weights, or the LoRA adapter's); the other ranks return at once."""
        from safetensors.torch import save_file, save_model

        if self.rank != 0:
            return ""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp"
        if self.lora is not None:
            if self._reference_adapter is None:
                raise RuntimeError("no anchored LoRA reference to save (call anchor_reference first)")
            save_file({n: t.contiguous().cpu() for n, t in self._reference_adapter.items()}, tmp)
        else:
            save_model(self.reference, tmp)  # handles a tied lm_head/embedding
        os.replace(tmp, path)
        return path

    def load_reference(self, path: str) -> None:
        """Every rank: restore a reference written by :meth:`save_reference` (resume)."""
        from safetensors.torch import load_file, load_model

        if not Path(path).is_file():
            raise FileNotFoundError(
                f"KL reference {path} is missing: the checkpoint's run anchored its reference there "
                "when GRPO began; restore the file, or resume with grpo.kl_coef=0"
            )
        if self.lora is not None:
            self._reference_adapter = {n: t.to(self.device) for n, t in load_file(path).items()}
            expected = {n for n, _ in self._lora_params()}
            if set(self._reference_adapter) != expected:
                raise RuntimeError(
                    f"KL reference {path} does not hold this learner's LoRA adapter "
                    f"({len(self._reference_adapter)} tensors, expected {len(expected)})"
                )
            return
        if self.reference is None:
            raise RuntimeError("learner built with need_reference=False cannot load a KL reference")
        load_model(self.reference, path, strict=True, device=str(self.device))
