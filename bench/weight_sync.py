"""Seconds and GB/s per learner → engine weight sync vs model size (CPU: object store +
vLLM reload_weights), median of several pushes per size.

    .venv/bin/python bench/weight_sync.py [--pushes 5] [--hidden 64 256 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256, 512])
    args = ap.parse_args()
    import ray

    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.cluster.rollout_group import RolloutGroup
    from diadem_ray.cluster.weight_sync import WeightSync
    from diadem_ray.models.tiny_lm import build_tiny_lm

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=500_000_000, log_to_driver=False)
    rows = []
    try:
        for hidden in args.hidden:
            model = str(
                build_tiny_lm(
                    tempfile.mkdtemp(),
                    hidden_size=hidden,
                    num_heads=max(2, hidden // 32),
                    num_kv_heads=max(1, hidden // 64),
                    num_layers=4,
                    vocab_size=8192,
                )
            )
            learners = LearnerGroup(
                num_ranks=2, num_cpus_per_rank=0.5, model_path=model, zero_stage=2, need_reference=False
            )
            rollouts = RolloutGroup(num_replicas=1, num_cpus_per_replica=0.5, model_path=model, max_model_len=256)
            sync = WeightSync(learners, rollouts, bucket_bytes=16 << 20)
            results = [sync.push() for _ in range(args.pushes)]
            secs = statistics.median(r["sync/seconds"] for r in results)
            mb = results[0]["sync/bytes"] / 1e6
            rows.append((hidden, mb, secs, mb / 1e3 / secs, [round(r["sync/seconds"], 3) for r in results]))
            rollouts.shutdown()
            learners.shutdown()
    finally:
        ray.shutdown()
    print("| hidden | weights MB (fp32) | seconds per sync (median) | GB/s | runs (s) |\n|---|---|---|---|---|")
    for hidden, mb, secs, gbps, runs in rows:
        print(f"| {hidden} | {mb:.1f} | {secs:.3f} | {gbps:.3f} | {runs} |")


if __name__ == "__main__":
    main()
