"""What the alignment's work budget allows, and how long it takes: for each dialogue shape, the
most lines (dialogue = reference) that stay under ``--max-work`` units, and the time to score them.

    .venv/bin/python bench/align_work.py [--max-work 6000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from diadem_ray.rewards.align import AlignmentTooLarge
from diadem_ray.rewards.metrics import score_dialogue

SHAPES = [  # (label, characters per line, speakers, related: the reference is the dialogue with 20% of letters changed)
    ("one speaker, unrelated 20-character lines", 20, 1, False),
    ("one speaker, unrelated 40-character lines", 40, 1, False),
    ("one speaker, unrelated 100-character lines", 100, 1, False),
    ("one speaker, unrelated 1,000-character lines", 1000, 1, False),
    ("one speaker, related 1,000-character lines", 1000, 1, True),
    ("two alternating speakers, unrelated 1,000-character lines", 1000, 2, False),
    ("two alternating speakers, related 200-character lines", 200, 2, True),
]


def dialogue(lines: int, chars: int, speakers: int, related: bool, seed: int = 0):
    rng = random.Random(seed)
    text = lambda: "".join(rng.choice("abcdefghij") for _ in range(chars))  # noqa: E731
    names = "AB"[:speakers]
    dt = [f"{names[i % speakers]}: {text()}" for i in range(lines)]
    if not related:
        return dt, [f"{names[i % speakers]}: {text()}" for i in range(lines)]
    ref = []
    for line in dt:
        who, words = line.split(": ", 1)
        w = list(words)
        for _ in range(len(w) // 5):
            w[rng.randrange(len(w))] = rng.choice("abcdefghij")
        ref.append(f"{who}: {''.join(w)}")
    return dt, ref


def allowed(max_work: int, *shape) -> int:
    lo, hi = 0, 500
    while lo < hi:  # the most lines under the budget (refusals come early: this search is cheap)
        mid = (lo + hi + 1) // 2
        try:
            score_dialogue(*dialogue(mid, *shape), max_work=max_work)
            lo = mid
        except AlignmentTooLarge:
            hi = mid - 1
    return lo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-work", type=int, default=6_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print("| shape (dialogue = reference) | lines allowed | alignment s (median) |\n|---|---|---|")
    for label, *shape in SHAPES:
        n = allowed(args.max_work, *shape)
        dt, ref = dialogue(n, *shape)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            score_dialogue(dt, ref, max_work=args.max_work)
            times.append(time.perf_counter() - t0)
        print(f"| {label} | {n} | {statistics.median(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
