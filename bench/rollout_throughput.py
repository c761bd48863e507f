"""Rollout tokens/s through the Ray actor vs the same engine called directly in-process, same
prompts, same run (issue target: actor >= 0.95x direct).

    .venv/bin/python bench/rollout_throughput.py [--repeats 5] [--prompts 32] [--samples 4] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from diadem_ray.types import Prompt

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()

    import ray

    from diadem_ray.actors.rollout import RolloutWorker
    from diadem_ray.cluster.rollout_group import RolloutGroup
    from diadem_ray.models.tiny_lm import build_tiny_lm

    model = str(build_tiny_lm(tempfile.mkdtemp(), seed=0))
    prompts = [Prompt(f"p{i}", (3 + i % 400, 17, 42, 99)) for i in range(args.prompts)]
    kw = dict(samples_per_prompt=args.samples, max_new_tokens=args.max_new_tokens, seed=0)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300_000_000, log_to_driver=False)
    try:
        group = RolloutGroup(
            num_replicas=1,
            num_cpus_per_replica=1,
            model_path=model,
            max_model_len=256,
            max_num_seqs=args.prompts * args.samples,
            chunk_size=args.prompts,
        )
        direct = RolloutWorker(model_path=model, max_model_len=256, max_num_seqs=args.prompts * args.samples)
        direct.setup()
        group.generate(prompts, **kw)  # warm-up both
        direct.generate(prompts, **kw)
        rates = {"actor": [], "direct": []}
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            t = time.perf_counter()
            out, _ = group.generate(prompts, **kw)
            rates["actor"].append(sum(len(r.token_ids) for r in out) / (time.perf_counter() - t))
            t = time.perf_counter()
            out = direct.generate(prompts, **kw)
            rates["direct"].append(sum(len(r.token_ids) for r in out) / (time.perf_counter() - t))
        group.shutdown()
    finally:
        ray.shutdown()
    a, d = statistics.median(rates["actor"]), statistics.median(rates["direct"])
    print(f"prompts={args.prompts} samples={args.samples} max_new_tokens={args.max_new_tokens} repeats={args.repeats}")
    print("| path | tokens/s (median) | runs |\n|---|---|---|")
    print(f"| direct in-process engine | {d:,.0f} | {[round(x) for x in rates['direct']]} |")
    print(f"| through the Ray actor | {a:,.0f} | {[round(x) for x in rates['actor']]} |")
    print(f"ratio actor/direct: {a / d:.3f}")


if __name__ == "__main__":
    main()
