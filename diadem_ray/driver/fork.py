"""``train --from RUN``: a new run that starts where another run's latest checkpoint stands.

The new run folder gets the source's latest checkpoint (weights, optimizer state, driver state,
the anchored KL reference), its profile, its exported policy, its evaluations and the rewards it
used, and a driver state without the source's MLflow run: the branch logs to a run of its own, tagged with
the run it came from. Then it goes on as ``--resume`` does, under its own config, so arms of an
experiment (configs/ablations/) share one SFT start exactly.

Large files are hard links where the filesystem allows (a branch then costs no disk): only files
the run never rewrites in place — checkpoint step files (DeepSpeed writes new tags), the exported
policy and the KL reference (written beside and renamed over), profiled shards (removed and
written anew). Files a run rewrites in place (evaluation predictions, the reward YAMLs) and the
edited meta file are copies; results.txt is not taken (the branch writes its own when it ends).

Example:
    >>> # fork_run(Path("runs/abl-s0-base"), Path("runs/abl-s0-two_stage"))
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import List

LINKED = ("profiled", "policy")  # besides the checkpoint: never rewritten in place
# rewritten in place by a run, or small. Not results.txt: the branch writes its own when it ends, so
# a branch that stopped halfway never shows its source's table as its own final one.
COPIED = ("eval", "rewards", "profiled_eval")


def _link_or_copy(src: Path, dst: Path, *, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another filesystem, or links not allowed
            pass
    shutil.copy2(src, dst)


def _tree(src: Path, dst: Path, *, link: bool) -> None:
    if src.is_file():
        _link_or_copy(src, dst, link=link)
        return
    for p in sorted(src.rglob("*")):
        if p.is_file():
            _link_or_copy(p, dst / p.relative_to(src), link=link)


def fork_problems(src: Path, dst: Path) -> List[str]:
    """Why ``src`` cannot be forked into ``dst`` (each naming the path and the fix); [] if it can."""
    latest = src / "checkpoints" / "latest"
    if not latest.is_file():
        return [f"--from {src}: no checkpoint at {latest}; give a run folder (runs/<name>) that saved one"]
    if src.resolve() == dst.resolve():
        return [f"--from {src}: that is this run's own folder; use --resume to continue a run"]
    if (dst / "checkpoints" / "latest").is_file():
        return [f"{dst} already holds a run's checkpoints; choose another run.name / run.output_dir"]
    return []


def fork_run(src: Path, dst: Path) -> str:
    """Lay ``src``'s latest checkpoint and outputs into ``dst``; returns the source's MLflow run id.
    The meta file is copied and edited (the others are shared links, never written)."""
    problems = fork_problems(src, dst)
    if problems:
        raise ValueError("; ".join(problems))
    tag = (src / "checkpoints" / "latest").read_text().strip()
    ckpt = dst / "checkpoints"
    for p in sorted((src / "checkpoints" / tag).iterdir()):
        if p.name != "meta.json":
            _tree(p, ckpt / tag / p.name, link=True)
    meta = json.loads((src / "checkpoints" / tag / "meta.json").read_text())
    source_run = str(meta["driver"].get("mlflow_run_id", ""))
    meta["driver"]["mlflow_run_id"] = ""
    reference = str(meta["driver"].get("reference", ""))
    if reference and (src / "checkpoints" / reference).is_file():
        _link_or_copy(src / "checkpoints" / reference, ckpt / reference, link=True)
    (ckpt / tag / "meta.json").write_text(json.dumps(meta))
    for names, link in ((LINKED, True), (COPIED, False)):
        for name in names:
            if (src / name).exists():
                _tree(src / name, dst / name, link=link)
    (ckpt / "latest").write_text(tag)
    return source_run
