"""`ray job submit` end to end on a two-node cluster started with `ray start` (each node its own
temp dir, as docs/cluster.md says): a tiny `diadem-ray train` goes in through
`JobSubmissionClient` with the repository as its working dir, succeeds, leaves its metrics in
MLflow and its checkpoint on disk; a second job with `--resume` and one more GRPO step continues
it. The nodes run `ray start --block` under this test, which stops them by their PIDs."""

import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest


def _ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait(client, job, timeout_s):
    from ray.job_submission import JobStatus

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = client.get_job_status(job)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return status
        time.sleep(2)
    return client.get_job_status(job)


@pytest.fixture
def two_nodes(repo_root):
    import shutil
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # Ray's socket paths must stay under 107 characters
    gcs, dash, client_port, agent, agent_grpc, runtime_env = _ports(6)
    venv_bin = str(Path(repo_root) / ".venv" / "bin")
    # Ray reads RAY_AUTH_MODE when it is imported, and this process imported it while collecting
    # the tests: the nodes are told the same mode (disabled; they listen on this machine only).
    env = dict(
        os.environ,
        PATH=f"{venv_bin}:{os.environ.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
    )
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(venv_bin) / "ray")
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            "--num-cpus=0",
            f"--temp-dir={short / 'h'}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            "--object-store-memory=150000000",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=open(short / "head.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs = [head]
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.time() + 180
        client, last = None, None
        while time.time() < deadline and client is None:
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
            except Exception as exc:  # not up yet
                last = exc
                if head.poll() is not None or "uthentication" in str(exc):
                    break
                time.sleep(2)
        log = (short / "head.log").read_text(errors="replace")[-3000:]
        assert client is not None, f"the head's dashboard did not come up: {last!r}\n{log}"
        agent2, agent2_grpc, runtime_env2 = _ports(3)
        procs.append(
            subprocess.Popen(
                [
                    ray_bin,
                    "start",
                    "--block",
                    f"--address=127.0.0.1:{gcs}",
                    "--num-cpus=2",
                    '--resources={"diadem_gpu_node": 1, "reward_cpu": 4, "decode_cpu": 4}',
                    f"--temp-dir={short / 'n2'}",
                    f"--dashboard-agent-listen-port={agent2}",
                    f"--dashboard-agent-grpc-port={agent2_grpc}",
                    f"--runtime-env-agent-port={runtime_env2}",
                    "--object-store-memory=150000000",
                    "--disable-usage-stats",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        yield client
    finally:
        for p in reversed(procs):  # `ray start --block` stops what it started when it is terminated
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.cluster
@pytest.mark.timeout(900)
def test_job_submit_runs_and_resumes_a_training_run(repo_root, tmp_path, two_nodes):
    from ray.job_submission import JobStatus

    from diadem_ray.models import qwen2_5_omni as q

    client = two_nodes
    thinker = q.build_tiny_thinker(tmp_path / "thinker")[0]
    db = tmp_path / "mlflow.db"
    args = [
        "run.name=job",
        f"run.output_dir={tmp_path / 'runs'}",
        f"tracking.tracking_uri=sqlite:///{db}",
        "model.family=qwen2_5_omni",
        f"model.path={thinker}",
        "model.max_prompt_tokens=4096",
        "model.max_pixels_per_frame=6272",
        f"data.root={tmp_path / 'data'}",
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
        "stages.grpo_stage1.prompts_per_step=2",
        "stages.eval.max_new_tokens=4",
        "run.stages=[sft,profile,grpo_stage1]",
        "learner.custom_resources={diadem_gpu_node: 0.001}",
        "rollout.custom_resources={diadem_gpu_node: 0.001}",
        "reward.custom_resources={reward_cpu: 1}",
        "data.decode_resources={decode_cpu: 1}",
        "data.decode_workers=1",
    ]
    runtime_env = {
        "working_dir": str(repo_root),
        "excludes": [".venv", ".git", "runs", ".cache", ".hypothesis", ".pytest_cache", "*.db"],
        "env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"},
    }

    def submit(*extra):
        entry = " ".join(
            ["diadem-ray", "train", "--config", "configs/demo_cpu.yaml", *extra, *[f"'{a}'" for a in args]]
        )
        job = client.submit_job(entrypoint=entry, runtime_env=runtime_env)
        status = _wait(client, job, 600)
        logs = client.get_job_logs(job)
        assert status == JobStatus.SUCCEEDED, logs[-5000:]
        return logs

    first = submit("stages.grpo_stage1.steps=1")
    assert "RAY_ADDRESS is set" in first and "grpo_stage1 step 1/1" in first, first[-3000:]
    assert (tmp_path / "runs" / "job" / "checkpoints" / "latest").is_file()
    with sqlite3.connect(db) as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM metrics WHERE key = 'progress/stage_step' ORDER BY step")]
    assert steps == [1, 2]
    second = submit("--resume", "stages.grpo_stage1.steps=2")
    assert "resumed at global step 2" in second and "grpo_stage1 step 2/2" in second, second[-3000:]
    with sqlite3.connect(db) as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM metrics WHERE key = 'progress/stage_step' ORDER BY step")]
    assert steps == [1, 2, 3]
