"""Seconds per GRPO learner step, two comparisons, each measured in one run (interleaved):

* ``--compare logits`` (default): logits only from the first response position of the batch
  against logits at every position (``Learner.set_response_logits``);
* ``--compare old-logprobs``: old log-probs taken from the training forward itself (one optimizer
  step per rollout batch) against a separate no-grad forward recomputing them first;
* ``--compare layout``: one rank with 2 torch threads against 2 ZeRO-2 ranks of 1 thread each
  (the learner layout of a 2-core box; both groups alive, steps interleaved);
* ``--compare prefix``: each group's prompt encoded once for its samples (``learner.shared_prefix``)
  against once per sequence. ``--samples`` sets the samples per prompt (consecutive sequences
  share a prompt; each rank holds whole groups when ``--sequences`` is a multiple of 2 x samples).
* ``--compare reuse``: ranks that keep large freed blocks for reuse (``cluster.reuse_freed_memory``,
  the default) against ranks started without it (both groups alive, steps interleaved).

For ``old-logprobs`` the earlier step is rebuilt exactly as it was: ``compute_logprobs`` over the
batch (what it did first) followed by the update. Shapes follow ``configs/bench_tiny_av.yaml``: SmolLM2-135M (the
tiny_av backbone), 2 ZeRO-2 ranks on gloo, micro-batch 4, 24 sequences of about 300 prompt + 128
response tokens (``--prompt`` / ``--response`` change them).

    .venv/bin/python bench/learner_step.py [--compare logits|old-logprobs|layout|prefix] [--repeats 5]
        [--sequences 24] [--samples 1] [--prompt 300] [--response 128] [--model smollm2|tiny]
    .venv/bin/python bench/learner_step.py --compare prefix --samples 8 --sequences 16 --prompt 2000 \
        --per-sequence-micro-batch 1
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sequences", type=int, default=24)
    ap.add_argument("--prompt", type=int, default=300, help="prompt tokens per sequence")
    ap.add_argument("--response", type=int, default=128, help="response tokens per sequence")
    ap.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    ap.add_argument("--samples", type=int, default=1, help="samples per prompt (consecutive sequences share it)")
    ap.add_argument("--micro-batch", type=int, default=0, help="learner.micro_batch_size (default: 4, or --samples)")
    ap.add_argument(
        "--per-sequence-micro-batch",
        type=int,
        default=0,
        help="--compare prefix: sequences per forward of the per-sequence step (default: --micro-batch)",
    )
    ap.add_argument("--compare", choices=("logits", "old-logprobs", "layout", "prefix", "reuse"), default="logits")
    args = ap.parse_args()
    import ray

    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.types import GrpoBatch

    if args.model == "smollm2":
        from diadem_ray.models.smollm2 import smollm2_checkpoint

        model, vocab = str(smollm2_checkpoint()), 49152
    else:
        from diadem_ray.models.tiny_lm import build_tiny_lm

        model, vocab = str(build_tiny_lm(tempfile.mkdtemp(), hidden_size=256, num_layers=4, vocab_size=8192)), 8192
    rng = random.Random(0)
    if args.sequences % args.samples:
        raise SystemExit(f"--sequences {args.sequences} is not a multiple of --samples {args.samples}")
    distinct = [[rng.randrange(10, vocab) for _ in range(args.prompt)] for _ in range(args.sequences // args.samples)]
    prompts = [p for p in distinct for _ in range(args.samples)]
    micro = args.micro_batch or max(4, args.samples)
    responses = [
        [rng.randrange(10, vocab) for _ in range(args.response - rng.randrange(0, args.response // 4))]
        for _ in range(args.sequences)
    ]
    advantages = [rng.uniform(-1.0, 1.0) for _ in range(args.sequences)]
    loss = {"loss_aggregation": "token_mean", "clip_eps_low": 0.2, "clip_eps_high": 0.28}
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=500_000_000, log_to_driver=False)
    now, before = [], []
    try:

        def group(num_ranks: int, threads: int = 0, reuse: bool = True) -> LearnerGroup:
            return LearnerGroup(
                num_ranks=num_ranks,
                num_cpus_per_rank=0.5,
                model_path=model,
                zero_stage=2,
                micro_batch_size=micro,
                need_reference=False,
                lr=1e-7,
                threads=threads,
                reuse_freed_memory=reuse,
            )

        learners = group(2)
        batch = GrpoBatch.of(prompts, responses, advantages)
        learners.grpo_step(batch, **loss)  # warm-up (first-step allocations)
        single = None
        if args.compare in ("layout", "reuse"):
            single = group(1, threads=2) if args.compare == "layout" else group(2, reuse=False)
            single.grpo_step(batch, **loss)
        for _ in range(args.repeats):  # interleaved, so drift on the machine hits both alike
            t0 = time.perf_counter()
            learners.grpo_step(batch, **loss)
            now.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            if single is not None:
                single.grpo_step(batch, **loss)
            elif args.compare == "prefix":
                learners.run_all("set_shared_prefix", False, args.per_sequence_micro_batch or micro)
                learners.grpo_step(batch, **loss)
                learners.run_all("set_shared_prefix", True, micro)
            elif args.compare == "logits":
                learners.run_all("set_response_logits", False)
                learners.grpo_step(batch, **loss)
                learners.run_all("set_response_logits", True)
            else:
                learners.compute_logprobs(prompts, responses)
                learners.grpo_step(batch, **loss)
            before.append(time.perf_counter() - t0)
        learners.shutdown()
        if single is not None:
            single.shutdown()
    finally:
        ray.shutdown()
    med_now, med_before = statistics.median(now), statistics.median(before)
    print(
        f"model {args.model}, {args.sequences} sequences ({args.samples} per prompt) x ({args.prompt} prompt + "
        f"<= {args.response} response) tokens, 2 ZeRO-2 ranks, micro-batch {micro}"
        + (
            f" (per sequence: {args.per_sequence_micro_batch})"
            if args.compare == "prefix" and args.per_sequence_micro_batch
            else ""
        )
        + f", {args.repeats} repeats"
    )
    print("| step | seconds (median) | runs (s) |\n|---|---|---|")
    if args.compare == "reuse":
        print(f"| freed blocks handed back to the kernel | {med_before:.2f} | {[round(x, 2) for x in before]} |")
        print(f"| freed blocks reused (reuse_freed_memory) | {med_now:.2f} | {[round(x, 2) for x in now]} |")
        print(f"speed-up: {med_before / med_now:.2f}x")
        return
    if args.compare == "layout":
        print(f"| 1 rank x 2 threads | {med_before:.2f} | {[round(x, 2) for x in before]} |")
        print(f"| 2 ZeRO-2 ranks x 1 thread | {med_now:.2f} | {[round(x, 2) for x in now]} |")
        print(f"2 ranks x 1 thread vs 1 rank x 2 threads: {med_before / med_now:.2f}x")
        return
    if args.compare == "prefix":
        print(f"| prompt once per sequence | {med_before:.2f} | {[round(x, 2) for x in before]} |")
        print(f"| prompt once per group (shared prefix) | {med_now:.2f} | {[round(x, 2) for x in now]} |")
    elif args.compare == "logits":
        print(f"| logits at every position | {med_before:.2f} | {[round(x, 2) for x in before]} |")
        print(f"| logits from the first response position | {med_now:.2f} | {[round(x, 2) for x in now]} |")
    else:
        print(f"| before: recompute old log-probs, then update | {med_before:.2f} | {[round(x, 2) for x in before]} |")
        print(f"| now: old log-probs from the training forward | {med_now:.2f} | {[round(x, 2) for x in now]} |")
    print(f"speed-up: {med_before / med_now:.2f}x")


if __name__ == "__main__":
    main()
