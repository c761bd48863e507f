"""Engine/learner log-prob agreement after a learner step and a sync, on the bundled SmolLM2-135M.

Marked ``heavy`` (about 100 s: converting the model, two learner ranks and a vLLM replica of it):
not in `make test`, run by `make test-heavy`. The same check runs by default on the tiny model
(test_rollout.py), and every GRPO step of the demo logs the SmolLM2 mismatch (mean |Δ| ≤ 1.6e-6).
"""

import os

import pytest

from diadem_ray.types import GrpoBatch, Prompt


@pytest.fixture(scope="module")
def smollm2():
    from diadem_ray.models.smollm2 import smollm2_checkpoint

    return str(smollm2_checkpoint(os.environ.get("DIADEM_TEST_CACHE", os.path.join(os.getcwd(), ".cache", "models"))))


@pytest.mark.heavy
def test_smollm2_logprobs_match_after_step_and_sync(ray_local, smollm2):
    import ray
    from transformers import AutoTokenizer

    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.cluster.rollout_group import RolloutGroup
    from diadem_ray.cluster.weight_sync import WeightSync

    tok = AutoTokenizer.from_pretrained(smollm2, local_files_only=True)
    texts = ["Describe who speaks in the clip.", "The man said:"]
    prompts = [Prompt(f"s{i}", tuple(tok(t)["input_ids"])) for i, t in enumerate(texts)]
    learners = LearnerGroup(
        num_ranks=2,
        num_cpus_per_rank=0.5,
        model_path=smollm2,
        zero_stage=2,
        lr=1e-4,
        micro_batch_size=2,
        need_reference=False,
        collective_timeout_s=120,
    )
    rollouts = RolloutGroup(
        num_replicas=1, num_cpus_per_replica=0.5, model_path=smollm2, max_model_len=256, max_num_seqs=8
    )
    try:
        out, _ = rollouts.generate(prompts, samples_per_prompt=2, max_new_tokens=10, seed=0)
        assert all(r.text for r in out)  # a real tokenizer decodes real text
        p = [list(r.prompt_token_ids) for r in out]
        resp = [list(r.token_ids) for r in out]
        before = learners.compute_logprobs(p, resp)
        assert max(abs(a - b) for x, y in zip(before, (r.logprobs for r in out)) for a, b in zip(x, y)) < 1e-3
        learners.grpo_step(GrpoBatch.of(p, resp, [1.0, -1.0, 1.0, -1.0]))
        WeightSync(learners, rollouts, bucket_bytes=64 << 20).push()
        want = learners.compute_logprobs(p, resp)
        got = ray.get(rollouts.replicas[0].sequence_logprobs.remote(p, resp))
        assert max(abs(a - b) for x, y in zip(want, got) for a, b in zip(x, y)) < 1e-4
        assert max(abs(a - b) for x, y in zip(want, before) for a, b in zip(x, y)) > 1e-4  # the step changed them
    finally:
        rollouts.shutdown()
        learners.shutdown()
