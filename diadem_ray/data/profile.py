"""Difficulty profiling (pure): per-clip rewards of the current policy's samples → pass rate,
mean reward, reward variance and a difficulty bucket; plus the summary table and the marks file.

Two ways to cut buckets (``stages.profile``):

* ``pass_rate_edges`` (default): a clip's pass rate (share of samples with reward ≥
  ``pass_reward``) against ascending edges; ``bucket_names[k]`` for ``k`` edges passed, so names
  go from hardest to easiest;
* ``quantiles: true``: equal-size buckets by mean reward (hardest first; ties broken by clip_id),
  for datasets where the policy passes almost nothing or almost everything.

A clip whose samples all scored the same has zero reward variance: every advantage in its GRPO
group is zero, so it teaches nothing. Such clips are marked (``zero_variance``) in the marks file
and counted per bucket.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

MARKS_FILE = "profile.jsonl"


@dataclass(frozen=True)
class ClipProfile:
    clip_id: str
    bucket: str
    pass_rate: float  # share of samples with reward >= pass_reward, [0, 1]
    mean_reward: float
    reward_variance: float  # population variance of the samples' rewards
    samples: int

    @property
    def zero_variance(self) -> bool:
        return self.reward_variance == 0.0


def profile_clips(rewards: Mapping[str, Sequence[float]], *, pass_reward: float, bucket_names: Sequence[str],
                  pass_rate_edges: Sequence[float] = (), quantiles: bool = False) -> List[ClipProfile]:
    """One :class:`ClipProfile` per clip of ``rewards`` (clip_id → its samples' rewards), in the
    order given. Raises ``ValueError`` for a clip without samples or inconsistent bucket settings."""
    names = list(bucket_names)
    if not names:
        raise ValueError("stages.profile.bucket_names is empty")
    if not quantiles and len(pass_rate_edges) != len(names) - 1:
        raise ValueError(f"stages.profile: {len(names)} bucket names need {len(names) - 1} pass_rate_edges, "
                         f"got {len(pass_rate_edges)}")
    stats: Dict[str, Tuple[float, float, float, int]] = {}
    for cid, rs in rewards.items():
        if not rs:
            raise ValueError(f"clip {cid}: no scored samples to profile")
        n = len(rs)
        mean = sum(rs) / n
        stats[cid] = (sum(r >= pass_reward for r in rs) / n, mean, sum((r - mean) ** 2 for r in rs) / n, n)
    if quantiles:
        order = sorted(stats, key=lambda c: (stats[c][1], c))
        bucket = {c: names[min(len(names) - 1, i * len(names) // max(1, len(order)))] for i, c in enumerate(order)}
    else:
        bucket = {c: names[sum(stats[c][0] >= e for e in pass_rate_edges)] for c in stats}
    return [ClipProfile(c, bucket[c], *stats[c]) for c in rewards]


def summary(profiles: Sequence[ClipProfile], bucket_names: Sequence[str]) -> Tuple[str, Dict[str, float]]:
    """(table text, metrics): clips, mean reward and zero-variance clips per bucket."""
    lines = ["bucket     clips  mean reward  mean pass rate  zero-variance clips"]
    metrics: Dict[str, float] = {}
    for b in bucket_names:
        sel = [p for p in profiles if p.bucket == b]
        mean = sum(p.mean_reward for p in sel) / len(sel) if sel else float("nan")
        rate = sum(p.pass_rate for p in sel) / len(sel) if sel else float("nan")
        zero = sum(p.zero_variance for p in sel)
        lines.append(f"{b:<10} {len(sel):5d}  {mean:11.3f}  {rate:14.2f}  {zero:19d}")
        metrics.update({f"profile/clips_{b}": float(len(sel)), f"profile/mean_reward_{b}": mean,
                        f"profile/zero_variance_{b}": float(zero)})
    return "\n".join(lines), metrics


def write_marks(profiles: Sequence[ClipProfile], root: str | Path) -> Path:
    """``<root>/profile.jsonl``: one line per clip with its profile and ``zero_variance`` (written
    beside and renamed over, so a forked run sharing the file by a hard link never sees it change)."""
    path = Path(root) / MARKS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for p in profiles:
            fh.write(json.dumps({**asdict(p), "zero_variance": p.zero_variance}) + "\n")
    tmp.replace(path)
    return path


def read_buckets(root: str | Path) -> Dict[str, str]:
    """clip_id → bucket from ``<root>/profile.jsonl`` ({} when there is none)."""
    path = Path(root) / MARKS_FILE
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {str(r["clip_id"]): str(r["bucket"]) for r in rows}
