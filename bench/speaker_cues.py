"""Exact speaker matches per reference line, grouped by the cue that fixes the speaker (issue #7's
analysis of what SFT and GRPO learn; the tables in docs/experiments/2026-11-23-tiny-av-grpo-recipe.md).

On synthetic clips the front-end's evidence decides each on-screen speaker's descriptor by the
person's hair token (``short`` → "the man", ``long`` → "the woman", ``grey-short`` → "the old
man", ``grey-long`` → "the old woman"); a speaker with no moving mouth is off screen. For each
reference line this counts whether the caption has a line with the same words (lower-cased,
punctuation dropped) and exactly the same speaker, each caption line used once. With
``--confusion`` it prints, per cue, what the captions wrote instead: the descriptor of the caption
line with the same words (its shirt colour stripped, "[other colour]" when that differs), or
"<words missing>".

    .venv/bin/python bench/speaker_cues.py runs/bench-tiny-av-sft48/eval/sft/predictions.jsonl [...]
        [--data-root runs/bench_data] [--confusion]

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
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

CUES = ("long", "short", "grey-short", "grey-long", "off")


def _words(text: str) -> List[str]:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).split()


def hair_by_colour(features_dir: Path) -> Dict[str, Dict[str, str]]:
    """``{video_id: {shirt colour: hair token}}`` from each clip's cached front-end text."""
    out: Dict[str, Dict[str, str]] = {}
    for path in sorted(features_dir.glob("*.txt")):
        video_id = path.name.split(".")[0]
        first = path.read_text().split("\n", 1)[0].strip()
        people = first[len("People:") :].split(",") if first.startswith("People:") else []
        out[video_id] = dict(p.strip().split("/", 1) for p in people if "/" in p)
    return out


def _caption_lines(caption: str) -> List[Tuple[str, List[str]]]:
    """``[(speaker, words)]`` of a caption's "speaker: words" lines."""
    lines = []
    for line in caption.split("\n"):
        if ":" in line:
            speaker, words = line.split(":", 1)
            lines.append((speaker.strip(), _words(words)))
    return lines


def _split_colour(speaker: str) -> Tuple[str, Optional[str]]:
    """``"the woman in red"`` → ``("the woman", "red")``; ``(speaker, None)`` without " in <colour>"."""
    m = re.search(r" in (\w+)$", speaker)
    return (speaker[: m.start()], m.group(1)) if m else (speaker, None)


def _reference(ref: str, hair: Dict[str, str]) -> Tuple[str, List[str], Optional[str], Optional[str]]:
    """``(speaker, words, cue, shirt colour)`` of one reference line; cue None when unknown."""
    speaker, words = ref.split(":", 1)
    speaker = speaker.strip()
    if "off screen" in speaker:
        return speaker, _words(words), "off", None
    colour = _split_colour(speaker)[1]
    cue = hair.get(colour) if colour else None
    return speaker, _words(words), (cue if cue in CUES else None), colour


def _matches(
    annotations: Dict[str, List[str]],
    predictions: Dict[str, str],
    hair: Dict[str, Dict[str, str]],
    *,
    same_speaker: bool,
) -> Iterator[Tuple[str, Optional[str], Optional[str]]]:
    """``(cue, reference colour, matched caption speaker or None)`` for every reference line whose
    cue is known. A reference line takes the first unused caption line with the same words (and,
    with ``same_speaker``, exactly the same speaker); each caption line answers one reference line."""
    for video_id, dialogue in annotations.items():
        lines = _caption_lines(predictions.get(video_id, ""))
        used = set()
        for ref in dialogue:
            speaker, words, cue, colour = _reference(ref, hair.get(video_id, {}))
            if cue is None:
                continue
            j = next(
                (
                    i
                    for i, (s, w) in enumerate(lines)
                    if i not in used and w == words and (s == speaker or not same_speaker)
                ),
                None,
            )
            if j is not None:
                used.add(j)
            yield cue, colour, (lines[j][0] if j is not None else None)


def cue_hits(
    annotations: Dict[str, List[str]], predictions: Dict[str, str], hair: Dict[str, Dict[str, str]]
) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(hits, totals) per cue over every reference line whose cue is known."""
    hits = {c: 0 for c in CUES}
    totals = {c: 0 for c in CUES}
    for cue, _, written in _matches(annotations, predictions, hair, same_speaker=True):
        totals[cue] += 1
        hits[cue] += written is not None
    return hits, totals


def cue_confusion(
    annotations: Dict[str, List[str]], predictions: Dict[str, str], hair: Dict[str, Dict[str, str]]
) -> Dict[str, Counter]:
    """Per cue, a count of the descriptors written for its reference lines.

    Each reference line takes the first unused caption line with the same words, whatever its
    speaker; the descriptor is that line's speaker without " in <colour>", suffixed " [other
    colour]" when the colour differs from the reference's, or "<words missing>" when no caption
    line has the words.
    """
    out: Dict[str, Counter] = {c: Counter() for c in CUES}
    for cue, colour, written in _matches(annotations, predictions, hair, same_speaker=False):
        if written is None:
            out[cue]["<words missing>"] += 1
            continue
        descriptor, written_colour = _split_colour(written)
        if colour is not None and written_colour != colour:
            descriptor += " [other colour]"
        out[cue][descriptor] += 1
    return out


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions", nargs="+", type=Path, help="predictions.jsonl files (video_id, pred)")
    ap.add_argument(
        "--data-root",
        type=Path,
        default=Path("runs/bench_data"),
        help="the run's data.root (holds eval/annotations.jsonl and features/)",
    )
    ap.add_argument(
        "--confusion", action="store_true", help="also print, per cue, the descriptors the captions wrote for its lines"
    )
    args = ap.parse_args(argv)
    ann_path, feat_dir = args.data_root / "eval" / "annotations.jsonl", args.data_root / "features"
    for path in [ann_path, feat_dir, *args.predictions]:
        if not path.exists():
            sys.exit(
                f"speaker_cues: {path} does not exist (pass --data-root <the run's data.root> and existing "
                "predictions files)"
            )
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
        if args.confusion:
            for cue, written in cue_confusion(annotations, preds, hair).items():
                print(f"  {cue:>10}: " + ", ".join(f"{d} {n}" for d, n in written.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
