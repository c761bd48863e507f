"""`diadem-ray profile` with an exported policy: every training clip profiled once, shards
partitioned into the configured buckets, marks written, no learner started."""

import json

from diadem_ray.cli import main
from diadem_ray.data.shards import list_shards, read_shard


def test_profile_command_partitions_every_training_clip(ray_local, repo_root, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from diadem_ray.models.policy import PolicyMeta, write_policy
    from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION
    from diadem_ray.models.tiny_lm import build_tiny_lm

    src = build_tiny_lm(tmp_path / "src", with_tokenizer=True)
    model = AutoModelForCausalLM.from_pretrained(str(src), local_files_only=True)
    meta = PolicyMeta(
        family="tiny_av",
        policy_version=1,
        stage="sft",
        learner_step=2,
        run="t",
        frontend_version=FRONTEND_VERSION,
        frames_per_clip=16,
        sample_rate_hz=16000,
        max_prompt_tokens=256,
        max_new_tokens=16,
    )
    write_policy(tmp_path / "run" / "policy", list(model.state_dict().items()), source_model_path=src, meta=meta)
    out = tmp_path / "profiled"
    rc = main(
        [
            "profile",
            "--config",
            str(repo_root / "configs/demo_cpu.yaml"),
            "--checkpoint",
            str(tmp_path / "run"),
            "--out",
            str(out),
            f"data.root={tmp_path / 'data'}",
            "data.train_clips=3",
            "data.eval_clips=1",
            "data.frames_per_clip=16",
            "model.max_prompt_tokens=256",
            "rollout.max_new_tokens=16",
            "rollout.cpu_threads=1",
            "rollout.backend=hf",  # the engine is not under test here (vLLM rollouts are: test_rollout.py)
            f"run.output_dir={tmp_path}",
            "stages.profile.quantiles=true",
            "stages.profile.samples_per_prompt=2",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "difficulty profile" in printed and "zero-variance clips" in printed
    clips = {c.clip_id: c for p in list_shards(str(out)) for c in read_shard(p)}
    train = {c.clip_id for p in list_shards(str(tmp_path / "data" / "train" / "shards")) for c in read_shard(p)}
    assert set(clips) == train and len(train) == 3
    assert sorted(c.bucket for c in clips.values()) == ["easy", "hard", "medium"]  # quantiles: one clip each
    marks = [json.loads(line) for line in (out / "profile.jsonl").read_text().splitlines()]
    assert {m["clip_id"] for m in marks} == train and all(m["samples"] == 2 for m in marks)
    assert all(clips[m["clip_id"]].pass_rate == m["pass_rate"] for m in marks)
