"""Multi-node runs on one machine with Ray's own harness (``ray.cluster_utils.Cluster``): a head
that offers no CPU, a "GPU-like" node that alone offers ``diadem_gpu_node``, a CPU node that alone
offers ``reward_cpu`` and ``decode_cpu``. Each role lands on its node type, and losing a node is
survived without a person: the GPU-like node mid-run (the driver rebuilds the learner and rollout
groups on a node that joins, from the last checkpoint, and ends with the weights of a run that was
never interrupted), the CPU node mid-step (reward workers come back on a new node)."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

JOB = [
    "model.family=qwen2_5_omni",
    "model.max_prompt_tokens=4096",
    "model.max_pixels_per_frame=6272",
    "data.train_clips=2",
    "data.eval_clips=1",
    "data.frames_per_clip=16",
    "rollout.backend=hf",
    "rollout.samples_per_prompt=2",
    "rollout.max_new_tokens=4",
    "rollout.cpu_threads=1",
    "rollout.prompts_per_task=1",
    "learner.num_ranks=1",
    "learner.micro_batch_size=2",
    "stages.sft.steps=1",
    "stages.sft.prompts_per_step=2",
    "stages.profile.quantiles=true",
    "stages.grpo_stage1.steps=2",
    "stages.grpo_stage1.prompts_per_step=2",
    "stages.eval.max_new_tokens=4",
    "run.stages=[sft,profile,grpo_stage1]",
    "checkpoint.every_steps=1",
    "cluster.node_wait_s=120",
    "learner.custom_resources={diadem_gpu_node: 0.001}",
    "rollout.custom_resources={diadem_gpu_node: 0.001}",
    "reward.custom_resources={reward_cpu: 1}",
    "data.decode_resources={decode_cpu: 1}",
    "data.decode_workers=1",
]


def _job(repo_root, tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # its own cluster, not one the environment names
    args = [
        *extra,
        f"run.name={name}",
        f"run.output_dir={tmp_path / 'runs'}",
        f"data.root={tmp_path / 'data'}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / (name + '.db')}",
        *JOB,
    ]
    proc = subprocess.run(
        [
            sys.executable,
            str(repo_root / "tests/ray_local/multinode_job.py"),
            str(out),
            str(tmp_path),
            str(repo_root / "configs/demo_cpu.yaml"),
            *args,
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout + proc.stderr


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "policy" / "model.safetensors"))


@pytest.mark.ray
@pytest.mark.cluster
@pytest.mark.timeout(1500)
def test_roles_land_on_their_nodes_and_lost_gpu_and_cpu_nodes_are_survived(repo_root, tmp_path):
    lost, log = _job(repo_root, tmp_path, "lost", "--lose-gpu-node-after", "grpo_stage1:0")
    nodes, placed, after = lost["nodes"], lost["placement"], lost["placement_after"]
    # Each role on its node type, none on the head (which offers no CPU).
    assert set(placed["learner"]) == {nodes["gpu"]} and set(placed["rollout"]) == {nodes["gpu"]}, lost
    assert set(placed["reward"]) == {nodes["cpu"]}, lost
    assert set(placed["decode"]) == {nodes["cpu"]} and len(placed["decode"]) == 1, lost  # one decode worker
    assert nodes["head"] not in {n for ids in placed.values() for n in ids}
    assert "placement: learner ranks: 1 on" in log and "diadem_gpu_node" in log
    # The GPU-like node went away after global step 2 (SFT 1, GRPO 1); the groups came back on the new one.
    assert lost["lost_at"] == 2 and lost["global_step"] == 3, lost
    assert set(after["learner"]) == {nodes["gpu_after"]} and set(after["rollout"]) == {nodes["gpu_after"]}, lost
    assert "lost the learner/rollout group" in log and "restart 1 of run.max_restarts 3" in log, log[-3000:]
    assert "recovered in" in log and "resumed at global step 2" in log, log[-3000:]
    # MLflow holds every step once.
    with sqlite3.connect(tmp_path / "lost.db") as db:
        steps = [s for (s,) in db.execute("SELECT step FROM metrics WHERE key = 'progress/stage_step' ORDER BY step")]
    assert steps == [1, 2, 3], steps
    # The CPU node lost in the middle of a GRPO step (after its rollouts, before its rewards): the
    # reward and decode workers come back on the node that joins, the step's lost media are decoded
    # again there, and the step completes with every rollout scored.
    cpu_lost, cpu_log = _job(repo_root, tmp_path, "cpulost", "--lose-cpu-node-at", "grpo_stage1:1")
    new_cpu = cpu_lost["nodes"]["cpu_after"]
    assert cpu_lost["lost_at"] == 2 and cpu_lost["global_step"] == 3, cpu_lost
    assert "decode worker 0 lost" in cpu_log and "reward worker" in cpu_log, cpu_log[-3000:]
    assert f"is back on node {new_cpu[:8]}" in cpu_log, cpu_log[-3000:]
    assert f"lost with their decode worker; decoded again on ['{new_cpu[:8]}']" in cpu_log, cpu_log[-3000:]
    with sqlite3.connect(tmp_path / "cpulost.db") as db:
        at = dict(
            db.execute(
                "SELECT key, value FROM metrics WHERE step = 3 AND key IN ('grpo/scored_rollouts', 'reward/failed')"
            ).fetchall()
        )
    assert at == {"grpo/scored_rollouts": 4.0, "reward/failed": 0.0}, at
    # The same run never interrupted: the same weights and scores as both.
    whole, _ = _job(repo_root, tmp_path, "whole")
    assert whole["evals"] == lost["evals"] == cpu_lost["evals"]
    a, b, c = (_weights(tmp_path / "runs" / n) for n in ("lost", "whole", "cpulost"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert all((c[k] == b[k]).all() for k in b)


@pytest.mark.ray
@pytest.mark.cluster
@pytest.mark.timeout(600)
def test_reward_workers_and_decode_work_come_back_after_their_node_is_lost(repo_root, tmp_path):
    """The CPU node goes away mid-step and a replacement joins: every caption of the step is
    scored, with the reward it would have had; the log names the lost node, the resubmitted
    batches and the node the workers came back on."""
    out = tmp_path / "result.json"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(repo_root / "tests/ray_local/node_loss_rewards.py"), str(out)],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads(out.read_text())
    assert r["results"] == 60 and r["errors"] == [] and r["same_reward"], r
    assert r["resubmitted"] >= 1, r
    assert set(r["nodes_after"]) <= {r["new"], None} and r["new"] in r["nodes_after"], r
    log = proc.stderr
    assert f"on node {r['lost'][:8]}" in log and ("died while scoring batch" in log or "is unavailable" in log), log[
        -3000:
    ]
    assert f"is back on node {r['new'][:8]}" in log, log[-3000:]
    # Decode work: every clip decoded, to the same evidence, the lost worker's clips resubmitted and
    # finished on the node that joined.
    assert r["decoded"] == 9 and r["decode_errors"] == [] and r["decode_same"], r
    assert r["decode_resubmitted"] >= 1 and r["new"] in r["decode_nodes"], r
    assert "decode worker 0 lost" in log and "resubmitted to worker 0" in log, log[-3000:]
