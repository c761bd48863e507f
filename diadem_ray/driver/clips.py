"""The run's clips: synthesised once when the data root lacks them, then read from the shards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from diadem_ray.config import TrainConfig
from diadem_ray.driver.state import say
from diadem_ray.types import Clip


@dataclass
class RunClips:
    """Every clip of the run by id, the ids of each split in shard order, the held-out annotations."""

    train_root: str  # the training shards as synthesised (GRPO reads the profiled ones instead)
    eval_root: str
    clips: Dict[str, Clip] = field(default_factory=dict)
    split_ids: Dict[str, List[str]] = field(default_factory=dict)
    annotations: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def eval_ids(self) -> List[str]:
        return sorted(self.split_ids["eval"])


def prepare_clips(cfg: TrainConfig) -> RunClips:
    """Synthesise the splits ``data.root`` does not hold yet, then read both splits' shards."""
    from diadem_ray.data.shards import list_shards, read_shard
    from diadem_ray.data.synth import describe, synthesize

    d = cfg.data
    root = Path(d.root)
    for split, n, seed in (("train", d.train_clips, cfg.run.seed), ("eval", d.eval_clips, cfg.run.seed + 1000)):
        if not (root / split / "annotations.jsonl").is_file():
            say(f"synthesising {n} {split} clips into {root / split}")
            made = synthesize(
                root / split, n, seed=seed, prefix=f"{split}", workers=max(1, int(cfg.cluster.local_num_cpus or 2))
            )
            say(describe(made))
    out = RunClips(train_root=str(root / "train" / "shards"), eval_root=str(root / "eval" / "shards"))
    for split, r in (("train", out.train_root), ("eval", out.eval_root)):
        ids = out.split_ids[split] = []
        for path in list_shards(r):
            for c in read_shard(path, r):
                out.clips[c.clip_id] = c
                ids.append(c.clip_id)
    text = (root / "eval" / "annotations.jsonl").read_text()
    out.annotations = [json.loads(line) for line in text.splitlines() if line]
    return out
