"""GPU weight sync (skipped without CUDA; never run on the CPU development machine):

* NCCL broadcast from learner rank 0 into a vLLM replica through vLLM's weight-transfer API, then
  the engine's log-probs of fixed sequences match the learner's (needs 2 GPUs: NCCL cannot put
  the learner and the engine on one device);
* the colocated layout on one GPU: the engine sleeps through the learner step, wakes its weights,
  takes the object-store sync, wakes its KV cache, and agrees with the learner again.
"""

import pytest
import torch

from diadem_ray.models.tiny_lm import build_tiny_lm
from diadem_ray.types import Prompt

# the one-GPU check (bench/gpu_check.py) runs this tier on an image without Ray or vLLM
ray = pytest.importorskip("ray")
pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _step_sync_compare(tmp_path, *, rollout_gpus, learner_gpus, mode, sleep_mode):
    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.cluster.rollout_group import RolloutGroup
    from diadem_ray.cluster.weight_sync import WeightSync

    model = str(build_tiny_lm(tmp_path / "m"))
    rollouts = RolloutGroup(
        num_replicas=1,
        num_cpus_per_replica=1,
        num_gpus_per_replica=rollout_gpus,
        model_path=model,
        max_model_len=256,
        gpu_memory_utilization=0.2,
        weight_transfer=mode,
        sleep_mode=sleep_mode,
    )
    learners = LearnerGroup(
        num_ranks=1,
        num_cpus_per_rank=1,
        num_gpus_per_rank=learner_gpus,
        model_path=model,
        zero_stage=2,
        lr=1e-2,
        need_reference=False,
    )
    sync = WeightSync(learners, rollouts, timeout_s=120, mode=mode)
    try:
        prompts = [[5, 9, 17, 33], [7, 8, 9]]
        rollouts.sleep()
        learners.sft_step(prompts, [[40, 41, 42], [50, 51]])
        rollouts.wake_up(["weights"])
        m = sync.push()
        rollouts.wake_up(["kv_cache"])
        assert m["sync/policy_version"] == 1 and m["sync/bytes"] > 0
        outs, _ = rollouts.generate(
            [Prompt(str(i), tuple(p)) for i, p in enumerate(prompts)],
            samples_per_prompt=1,
            max_new_tokens=8,
            temperature=1.0,
        )
        mine = learners.compute_logprobs([list(o.prompt_token_ids) for o in outs], [list(o.token_ids) for o in outs])
        for o, lp in zip(outs, mine):
            assert o.policy_version == 1
            assert torch.allclose(torch.tensor(o.logprobs), torch.tensor(lp), atol=1e-3)
    finally:
        rollouts.shutdown()
        learners.shutdown()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL weight transfer needs 2 GPUs")
def test_nccl_sync_matches_learner(cluster, tmp_path):
    _step_sync_compare(tmp_path, rollout_gpus=1, learner_gpus=1, mode="nccl", sleep_mode=False)


def test_colocated_sleep_wake_sync_matches_learner(cluster, tmp_path):
    _step_sync_compare(tmp_path, rollout_gpus=0.4, learner_gpus=0.4, mode="object_store", sleep_mode=True)
