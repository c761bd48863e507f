"""The driver's resumable state, stage names and console messages (shared by the driver's parts)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List

TRAIN_STAGES = ("sft", "grpo_stage1", "grpo_stage2")


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


def say(msg: str) -> None:
    """One timestamped line on the console (the job's log under `ray job submit`)."""
    print(f"[diadem-ray {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def hash_name(name: str) -> int:
    """A stable small integer per stream name (Python's ``hash`` is salted per process)."""
    import zlib

    return zlib.crc32(name.encode()) % 100_000
