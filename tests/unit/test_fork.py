"""`train --from`: a run's latest checkpoint and outputs laid into a new run folder — big files
shared as hard links, files a run rewrites in place copied, the MLflow run id cleared, the source
untouched."""

from __future__ import annotations

import json
import os

import pytest

from diadem_ray.driver.fork import fork_problems, fork_run


def _run(root):
    ckpt = root / "checkpoints"
    (ckpt / "step_7").mkdir(parents=True)
    (ckpt / "step_7" / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    (ckpt / "step_7" / "meta.json").write_text(
        json.dumps({"driver": {"mlflow_run_id": "abc", "reference": "kl_reference.safetensors", "global_step": 7}})
    )
    (ckpt / "step_3").mkdir()  # an older checkpoint: not carried
    (ckpt / "kl_reference.safetensors").write_bytes(b"ref")
    (ckpt / "latest").write_text("step_7")
    (root / "profiled" / "bucket=hard").mkdir(parents=True)
    (root / "profiled" / "bucket=hard" / "part-0.parquet").write_bytes(b"rows")
    (root / "policy").mkdir()
    (root / "policy" / "model.safetensors").write_bytes(b"policy")
    (root / "eval" / "sft").mkdir(parents=True)
    (root / "eval" / "sft" / "predictions.jsonl").write_text("{}\n")
    (root / "results.txt").write_text("policy REF ASR\n")
    return root


def test_fork_links_what_runs_never_rewrite_and_copies_the_rest(tmp_path):
    src, dst = _run(tmp_path / "a"), tmp_path / "b"
    assert fork_problems(src, dst) == []
    assert fork_run(src, dst) == "abc"
    same = lambda rel: os.stat(src / rel).st_ino == os.stat(dst / rel).st_ino  # noqa: E731
    for rel in (
        "checkpoints/step_7/mp_rank_00_model_states.pt",
        "checkpoints/kl_reference.safetensors",
        "profiled/bucket=hard/part-0.parquet",
        "policy/model.safetensors",
    ):
        assert same(rel), rel
    for rel in ("eval/sft/predictions.jsonl", "checkpoints/step_7/meta.json"):
        assert (dst / rel).is_file() and not same(rel), rel
    # the source's final table is not the branch's: the branch writes its own when it ends (an
    # unfinished branch with its source's table looked finished to bench/ablation.py)
    assert not (dst / "results.txt").exists()
    assert not (dst / "checkpoints" / "step_3").exists()
    assert (dst / "checkpoints" / "latest").read_text() == "step_7"
    meta = json.loads((dst / "checkpoints" / "step_7" / "meta.json").read_text())
    assert meta["driver"]["mlflow_run_id"] == "" and meta["driver"]["global_step"] == 7
    assert json.loads((src / "checkpoints" / "step_7" / "meta.json").read_text())["driver"]["mlflow_run_id"] == "abc"


def test_fork_refuses_what_it_cannot_do(tmp_path):
    src = _run(tmp_path / "a")
    assert "no checkpoint" in fork_problems(tmp_path / "none", tmp_path / "b")[0]
    assert "use --resume" in fork_problems(src, src)[0]
    fork_run(src, tmp_path / "b")
    assert "already holds a run's checkpoints" in fork_problems(src, tmp_path / "b")[0]
    with pytest.raises(ValueError, match="already holds"):
        fork_run(src, tmp_path / "b")
