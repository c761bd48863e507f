"""Exact speaker matches per reference line, grouped by the cue that fixes the speaker (issue #7's
analysis of what SFT and GRPO learn; the tables in docs/benchmarks.md, "tiny_av learning").

On synthetic clips the front-end's evidence decides each on-screen speaker's descriptor by the
person's hair token (``short`` → "the man", ``long`` → "the woman", ``grey-short`` → "the old
man", ``grey-long`` → "the old woman"); a speaker with no moving mouth is off screen. For each
reference line this counts whether the caption has a line with the same words (lower-cased,
punctuation dropped) and exactly the same speaker, each caption line used once.

    .venv/bin/python bench/speaker_cues.py runs/bench-tiny-av-sft48/eval/sft/predictions.jsonl [...]
        [--data-root runs/bench_data]

Inputs: ``<data-root>/eval/annotations.jsonl`` (``video_id``, ``gt_dialogues`` as
"speaker: words"), the cached front-end text ``<data-root>/features/<video_id>.<hash>.txt`` whose
first line is ``People: colour/hair, ...``, and one or more predictions files (``video_id``,
``pred``). Prints one row per predictions file: hits / reference lines per cue.

Written by hand: no library knows this synthetic data's cue-to-descriptor rule.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

CUES = ("long", "short", "grey-short", "grey-long", "off")


def _words(text: str) -> List[str]:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).split()


def hair_by_colour(features_dir: Path) -> Dict[str, Dict[str, str]]:
    """``{video_id: {shirt colour: hair token}}`` from each clip's cached front-end text."""
    out: Dict[str, Dict[str, str]] = {}
    for path in sorted(features_dir.glob("*.txt")):
        video_id = path.name.split(".")[0]
        first = path.read_text().split("\n", 1)[0].strip()
        people = first[len("People:"):].split(",") if first.startswith("People:") else []
        out[video_id] = dict(p.strip().split("/", 1) for p in people if "/" in p)
    return out


def cue_hits(annotations: Dict[str, List[str]], predictions: Dict[str, str],
             hair: Dict[str, Dict[str, str]]) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(hits, totals) per cue over every reference line whose cue is known."""
    hits = {c: 0 for c in CUES}
    totals = {c: 0 for c in CUES}
    for video_id, dialogue in annotations.items():
        lines = []
        for line in predictions.get(video_id, "").split("\n"):
            if ":" in line:
                speaker, words = line.split(":", 1)
                lines.append((speaker.strip(), _words(words)))
        used = set()
        for ref in dialogue:
            speaker, words = ref.split(":", 1)
            speaker, words = speaker.strip(), _words(words)
            if "off screen" in speaker:
                cue = "off"
            else:
                m = re.search(r" in (\w+)$", speaker)
                cue = hair.get(video_id, {}).get(m.group(1)) if m else None
                if cue not in CUES:
                    continue
            totals[cue] += 1
            j = next((i for i, (s, w) in enumerate(lines) if i not in used and s == speaker and w == words), None)
            if j is not None:
                used.add(j)
                hits[cue] += 1
    return hits, totals


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", nargs="+", type=Path, help="predictions.jsonl files (video_id, pred)")
    ap.add_argument("--data-root", type=Path, default=Path("runs/bench_data"),
                    help="the run's data.root (holds eval/annotations.jsonl and features/)")
    args = ap.parse_args(argv)
    ann_path, feat_dir = args.data_root / "eval" / "annotations.jsonl", args.data_root / "features"
    for path in [ann_path, feat_dir, *args.predictions]:
        if not path.exists():
            sys.exit(f"speaker_cues: {path} does not exist (pass --data-root <the run's data.root> and existing predictions files)")
    annotations = {}
    for line in ann_path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            annotations[row["video_id"]] = row["gt_dialogues"]
    hair = hair_by_colour(feat_dir)
    for path in args.predictions:
        preds = {}
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                preds[row["video_id"]] = row["pred"]
        hits, totals = cue_hits(annotations, preds, hair)
        print(f"{path}  " + " | ".join(f"{c} {hits[c]}/{totals[c]}" for c in CUES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
