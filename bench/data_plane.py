"""The streaming data plane under training: what the driver process holds and puts as clips grow,
and how long steps wait for clips.

Runs ``diadem-ray train`` (sft → profile → grpo_stage1) with model.family qwen2_5_omni and a tiny
random thinker, ``data.cache: none``, in a child process per clip size: the synthetic clips as made
(1x), and the same clips re-encoded at 3x3 the resolution, decoded at 4x the frames (media bytes
per clip measured and printed). The child records its peak RSS (``ru_maxrss``), every ``ray.put``
made in the driver process (count and bytes), the owner of every media reference the driver passed
on, and each step's ``time/data_wait_s`` and ``time/step_s``.

    .venv/bin/python bench/data_plane.py --repeats 3
    .venv/bin/python bench/data_plane.py --mlflow runs/mlflow.db --run demo-cpu   # data wait of a finished run

Steady state: steps other than the first of each stage (the first waits for the stage's first clips).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

STEPS = [
    "data.train_clips=4",
    "data.eval_clips=2",
    "rollout.backend=hf",
    "rollout.samples_per_prompt=2",
    "rollout.max_new_tokens=6",
    "rollout.cpu_threads=1",
    "rollout.prompts_per_task=2",
    "learner.num_ranks=1",
    "learner.micro_batch_size=2",
    "stages.sft.steps=4",
    "stages.sft.prompts_per_step=2",
    "stages.profile.quantiles=true",
    "stages.grpo_stage1.steps=4",
    "stages.grpo_stage1.prompts_per_step=2",
    "stages.eval.max_new_tokens=6",
    "checkpoint.every_steps=100",
    "run.stages=[sft,profile,grpo_stage1]",
    "model.family=qwen2_5_omni",
    "model.max_prompt_tokens=8192",
    "data.cache=none",
]
SCALES = {
    "1x": ["data.frames_per_clip=16", "model.video_fps=2.0", "model.max_pixels_per_frame=12288"],
    "10x": ["data.frames_per_clip=64", "model.video_fps=8.0", "model.max_pixels_per_frame=110592"],
}


def child(out: str, argv: list) -> None:
    """One training run in this process, instrumented (see the module docstring)."""
    import resource

    import ray

    from diadem_ray.cli import main
    from diadem_ray.driver import Driver
    from diadem_ray.driver.calls import ClipCalls
    from diadem_ray.types import MediaRef

    puts = {"count": 0, "bytes": 0}
    real_put = ray.put

    def counting_put(value, *a, **k):
        import pickle

        buffers: list = []
        head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)  # arrays stay out of band: no copy
        puts["count"] += 1
        puts["bytes"] += len(head) + sum(b.raw().nbytes for b in buffers)
        return real_put(value, *a, **k)

    ray.put = counting_put
    media = {"refs": 0, "owned_by_driver": 0, "bytes": []}
    prompt = ClipCalls.prompt

    def seen(self, enc, tag):
        p = prompt(self, enc, tag)
        if isinstance(p.media, MediaRef):
            from ray.core.generated.common_pb2 import Address

            a = Address()
            a.ParseFromString(p.media.ref.owner_address())
            media["refs"] += 1
            media["owned_by_driver"] += a.worker_id.hex() == ray.get_runtime_context().get_worker_id()
            media["bytes"].append(p.media.nbytes)
        return p

    ClipCalls.prompt = seen
    steps = []
    end_step = Driver._end_step

    def record(self, stage, step, total, metrics, summary):
        steps.append(
            {"stage": stage, "step": step, "wait": metrics.get("time/data_wait_s"), "total": metrics["time/step_s"]}
        )
        end_step(self, stage, step, total, metrics, summary)

    Driver._end_step = record
    rc = main(argv)
    Path(out).write_text(
        json.dumps(
            {
                "rc": rc,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "puts": puts,
                "media": media,
                "steps": steps,
            }
        )
    )


def upscale(root: Path, factor: int) -> None:
    """Re-encode every video under ``root`` at ``factor`` x ``factor`` the resolution, in place."""
    from diadem_ray.data.decode import decode_clip
    from diadem_ray.data.synth import write_mp4

    for path in sorted(root.rglob("*.mp4")):
        m = decode_clip(str(path), max_frames=100_000, sample_rate_hz=16000)
        write_mp4(path, m.frames.repeat(factor, axis=1).repeat(factor, axis=2), m.audio, fps=8)  # synth's frame rate


def steady(steps: list) -> tuple:
    """(median data wait / median step seconds over steady-state steps, share of the step)."""
    rows = [s for s in steps if s["step"] > 0 and s["wait"] is not None]
    wait, total = statistics.median(s["wait"] for s in rows), statistics.median(s["total"] for s in rows)
    return wait, total, sum(s["wait"] for s in rows) / sum(s["total"] for s in rows)


def from_mlflow(db: str, run: str) -> None:
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("diadem-ray")
    r = [x for x in client.search_runs(exp.experiment_id) if x.info.run_name == run][0]
    wait = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "time/data_wait_s")}
    total = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "time/step_s")}
    stage = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "progress/stage_step")}
    steps = [{"stage": "", "step": int(stage[k]) - 1, "wait": wait[k], "total": total[k]} for k in sorted(wait)]
    w, t, share = steady(steps)
    print(
        f"run {run}: {len(steps)} steps; steady state (not the first step of a stage): median data wait {w:.3f} s, "
        f"median step {t:.1f} s; data wait / step time {100 * share:.2f}%"
    )
    print("per step (wait s / step s): " + ", ".join(f"{s['wait']:.2f}/{s['total']:.1f}" for s in steps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mlflow", help="report the data wait of a finished run from this MLflow sqlite file")
    ap.add_argument("--run", default="demo-cpu")
    ap.add_argument("--child", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])
    if args.mlflow:
        return from_mlflow(args.mlflow, args.run)
    from diadem_ray.data.shards import list_shards, read_shard, write_shards
    from diadem_ray.data.synth import synthesize
    from diadem_ray.models import qwen2_5_omni as q

    repo = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="diadem-data-plane-"))
    thinker = q.build_tiny_thinker(tmp / "thinker")[0]
    for split, n, seed in (("train", 4, 0), ("eval", 2, 1000)):
        synthesize(tmp / "data1x" / split, n, seed=seed, prefix=split, workers=2, progress=False)
    shutil.copytree(tmp / "data1x", tmp / "data10x")
    upscale(tmp / "data10x", 3)
    for split in ("train", "eval"):  # the copies' shards point at the copies' videos
        root = str(tmp / "data10x" / split / "shards")
        clips = [c for p in list_shards(root) for c in read_shard(p, root)]
        write_shards(
            [replace(c, video_uri=c.video_uri.replace("/data1x/", "/data10x/")) for c in clips], root, replace=True
        )
    results = {}
    for k in range(args.repeats):
        for scale, extra in SCALES.items():
            out = tmp / f"{scale}-{k}.json"
            argv = [
                "train",
                "--config",
                str(repo / "configs/demo_cpu.yaml"),
                f"run.name=dp-{scale}-{k}",
                f"run.output_dir={tmp / 'runs'}",
                f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
                f"model.path={thinker}",
                f"data.root={tmp / ('data' + scale)}",
                *STEPS,
                *extra,
            ]
            subprocess.run([sys.executable, __file__, "--child", str(out), *argv], check=True, capture_output=True)
            results.setdefault(scale, []).append(json.loads(out.read_text()))
    print(
        "| clips | media per clip (median) | driver peak RSS (median of runs) | driver ray.put calls / bytes | "
        "media refs "
        "passed on / owned by the driver | steady data wait / step time |"
    )
    print("|---|---|---|---|---|---|")
    med = {}
    for scale, runs in results.items():
        rss = statistics.median(r["peak_rss"] for r in runs)
        per_clip = statistics.median(b for r in runs for b in r["media"]["bytes"])
        shares = [steady(r["steps"])[2] for r in runs]
        med[scale] = rss
        puts = max(r["puts"]["count"] for r in runs), max(r["puts"]["bytes"] for r in runs)
        refs = sum(r["media"]["refs"] for r in runs), sum(r["media"]["owned_by_driver"] for r in runs)
        print(
            f"| {scale} | {per_clip / 2**20:.2f} MiB | {rss / 2**20:.0f} MiB | {puts[0]} / {puts[1] / 2**20:.2f} MiB | "
            f"{refs[0]} / {refs[1]} | {100 * statistics.median(shares):.2f}% |"
        )
    print(f"\ndriver peak RSS 10x / 1x: {med['10x'] / med['1x']:.3f}")


if __name__ == "__main__":
    main()
