"""DiaDem's ablation of the difficulty partition, with seeds (``configs/ablations/``).

Per seed, arm ``sft_only`` runs first (SFT, profile, held-out evaluation of the SFT policy); every
GRPO arm then starts from its checkpoint (``diadem-ray train --from``), so the arms of a seed share
one SFT start and one profile exactly. The arms are overlays of the base config (default
``configs/bench_tiny_av.yaml``): ``one_stage`` (both stages over all buckets alike), ``two_stage`` (medium then
hard: DiaDem's order), ``reversed`` (hard then medium). Runs that finished are not run again, a
run that stopped is resumed, so the command can be repeated until the table is complete; it ends
with ``diadem-ray compare --group-by run.group --baseline sft_only --seeds …``: per arm, mean ± sd over seeds
of the final held-out REF / ASR and its difference from SFT only (paired by seed, 95% interval),
overall and per held-out difficulty bucket (the held-out clips profiled by each seed's SFT policy,
``stages.profile.held_out``).

    python bench/ablation.py --seeds 0 1 2                      # about 35 min per seed and arm on 2 cores
    python bench/ablation.py --config configs/demo_cpu.yaml --output-dir runs/ablation-demo   # ~28 min per seed
    python bench/ablation.py --seeds 0 --output-dir runs/ablation-smoke stages.sft.steps=2 ...   # a smoke run

A GRPO arm's checkpoints (~2.6 GB each with the tiny_av policy) are removed once the arm has finished
(its exported policy, evaluations and MLflow run stay); ``--keep-checkpoints`` keeps them. The
SFT-only runs keep theirs: every arm of the seed forks from them.

Extra ``KEY=VALUE`` arguments apply to every run (after the arm's overlay).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, List

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("sft_only", "one_stage", "two_stage", "reversed")


def overlay(path: Path) -> List[str]:
    """A YAML fragment as dotlist overrides (dicts to their leaves, lists whole)."""
    import yaml

    out: List[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                walk(value, name)
            elif isinstance(value, list):
                out.append(f"{name}=[{','.join(str(v) for v in value)}]")
            else:
                out.append(f"{name}={value}")

    walk(yaml.safe_load(path.read_text()) or {}, "")
    return out


def finished(run_dir: Path) -> bool:
    results = run_dir / "results.txt"
    return results.is_file() and any(line.split()[:1] == ["final"] for line in results.read_text().splitlines())


def drop_checkpoints(run_dir: Path) -> None:
    """Remove a finished run's checkpoints folder (the exported policy and evaluations stay)."""
    import shutil

    ckpt = run_dir / "checkpoints"
    if ckpt.is_dir():
        shutil.rmtree(ckpt)
        print(f"[ablation] {run_dir.name}: finished; its checkpoints removed (--keep-checkpoints keeps them)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "bench_tiny_av.yaml"))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--output-dir", default="runs/ablation")
    ap.add_argument("--experiment", default="diadem-ablation")
    ap.add_argument("--keep-checkpoints", action="store_true", help="keep the finished GRPO arms' checkpoints")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE applied to every run")
    args = ap.parse_args()
    out = Path(args.output_dir).resolve()
    uri = f"sqlite:///{out / 'mlflow.db'}"
    exe = str(Path(sys.executable).parent / "diadem-ray")
    out.mkdir(parents=True, exist_ok=True)
    arms = ["sft_only"] + [a for a in args.arms if a != "sft_only"]
    for seed in args.seeds:
        common = [
            f"run.seed={seed}",
            f"run.output_dir={out}",
            f"data.root={out / f'data-s{seed}'}",
            f"tracking.experiment={args.experiment}",
            f"tracking.tracking_uri={uri}",
            "stages.profile.held_out=true",  # the held-out clips bucketed by the SFT policy: per-bucket table
        ]
        base = out / f"abl-s{seed}-sft_only"
        for arm in arms:
            run_dir = out / f"abl-s{seed}-{arm}"
            if finished(run_dir):
                print(f"[ablation] {run_dir.name}: finished earlier", flush=True)
                continue
            cmd = [exe, "train", "--config", args.config]
            if (run_dir / "checkpoints" / "latest").is_file():
                cmd.append("--resume")
            elif arm != "sft_only":
                cmd += ["--from", str(base)]
            cmd += [f"run.name={run_dir.name}", f"run.group={arm}", *common]
            cmd += overlay(ROOT / "configs" / "ablations" / f"{arm}.yaml") + list(args.overrides)
            print("[ablation] " + " ".join(cmd), flush=True)
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                print(f"[ablation] {run_dir.name} failed (exit {rc}); rerun the command to resume it", flush=True)
                return rc
            if arm != "sft_only" and not args.keep_checkpoints and finished(run_dir):
                drop_checkpoints(run_dir)
    cmd = [
        exe,
        "compare",
        "--experiment",
        args.experiment,
        "--tracking-uri",
        uri,
        "--group-by",
        "run.group",
        "--baseline",
        "sft_only",
        "--png",
        str(out / "ablation.png"),
        "--seeds",
        *(str(s) for s in args.seeds),
    ]
    print("[ablation] " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    raise SystemExit(main())
