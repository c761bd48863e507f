"""Seconds and GB/s per learner → engine weight push (CPU: object store + the replica's staged load),
the host-array wire (numpy buffers, read in place by the replica) against the earlier pickled
torch buckets, median of ``--pushes`` each. Each kind of push runs in learners and a replica of its
own, one set alive at a time (the product never mixes wires in one replica, and a replica's heap after
pickled buckets is not the one host arrays meet in a run), in ``--rounds`` phases per kind taken in
turn (A B A B). The first pushes of a phase are timed apart (``--warmup``, by default as many as
the object store holds, at most 10: until every page of the store has been written once, each process that
writes or maps a push takes a page fault per page it has not touched before, and an early push
costs up to 0.3 s more than a later one); the table's median is of the pushes after them, the
warm-up median is printed beside it. ``--no-reuse`` adds the host-array wire between
learners and replicas started with ``cluster.reuse_freed_memory=false`` (glibc hands large freed
blocks back to the kernel; ``diadem_ray/cluster/worker_env.py``).

    .venv/bin/python bench/weight_sync.py --smollm2 --pushes 10 [--no-reuse]   # SmolLM2-135M (651 MB fp32)
    .venv/bin/python bench/weight_sync.py --hidden 64 256 512                  # tiny random LMs
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

WIRES = ("host_arrays", "torch_buckets")
# A push is exported while the version the engine holds is still kept (a restarted replica reloads it):
# 1.3 GB of SmolLM2 at once, more while Ray frees earlier ones. A 1.5 GB store spilled 13 GB of pushes
# to disk in one run of this script, timing the disk; room for about five pushes keeps them in memory.
STORE_BYTES = 3_200_000_000
NO_REUSE = "host_arrays, no reuse"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=5, help="pushes measured per kind (over all rounds)")
    ap.add_argument("--rounds", type=int, default=2, help="phases per kind, taken in turn")
    ap.add_argument(
        "--warmup", type=int, default=None, help="first pushes of a phase timed apart (default: store/push)"
    )
    ap.add_argument("--hidden", type=int, nargs="*", default=[])
    ap.add_argument("--smollm2", action="store_true", help="the bundled SmolLM2-135M (the demo's backbone)")
    ap.add_argument("--no-reuse", action="store_true", help="also: host arrays without reuse_freed_memory")
    args = ap.parse_args()
    import ray

    from diadem_ray.cluster.weight_sync import WeightSync
    from diadem_ray.models.smollm2 import smollm2_checkpoint
    from diadem_ray.models.tiny_lm import build_tiny_lm

    models = [("SmolLM2-135M", str(smollm2_checkpoint()))] if args.smollm2 else []
    for hidden in args.hidden or ([] if args.smollm2 else [64, 256, 512]):
        path = build_tiny_lm(
            tempfile.mkdtemp(),
            hidden_size=hidden,
            num_heads=max(2, hidden // 32),
            num_kv_heads=max(1, hidden // 64),
            num_layers=4,
            vocab_size=8192,
        )
        models.append((f"tiny, hidden {hidden}", str(path)))
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=STORE_BYTES, log_to_driver=False)
    rows = []
    try:
        for label, model in models:
            kinds = list(WIRES) + ([NO_REUSE] if args.no_reuse else [])
            results: dict = {k: [] for k in kinds}
            warm: dict = {k: [] for k in kinds}
            per_phase = -(-args.pushes // args.rounds)  # rounded up
            for _ in range(args.rounds):
                for kind in kinds:
                    learners, rollouts = start_groups(model, reuse=kind != NO_REUSE)
                    sync = WeightSync(learners, rollouts, wire=kind.split(",")[0], bucket_bytes=256 << 20)
                    first = sync.push()
                    warmup = (
                        args.warmup if args.warmup is not None else min(10, -(-STORE_BYTES // int(first["sync/bytes"])))
                    )
                    warm[kind].append(first)
                    for _ in range(warmup - 1):
                        warm[kind].append(sync.push())
                    for _ in range(per_phase):
                        results[kind].append(sync.push())
                    rollouts.shutdown()
                    learners.shutdown()
                    del sync, learners, rollouts  # drop this phase's pushes from the store before the next
                    gc.collect()
            for w, kept in results.items():
                secs = statistics.median(r["sync/seconds"] for r in kept)
                mb = kept[0]["sync/bytes"] / 1e6
                parts = {k: statistics.median(r[f"sync/{k}_seconds"] for r in kept) for k in ("export", "load")}
                first = statistics.median(r["sync/seconds"] for r in warm[w])
                pushes = [round(r["sync/seconds"], 3) for r in kept]
                rows.append((label, w, mb, secs, mb / 1e3 / secs, pushes, parts, first, len(warm[w])))
    finally:
        ray.shutdown()
    print(
        "| model | wire | weights MB | seconds per push (median) | GB/s | export s | replica load s | pushes (s) "
        "| warm-up pushes: n, median s |\n|---|---|---|---|---|---|---|---|---|"
    )
    for label, wire, mb, secs, gbps, runs, parts, first, n_warm in rows:
        print(
            f"| {label} | {wire} | {mb:.1f} | {secs:.3f} | {gbps:.3f} | {parts['export']:.3f} | {parts['load']:.3f} "
            f"| {runs} | {n_warm}, {first:.3f} |"
        )
    by = {(r[0], r[1]): r[3] for r in rows}  # (model, wire) -> median seconds
    for label, _ in models:
        print(f"{label}: host arrays {by[(label, 'torch_buckets')] / by[(label, 'host_arrays')]:.2f}x faster")
        if (label, NO_REUSE) in by:
            print(f"{label}: reusing freed memory {by[(label, NO_REUSE)] / by[(label, 'host_arrays')]:.2f}x faster")


def start_groups(model: str, reuse: bool):
    """2 ZeRO-2 learner ranks and one replica of ``model`` (``reuse``: cluster.reuse_freed_memory)."""
    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.cluster.rollout_group import RolloutGroup

    learners = LearnerGroup(
        num_ranks=2,
        num_cpus_per_rank=0.5,
        model_path=model,
        zero_stage=2,
        need_reference=False,
        reuse_freed_memory=reuse,
    )
    rollouts = RolloutGroup(  # the replica of configs/demo_cpu.yaml: half a CPU reserved, 2 OpenMP threads
        num_replicas=1,
        num_cpus_per_replica=0.5,
        cpu_threads=2,
        model_path=model,
        max_model_len=256,
        reuse_freed_memory=reuse,
    )
    return learners, rollouts


if __name__ == "__main__":
    main()
