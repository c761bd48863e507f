"""The driver's resumable state, stage names and console messages (shared by the driver's parts)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

TRAIN_STAGES = ("sft", "grpo_stage1", "grpo_stage2")
STEP_METRIC = "progress/stage_step"  # logged at every training step: MLflow's record of the steps a run holds
EVAL_LABEL = {"sft": "sft", "grpo_stage1": "grpo_stage1", "grpo_stage2": "grpo_stage2", "eval": "final"}


@dataclass
class DriverState:
    """Everything besides the learner weights that a resumed run needs (JSON-serialisable)."""

    stage: str = ""
    stage_step: int = 0  # steps completed in ``stage``
    global_step: int = 0  # MLflow step: increases by one per optimizer step over the whole run
    done_stages: List[str] = field(default_factory=list)
    cursors: Dict[str, Dict[str, int]] = field(default_factory=dict)  # stream name -> cursor
    policy_version: int = 0
    mlflow_run_id: str = ""
    evals: Dict[str, Dict[str, float]] = field(default_factory=dict)  # label -> {ref_f1, asr_f1}
    # the KL reference anchored when GRPO began (a file in the checkpoint folder); "" = the model
    # the learners loaded, which is the policy GRPO starts from when nothing was trained before it
    reference: str = ""
    steps_done: Dict[str, int] = field(default_factory=dict)  # training stage -> optimizer steps it ran


def latest_checkpoint(ckpt_dir: Union[str, Path]) -> Path:
    """The folder that ``ckpt_dir/latest`` names (it may be missing: callers check)."""
    return Path(ckpt_dir) / (Path(ckpt_dir) / "latest").read_text().strip()


def checkpoint_state(ckpt_dir: Union[str, Path]) -> DriverState:
    """The driver state in the latest checkpoint under ``ckpt_dir`` (read without the learners, to
    check a resume before anything starts)."""
    import json

    return DriverState(**json.loads((latest_checkpoint(ckpt_dir) / "meta.json").read_text())["driver"])


def reconcile_with(state: DriverState, cfg: Any) -> List[str]:
    """:func:`reconcile` with ``run.stages`` and the step counts of a ``TrainConfig``."""
    steps = {s: getattr(cfg.stages, s).steps for s in TRAIN_STAGES if s in cfg.run.stages}
    return reconcile(state, stages=list(cfg.run.stages), steps=steps)


def reconcile(state: DriverState, *, stages: Sequence[str], steps: Mapping[str, int]) -> List[str]:
    """Fit a restored state to the config a run resumes under (``stages``: ``run.stages``; ``steps``:
    each training stage's ``stages.<name>.steps``), in place. Returns one line per change.

    - A stage recorded done counts only when every stage the config lists before it is done too
      (stages run in order): a checkpoint of an ``[sft, eval]`` run resumed with
      ``[sft, profile, grpo_stage1, grpo_stage2, eval]`` evaluates again at the end.
    - The last stage that trained may be given more steps: it continues where it stopped, and the
      stages after it run again. An earlier one cannot (a later stage trained on top of it):
      ``ValueError`` naming the setting.
    Stages done and evaluations dropped here are redone by the driver loop."""
    notes: List[str] = []
    prefix: List[str] = []
    for name in stages:
        if name not in state.done_stages:
            break
        prefix.append(name)
    stale = [n for n in stages[len(prefix) :] if n in state.done_stages]
    if stale:
        state.done_stages = [n for n in state.done_stages if n not in stale]
        for n in stale:
            state.evals.pop(EVAL_LABEL.get(n, ""), None)
        notes.append(
            f"{', '.join(stale)} ran before {stages[len(prefix)]}, which run.stages now puts first: "
            f"{'it runs' if len(stale) == 1 else 'they run'} again"
        )
    in_progress = state.stage if state.stage not in state.done_stages and state.stage_step > 0 else ""
    trained = [n for n in prefix if n in steps] + ([in_progress] if in_progress in steps else [])
    for name in trained:
        ran = state.steps_done.get(name)
        if ran is None or name == in_progress or steps[name] <= ran:
            continue
        if name != trained[-1]:
            raise ValueError(
                f"stages.{name}.steps is {steps[name]}, but this checkpoint's {name} finished after {ran} "
                f"steps and {trained[-1]} trained on top of it; resume with stages.{name}.steps={ran}, or "
                f"start a new run from a checkpoint taken before {trained[-1]}"
            )
        reopened = prefix[prefix.index(name) :]
        state.done_stages = [n for n in state.done_stages if n not in reopened]
        for n in reopened:
            state.evals.pop(EVAL_LABEL.get(n, ""), None)
        state.stage, state.stage_step = name, ran
        again = f"; {', '.join(reopened[1:])} run again after it" if len(reopened) > 1 else ""
        notes.append(
            f"{name} finished after {ran} steps and stages.{name}.steps is now {steps[name]}: "
            f"it continues at step {ran + 1}{again}"
        )
    return notes


def say(msg: str) -> None:
    """One timestamped line on the console (the job's log under `ray job submit`)."""
    print(f"[diadem-ray {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def hash_name(name: str) -> int:
    """A stable small integer per stream name (Python's ``hash`` is salted per process)."""
    import zlib

    return zlib.crc32(name.encode()) % 100_000


def checkpoint_space_problem(ckpt_dir: Union[str, Path], *, margin: float = 1.1) -> str:
    """Empty when the disk holding ``ckpt_dir`` has room for another checkpoint as large as its latest
    (× ``margin``): the next one is written before ``checkpoint.keep_last`` drops an old one. Else
    what is short and what to do, said before a save would fail halfway with an opaque I/O error.
    Seen from the driver: with learners on other nodes it checks the driver's view of that folder."""
    import shutil

    root = Path(ckpt_dir)
    if not (root / "latest").is_file():
        return ""
    last = latest_checkpoint(root)
    if not last.is_dir():
        return ""
    need = sum(f.stat().st_size for f in last.rglob("*") if f.is_file())
    free = shutil.disk_usage(root).free
    if free >= need * margin:
        return ""
    return (
        f"checkpoint: {free / 1e9:.1f} GB free on the disk of {root}, and the latest checkpoint ({last.name}) "
        f"takes {need / 1e9:.1f} GB; free space there (or set run.output_dir to a larger disk) and run again "
        "with --resume, which starts from that checkpoint"
    )
