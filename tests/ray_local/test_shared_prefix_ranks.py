"""The shared-prefix learner path on DeepSpeed ranks: one GRPO step (policy loss, KL to the
reference, entropy, per-token advantages, the engine/learner log-prob check) gives the same update
as the per-sequence path, under ZeRO-3, with LoRA under ZeRO-2, and on a Qwen2.5-Omni thinker with
media. SGD at lr 1 without clipping makes the update equal the gradient; a checkpoint taken first
restores the weights between the two paths (after a first step that moves the policy away from
its reference, so the KL term is not zero)."""

import random

import pytest

from diadem_ray.models.tiny_lm import build_tiny_lm
from diadem_ray.types import GrpoBatch


def _text_batch():
    rng = random.Random(3)
    prompts, responses = [], []
    for _ in range(4):  # 4 groups of 2: each rank holds 2 groups
        prompt = [rng.randrange(3, 500) for _ in range(rng.randint(3, 8))]
        for _ in range(2):
            prompts.append(prompt)
            responses.append([rng.randrange(3, 500) for _ in range(rng.randint(1, 7))])
    return prompts, responses, None


def _thinker_batch(path_tok_fe, clip_inputs):
    _, tok, fe = path_tok_fe
    rows = [clip_inputs(tok, fe, 0), clip_inputs(tok, fe, 1, seconds=4, fps=1.0)]
    rng = random.Random(4)
    prompts = [list(rows[0][0])] * 2 + [list(rows[1][0])] * 2
    media = [rows[0][1]] * 2 + [rows[1][1]] * 2
    responses = [[rng.randrange(3, 200) for _ in range(rng.randint(1, 5))] for _ in prompts]
    return prompts, responses, media


CASES = {
    "text-zero3": dict(zero_stage=3),
    "text-lora-zero2": dict(
        zero_stage=2, lora={"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    ),
    "thinker-media-zero2": dict(zero_stage=2, family="qwen2_5_omni"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_shared_prefix_step_equals_the_per_sequence_step(ray_local, tmp_path, case, tiny_clip_inputs):
    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.models import qwen2_5_omni as q

    kw = dict(CASES[case])
    if kw.get("family") == "qwen2_5_omni":
        built = q.build_tiny_thinker(tmp_path / "thinker")
        model, (prompts, responses, media) = str(built[0]), _thinker_batch(built, tiny_clip_inputs)
    else:
        model, (prompts, responses, media) = str(build_tiny_lm(tmp_path / "lm")), _text_batch()
    g = LearnerGroup(
        num_ranks=2,
        num_cpus_per_rank=0.5,
        model_path=model,
        optimizer="sgd",
        lr=1.0,
        micro_batch_size=4,
        collective_timeout_s=60,
        need_reference=True,
        grad_clip_norm=0.0,
        **kw,
    )
    try:
        rng = random.Random(5)
        g.run_all("set_shared_prefix", False)
        per_seq_lp = g.compute_logprobs(prompts, responses, media=media, temperature=0.7)
        g.run_all("set_shared_prefix", True)
        shared_lp = g.compute_logprobs(prompts, responses, media=media, temperature=0.7)
        assert max(abs(a - b) for x, y in zip(shared_lp, per_seq_lp) for a, b in zip(x, y)) < 1e-5
        sampled = [[v + rng.uniform(-0.01, 0.01) for v in row] for row in per_seq_lp]
        advantages = [[rng.uniform(-1, 1) for _ in r] if i % 2 else rng.uniform(-1, 1) for i, r in enumerate(responses)]
        batch = GrpoBatch.of(prompts, responses, advantages, rollout_logprobs=sampled, media=media)
        step = dict(kl_coef=0.1, entropy_coef=0.01, temperature=0.7)
        g.grpo_step(batch, **step)  # away from the reference, so the KL term has a gradient
        g.save_checkpoint(str(tmp_path / "ckpt"), {})
        results = {}
        for shared in (True, False):
            g.load_checkpoint(str(tmp_path / "ckpt"))
            g.run_all("set_shared_prefix", shared)
            before = g.parameter_snapshot()
            metrics = g.grpo_step(batch, **step)
            after = g.parameter_snapshot()
            results[shared] = metrics, {k: after[k] - before[k] for k in before}
        (m_shared, d_shared), (m_seq, d_seq) = results[True], results[False]
        for key in (
            "learner/loss",
            "learner/kl",
            "learner/entropy",
            "learner/rollout_logprob_abs_diff",
            "learner/tokens",
        ):
            assert m_shared[key] == pytest.approx(m_seq[key], abs=1e-5), key
        assert m_seq["learner/kl"] > 0 and m_seq["learner/grad_norm"] > 1e-3  # the step did something
        assert d_shared.keys() == d_seq.keys()
        assert max(float((d_shared[k] - d_seq[k]).abs().max()) for k in d_seq) < 1e-5
        if "lora" in kw:
            assert all("lora_" in k for k in d_seq)
    finally:
        g.shutdown()
