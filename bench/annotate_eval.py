"""Annotation quality on synthetic clips, whose truth is known (issue #34's acceptance).

Synthesises ``--clips`` clips with ``diadem-ray synth`` (a seed no test uses), runs
``diadem-ray annotate`` over their videos (``annotate.faces=scene``: the synthetic world's
people), and compares the annotations with the synthesiser's: cpWER, exact speaker counts,
off-screen-speaker flag F1, exact shot counts, and throughput in clips per CPU-minute (the
workers' own seconds; each worker holds one CPU) and per wall-clock minute.

    python bench/annotate_eval.py --clips 100 --seed 9100 --work runs/annotate_eval

``--annotated DIR`` scores an existing output folder instead of running the job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diadem_ray.annotate.evaluate import Found, Truth, score  # noqa: E402


def truth_of(synth_dir: Path) -> Dict[str, Truth]:
    from diadem_ray.data.shards import list_shards, read_shard

    shots = {}
    for line in (synth_dir / "scenes.jsonl").read_text().splitlines():
        row = json.loads(line)
        shots[row["clip_id"]] = len(row["shot_starts_s"]) + 1
    out = {}
    root = str(synth_dir / "shards")
    for path in list_shards(root):
        for c in read_shard(path, root):
            out[c.clip_id] = Truth(
                tuple(t.speaker for t in c.dialogue),
                tuple(t.text for t in c.dialogue),
                c.has_off_screen_speaker,
                shots[c.clip_id],
            )
    return out


def found_of(annotated: Path) -> Dict[str, Found]:
    from diadem_ray.data.shards import list_shards, read_shard

    clips = {}
    root = str(annotated / "shards")
    if (annotated / "shards").is_dir():
        clips = {c.clip_id: c for p in list_shards(root) for c in read_shard(p, root)}
    out = {}
    for line in (annotated / "report.jsonl").read_text().splitlines():
        row = json.loads(line)
        vid = Path(row["video"]).stem
        speakers, texts, off, shots = [], [], False, 0
        for k, d in enumerate(row["dialogues"]):
            c = clips.get(d["clip_id"])
            if c is None:  # dropped
                continue
            speakers += [f"{k}:{t.speaker}" for t in c.dialogue]
            texts += [t.text for t in c.dialogue]
            off = off or c.has_off_screen_speaker
            shots += d["num_shots"]
        out[vid] = Found(tuple(speakers), tuple(texts), off, shots)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--seed", type=int, default=9100)
    ap.add_argument("--work", default="runs/annotate_eval")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--annotated", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    work = Path(args.work)
    synth_dir = work / f"synth_{args.seed}_{args.clips}"
    exe = str(Path(sys.executable).parent / "diadem-ray")
    if not (synth_dir / "scenes.jsonl").is_file():
        subprocess.run(
            [
                exe,
                "synth",
                "--out",
                str(synth_dir),
                "--clips",
                str(args.clips),
                "--seed",
                str(args.seed),
                "--workers",
                "2",
            ],
            check=True,
        )
    annotated = Path(args.annotated) if args.annotated else work / "annotated"
    wall = None
    if not args.annotated:
        t0 = time.perf_counter()
        cmd = [
            exe,
            "annotate",
            "--videos",
            str(synth_dir / "videos"),
            "--out",
            str(annotated),
            "annotate.faces=scene",
            f"annotate.workers={args.workers}",
            f"cluster.local_num_cpus={args.workers}",
        ]
        subprocess.run(cmd, check=False, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        wall = time.perf_counter() - t0
    figures = score(truth_of(synth_dir), found_of(annotated))
    rows = [json.loads(x) for x in (annotated / "report.jsonl").read_text().splitlines()]
    worker_s = sum(r["seconds"] for r in rows)
    figures["clips_per_cpu_minute"] = round(len(rows) / max(1e-9, worker_s / 60), 2)
    if wall is not None:
        figures["clips_per_wall_minute"] = round(len(rows) / (wall / 60), 2)
        figures["wall_s"] = round(wall, 1)
    figures["skipped"] = float(sum(1 for r in rows if r.get("skipped")))
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
