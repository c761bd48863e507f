"""Roles land on the node types that offer their resources: a small GRPO job (SFT, profile, one
GRPO step, Qwen2.5-Omni's tiny random thinker with media) on a three-node cluster started by Ray's
own multi-node harness. Learner ranks and rollout replicas run on the GPU-like node, reward workers
and Ray Data decoding on the CPU node, and none of them on the head (which offers no CPU; only
Ray's zero-CPU bookkeeping actors and the driver may live there)."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_roles_land_on_their_node_types(repo_root, tmp_path):
    out = tmp_path / "result.json"
    overrides = [
        "run.name=multinode", f"run.output_dir={tmp_path / 'runs'}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
        "model.family=qwen2_5_omni", "model.max_prompt_tokens=4096", "model.max_pixels_per_frame=6272",
        f"data.root={tmp_path / 'data'}", "data.train_clips=2", "data.eval_clips=1", "data.frames_per_clip=16",
        "rollout.backend=hf", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=4", "rollout.cpu_threads=1",
        "rollout.prompts_per_task=1", "learner.num_ranks=1", "learner.micro_batch_size=2",
        "stages.sft.steps=1", "stages.sft.prompts_per_step=2", "stages.profile.quantiles=true",
        "stages.grpo_stage1.steps=1", "stages.grpo_stage1.prompts_per_step=2", "stages.eval.max_new_tokens=4",
        "run.stages=[sft,profile,grpo_stage1]",
        "learner.custom_resources={diadem_gpu_node: 0.001}", "rollout.custom_resources={diadem_gpu_node: 0.001}",
        "reward.custom_resources={reward_cpu: 1}", "data.decode_resources={decode_cpu: 1}",
    ]
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # its own cluster, not one the environment names
    proc = subprocess.run([sys.executable, str(repo_root / "tests/ray_local/multinode_job.py"), str(out), str(tmp_path),
                           str(repo_root / "configs/demo_cpu.yaml"), *overrides],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    nodes, placed = result["nodes"], result["placement"]
    assert set(placed["learner"]) == {nodes["gpu"]} and set(placed["rollout"]) == {nodes["gpu"]}, result
    assert set(placed["reward"]) == {nodes["cpu"]}, result
    assert set(placed["decode"]) == {nodes["cpu"]} and len(placed["decode"]) == 3, result  # 2 train + 1 eval clips
    assert nodes["head"] not in {n for ids in placed.values() for n in ids}
    assert "placement: learner ranks: 1 on" in proc.stdout and "diadem_gpu_node" in proc.stdout


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_reward_workers_come_back_after_their_node_is_lost(repo_root, tmp_path):
    """The CPU node goes away mid-step and a replacement joins: every caption of the step is
    scored, with the reward it would have had; the log names the lost node, the resubmitted
    batches and the node the workers came back on."""
    out = tmp_path / "result.json"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(repo_root / "tests/ray_local/node_loss_rewards.py"), str(out)],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads(out.read_text())
    assert r["results"] == 60 and r["errors"] == [] and r["same_reward"], r
    assert r["resubmitted"] >= 1, r
    assert set(r["nodes_after"]) <= {r["new"], None} and r["new"] in r["nodes_after"], r
    log = proc.stderr
    assert f"on node {r['lost'][:8]}" in log and ("died while scoring batch" in log or "is unavailable" in log), log[-3000:]
    assert f"is back on node {r['new'][:8]}" in log, log[-3000:]
