"""The qwen2_5_omni family through the same learner and engine code as tiny_av: a tiny random
thinker of the real architecture samples captions from one clip's video + audio (transformers
engine), two DeepSpeed ranks score those samples with the same media to the engine's log-probs,
train on them (SFT and a GRPO step), and after a weight push the engine agrees again."""

import numpy as np
import pytest

from diadem_ray.models import qwen2_5_omni as q
from diadem_ray.models.families import split_inputs


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    return q.build_tiny_thinker(tmp_path_factory.mktemp("thinker"))


def clip_inputs(tok, fe, seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (8, 56, 84, 3), dtype=np.uint8)
    times = np.arange(8) * 0.25  # 2 s of video
    audio = (0.1 * np.sin(np.arange(32_000) * 2 * np.pi * (180 + 40 * seed) / 16_000)).astype(np.float32)
    s = q.Settings(max_pixels=16 * 28 * 28, min_pixels=4 * 28 * 28)
    return split_inputs(q.build_inputs(frames, times, audio, "Who says what?", tokenizer=tok, feature_extractor=fe, s=s))


def test_thinker_engine_and_learner_agree_before_and_after_training(ray_local, thinker):
    from diadem_ray.actors.rollout import RolloutWorker
    from diadem_ray.cluster.learner_group import LearnerGroup

    path, tok, fe = thinker
    (ids_a, media_a), (ids_b, media_b) = clip_inputs(tok, fe, 0), clip_inputs(tok, fe, 1)
    engine = RolloutWorker(model_path=str(path), backend="hf", family="qwen2_5_omni")
    engine.setup()
    prompts = [{"prompt_id": "a", "prompt_token_ids": ids_a, "media": media_a},
               {"prompt_id": "b", "prompt_token_ids": ids_b, "media": media_b}]
    ro = engine.generate(prompts, samples_per_prompt=2, max_new_tokens=6, temperature=1.0, seed=0)
    assert [r.prompt_id for r in ro] == ["a", "a", "b", "b"] and all(len(r.token_ids) >= 1 for r in ro)
    p_ids = [list(r.prompt_token_ids) for r in ro]
    r_ids = [list(r.token_ids) for r in ro]
    media = [media_a, media_a, media_b, media_b]

    g = LearnerGroup(num_ranks=2, num_cpus_per_rank=0.5, model_path=str(path), family="qwen2_5_omni", zero_stage=2, lr=1e-2,
                     micro_batch_size=2, collective_timeout_s=60, need_reference=False, grad_clip_norm=0.0)
    try:
        learner_lp = g.compute_logprobs(p_ids, r_ids, media=media)
        for got, want in zip(learner_lp, [r.logprobs for r in ro]):
            np.testing.assert_allclose(got, want, atol=1e-4)
        # Media matter: the same tokens scored without the clip's features give other log-probs.
        blind = g.compute_logprobs(p_ids, r_ids)
        assert max(abs(a - b) for x, y in zip(blind, learner_lp) for a, b in zip(x, y)) > 1e-3
        first = g.sft_step(p_ids, r_ids, media=media)["learner/sft_loss"]
        for _ in range(3):
            last = g.sft_step(p_ids, r_ids, media=media)["learner/sft_loss"]
        assert last < first
        m = g.grpo_step(p_ids, r_ids, [1.0, -1.0, 0.5, -0.5], media=media, kl_coef=0.0)
        assert np.isfinite(m["learner/grad_norm"])
        engine.load_weight_buckets(1, g.export_weights())
        after_engine = engine.sequence_logprobs(p_ids, r_ids, media)
        after_learner = g.compute_logprobs(p_ids, r_ids, media=media)
        for got, want in zip(after_learner, after_engine):
            np.testing.assert_allclose(got, want, atol=1e-4)
        assert max(abs(a - b) for x, y in zip(after_learner, learner_lp) for a, b in zip(x, y)) > 1e-3  # training moved them
    finally:
        g.shutdown()


def test_processed_media_need_the_transformers_engine(thinker):
    from diadem_ray.actors.rollout import RolloutWorker

    path, tok, fe = thinker
    ids, media = clip_inputs(tok, fe, 0)
    w = RolloutWorker(model_path=str(path), backend="vllm", family="qwen2_5_omni")  # not set up: the check comes first
    with pytest.raises(ValueError, match="rollout.backend=hf"):
        w.sequence_logprobs([ids], [[1, 2]], [media])
    with pytest.raises(ValueError, match="model family must be one of"):
        RolloutWorker(model_path=str(path), family="qwen3")
