"""`bench/ablation.py` end to end on a tiny model: the SFT-only arm first, the GRPO arms forked from
it, a finished arm not run again, and the group table of `compare --group-by run.group`. Heavy (a
few minutes: one Ray start per run), so `make test-heavy` runs it, not `make test`."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy


def test_ablation_runs_its_arms_from_one_sft_start(repo_root, tmp_path, tiny_train):
    from diadem_ray.models.tiny_lm import build_tiny_lm

    lm = build_tiny_lm(tmp_path / "lm", with_tokenizer=True)
    tiny = [
        *tiny_train(lm),
        "cluster.local_num_cpus=2",
        "data.train_clips=3",
        "data.eval_clips=2",
        "stages.grpo_stage2.steps=1",
        "stages.grpo_stage2.prompts_per_step=2",
        "checkpoint.keep_last=1",
    ]
    cmd = [
        sys.executable,
        str(repo_root / "bench" / "ablation.py"),
        "--seeds",
        "0",
        "--arms",
        "sft_only",
        "reversed",
        "--output-dir",
        str(tmp_path / "abl"),
        *tiny,
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"--from {tmp_path / 'abl' / 'abl-s0-sft_only'}" in first.stdout
    assert "groups by run.group; baseline: run.group=sft_only" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("finished earlier") == 2
    assert (tmp_path / "abl" / "ablation.png").is_file()
