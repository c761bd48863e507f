"""The learner's weights leaving it: the export plan (LoRA merged, PEFT names stripped, a tied
``lm_head`` added), host arrays for the object store (torch buckets in process), vLLM's NCCL
weight transfer, parameter snapshots and the servable policy export. A mixin of
:class:`diadem_ray.actors.learner.Learner`, which owns ``engine``, ``rank``, ``zero_stage``,
``lora``, ``family`` and ``model_path``."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from diadem_ray.actors.host_weights import HostWeights

PEFT_PREFIX = "base_model.model."


class WeightsMixin:
    # owned by Learner, declared here for the type checker
    engine: Any
    family: Any
    model_path: str
    lora: Any
    rank: int
    zero_stage: int
    transfer: Any

    def _export_plan(self) -> List[Tuple[str, Any]]:
        """(engine name, parameter) in export order: LoRA adapters skipped (they are merged into
        the base weights during an export), PEFT prefixes stripped, and a tied ``lm_head.weight``
        added explicitly (engines that repack lm_head need it)."""
        module = self.engine.module
        plan: List[Tuple[str, Any]] = []
        for name, param in module.named_parameters():
            if "lora_" in name:
                continue
            key = name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name
            plan.append((key.replace(".base_layer.", "."), param))
        config = getattr(getattr(module, "base_model", module), "config", None) or module.config
        if getattr(config, "tie_word_embeddings", False) and "lm_head.weight" not in {k for k, _ in plan}:
            plan.append(("lm_head.weight", next(p for k, p in plan if k.endswith("embed_tokens.weight"))))
        return plan

    def _iter_export(self, plan: List[Tuple[str, Any]]):
        """Yield (name, full tensor) for ``plan``; under ZeRO-3 each parameter is gathered first,
        a collective every rank runs in the same order (the tensor is valid inside the step only)."""
        import deepspeed

        for key, param in plan:
            with deepspeed.zero.GatheredParameters([param], enabled=self.zero_stage == 3):
                yield key, param.data

    class _Merged:
        """Context: LoRA deltas merged into the base weights for the duration of an export."""

        def __init__(self, learner: "WeightsMixin"):
            self.module = learner.engine.module if learner.lora is not None else None

        def __enter__(self):
            if self.module is not None:
                self.module.merge_adapter()

        def __exit__(self, *exc):
            if self.module is not None:
                self.module.unmerge_adapter()

    def export_weights(self, bucket_bytes: int = 256 << 20) -> List[List[Tuple[str, torch.Tensor]]]:
        """Full weights as size-bounded buckets of (name, CPU tensor), names as the base model
        (and a rollout engine) expects them; LoRA deltas merged. Every rank must call it (ZeRO-3
        gathers are collectives); rank 0 returns the buckets, others ``[]``."""
        buckets: List[List[Tuple[str, torch.Tensor]]] = [[]]
        size = 0
        with self._Merged(self):
            for key, data in self._iter_export(self._export_plan()):
                if self.rank != 0:
                    continue
                tensor = data.detach().to("cpu", copy=True)
                if size and size + tensor.numel() * tensor.element_size() > bucket_bytes:
                    buckets.append([])
                    size = 0
                buckets[-1].append((key, tensor))
                size += tensor.numel() * tensor.element_size()
        return buckets if self.rank == 0 else []

    def export_host_weights(self) -> Optional[HostWeights]:
        """Full weights as host arrays (:class:`~diadem_ray.actors.host_weights.HostWeights`), each
        written once, straight from the parameter: the object-store push's wire format. Every rank
        must call it (ZeRO-3 gathers); rank 0 returns the weights, the others None."""
        with self._Merged(self):
            exported = self._iter_export(self._export_plan())
            if self.rank != 0:
                for _ in exported:
                    pass
                return None
            # Ray copies the arrays into the object store when this returns, after the LoRA merge is
            # undone and a ZeRO-3 gather freed: those need their own copy; ZeRO-1/2 weights are viewed.
            return HostWeights.of(exported, copy=self.zero_stage == 3 or self.lora is not None)

    # ---- NCCL weight transfer to the engines (GPU; vLLM's weight-transfer API) ----------------
    # Unverified on the CPU development machine; written against vLLM 0.32's
    # vllm.distributed.weight_transfer (NCCLTrainerWeightTransferEngine, WeightSource).

    def nccl_endpoint(self) -> Tuple[str, int]:
        """(this node's IP, a free port) for the transfer group's rendezvous (rank 0 opens it)."""
        import ray

        from diadem_ray.actors.net import free_port

        return ray.util.get_node_ip_address(), free_port()

    def export_metadata(self, verify: bool = False) -> List[Tuple[str, str, Tuple[int, ...]]]:
        """(name, dtype, full shape) of every tensor an NCCL push sends, from the vLLM
        ``WeightSource`` (no gather). ``verify``: also iterate the source through vLLM's own
        consistency check (a pass of gathers on every rank), so a metadata/iteration mismatch
        fails here, with the parameter named, instead of hanging an NCCL broadcast."""
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

        source = _export_source(self)
        meta = source.metadata()
        if verify:
            with self._Merged(self):
                for _ in NCCLTrainerWeightTransferEngine._checked_iter(source, meta):
                    pass
        return [(m.name, str(m.dtype).removeprefix("torch."), tuple(m.shape)) for m in meta]

    def nccl_init(self, master_address: str, master_port: int, world_size: int, client: Any) -> None:
        """Every rank: build the trainer engine. Rank 0 (the sender) rendezvouses with the
        replicas through ``client`` (cluster.weight_sync.ReplicaSyncClient); other ranks only
        join the ZeRO-3 gathers during :meth:`nccl_send`."""
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo, NCCLTrainerWeightTransferEngine

        source = _export_source(self)
        info = NCCLTrainerInitInfo(
            master_address=master_address, master_port=master_port, world_size=world_size, rank=self.rank
        )
        self.transfer = NCCLTrainerWeightTransferEngine.trainer_init(info, client=client, source=source)

    def nccl_send(self, version: int) -> Dict[str, float]:
        """Every rank: one full-weight broadcast from rank 0 into every replica (LoRA merged)."""
        start = time.perf_counter()
        self.transfer.client.version = version
        with self._Merged(self):
            self.transfer.send_weights()
        nbytes = sum(p.numel() * p.element_size() for _, p in self._export_plan()) if self.rank == 0 else 0
        return {"seconds": time.perf_counter() - start, "bytes": float(nbytes)}

    def parameter_snapshot(self, trainable_only: bool = True) -> Dict[str, torch.Tensor]:
        """Full parameters by name, float64 on CPU (every rank calls; rank 0 returns; tests)."""
        import deepspeed

        out: Dict[str, torch.Tensor] = {}
        for name, param in self.engine.module.named_parameters():
            if trainable_only and not param.requires_grad:
                continue
            with deepspeed.zero.GatheredParameters([param], enabled=self.zero_stage == 3):
                if self.rank == 0:
                    out[name] = param.detach().to("cpu", torch.float64, copy=True)
        return out

    def save_policy(self, directory: str, meta: Mapping[str, Any]) -> str:
        """Export the full weights (LoRA merged) as a servable policy directory
        (:mod:`diadem_ray.models.policy`); every rank calls, rank 0 writes."""
        from diadem_ray.models.policy import PolicyMeta, write_policy

        buckets = self.export_weights()
        if self.rank != 0:
            return ""
        tensors = [item for bucket in buckets for item in bucket]
        config = None
        if self.family.exports_module_config:  # e.g. the thinker's config, not the whole Omni model's
            module = self.engine.module
            config = (module.get_base_model() if hasattr(module, "get_base_model") else module).config.to_dict()
        return str(
            write_policy(directory, tensors, source_model_path=self.model_path, meta=PolicyMeta(**meta), config=config)
        )


def _export_source(learner: "WeightsMixin") -> Any:
    """vLLM ``WeightSource`` over a learner's export plan: ``metadata()`` from the full shapes
    (``ds_shape`` under ZeRO-3, no gather), iteration through :meth:`Learner._iter_export`."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class ExportSource(WeightSource):
        def metadata(self):
            return [
                ParamMeta(k, p.dtype, tuple(getattr(p, "ds_shape", None) or p.shape)) for k, p in learner._export_plan()
            ]

        def __iter__(self):
            return learner._iter_export(learner._export_plan())

    return ExportSource()
