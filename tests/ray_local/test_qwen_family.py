"""The qwen2_5_omni family through the same learner and engine code as tiny_av: a tiny random
thinker of the real architecture (in the published checkpoint layout) samples captions from one
clip's video + audio on both engines — transformers ``generate`` and vLLM (fed through
``qwen2_5_omni_vllm``) — two DeepSpeed ranks score those samples with the same media to each
engine's log-probs, train on them (SFT and a GRPO step), and after a weight push both engines
agree with the learner again."""

import numpy as np
import pytest

from diadem_ray.models import qwen2_5_omni as q
from diadem_ray.types import GrpoBatch, Prompt


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    return q.build_tiny_thinker(tmp_path_factory.mktemp("thinker"))


def _close(got, want, atol=1e-5):
    """Per-token log-probs agree (seen: within 5e-7; vLLM's own positions are off by 3e-4 here)."""
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=atol)


def test_thinker_engines_and_learner_agree_before_and_after_training(ray_local, thinker, tiny_clip_inputs):
    from diadem_ray.actors.rollout import RolloutWorker
    from diadem_ray.cluster.learner_group import LearnerGroup

    path, tok, fe = thinker
    # clip b: 4 s sampled at 1 fps, so its video and audio interleave in two 2-s chunks (a: one)
    (ids_a, media_a), (ids_b, media_b) = tiny_clip_inputs(tok, fe, 0), tiny_clip_inputs(tok, fe, 1, seconds=4, fps=1.0)
    assert media_b["video_grid_thw"][0][0] == 2 and media_b["video_second_per_grid"][0] == 2.0
    hf = RolloutWorker(model_path=str(path), backend="hf", family="qwen2_5_omni")
    hf.setup()
    vl = RolloutWorker(model_path=str(path), backend="vllm", family="qwen2_5_omni", max_pixels_per_frame=16 * 28 * 28)
    vl.setup()
    prompts = [Prompt("a", tuple(ids_a), media=media_a), Prompt("b", tuple(ids_b), media=media_b)]
    ro = hf.generate(prompts, samples_per_prompt=2, max_new_tokens=6, temperature=1.0, seed=0)
    rv = vl.generate(prompts, samples_per_prompt=2, max_new_tokens=6, temperature=0.7, seed=0)
    # a sample of either engine that draws a placeholder ends there without it (here: possibly before any token)
    for rollouts in (ro, rv):
        assert sum(len(r.token_ids) for r in rollouts) > 4
        assert all(r.finish_reason == "stop" for r in rollouts if len(r.token_ids) < 6)
    for rollouts in (ro, rv):
        assert [r.prompt_id for r in rollouts] == ["a", "a", "b", "b"]
        assert [list(r.prompt_token_ids) for r in rollouts] == [ids_a, ids_a, ids_b, ids_b]
        assert not {t for r in rollouts for t in r.token_ids} & set(q.special_token_ids(tok).values())
    # an engine that would expand a clip otherwise than build_inputs did (here: another frame rate) says so
    other_rate = dict(media_b, video_second_per_grid=np.asarray([1.0], np.float32))
    with pytest.raises(ValueError, match="expanded prompt b differently"):
        vl.generate([Prompt("b", tuple(ids_b), media=other_rate)], samples_per_prompt=1, max_new_tokens=1)
    p_ids = [list(r.prompt_token_ids) for r in ro]
    r_ids, rv_ids = [list(r.token_ids) for r in ro], [list(r.token_ids) for r in rv]
    media = [media_a, media_a, media_b, media_b]
    # vLLM expands and encodes the clip as build_inputs and the transformers thinker do
    _close(vl.sequence_logprobs(p_ids, r_ids, media), [r.logprobs for r in ro])

    g = LearnerGroup(
        num_ranks=2,
        num_cpus_per_rank=0.5,
        model_path=str(path),
        family="qwen2_5_omni",
        zero_stage=2,
        lr=1e-2,
        micro_batch_size=2,
        collective_timeout_s=60,
        need_reference=False,
        grad_clip_norm=0.0,
    )
    try:
        learner_lp = g.compute_logprobs(p_ids, r_ids, media=media)
        _close(learner_lp, [r.logprobs for r in ro])
        # vLLM's sampled log-probs are at temperature 0.7, as the learner scores them for GRPO
        _close(g.compute_logprobs(p_ids, rv_ids, media=media, temperature=0.7), [r.logprobs for r in rv])
        # Media matter: the same tokens scored without the clip's features give other log-probs.
        blind = g.compute_logprobs(p_ids, r_ids)
        assert max(abs(a - b) for x, y in zip(blind, learner_lp) for a, b in zip(x, y)) > 1e-3
        first = g.sft_step(p_ids, r_ids, media=media)["learner/sft_loss"]
        for _ in range(3):
            last = g.sft_step(p_ids, r_ids, media=media)["learner/sft_loss"]
        assert last < first
        m = g.grpo_step(GrpoBatch.of(p_ids, r_ids, [1.0, -1.0, 0.5, -0.5], media=media), kl_coef=0.0)
        assert np.isfinite(m["learner/grad_norm"])
        buckets = g.export_weights()
        hf.load_weight_buckets(1, buckets)
        vl.load_weight_buckets(1, buckets)  # the learner's names, mapped onto vLLM's thinker
        assert vl.load_path == "staged"  # into kept plain weights, encoders too (actors/vllm_cpu_load.py)
        after_learner = g.compute_logprobs(p_ids, r_ids, media=media)
        _close(hf.sequence_logprobs(p_ids, r_ids, media), after_learner)
        _close(vl.sequence_logprobs(p_ids, r_ids, media), after_learner)
        assert (
            max(abs(a - b) for x, y in zip(after_learner, learner_lp) for a, b in zip(x, y)) > 1e-3
        )  # training moved them
    finally:
        g.shutdown()


def test_media_need_a_family_that_takes_them(thinker, tmp_path, tiny_clip_inputs):
    from diadem_ray.actors.rollout import RolloutWorker

    path, tok, fe = thinker
    ids, media = tiny_clip_inputs(tok, fe, 0)
    w = RolloutWorker(model_path=str(path), backend="vllm", family="tiny_av")  # not set up: the check comes first
    with pytest.raises(ValueError, match="does not take"):
        w.sequence_logprobs([ids], [[1, 2]], [media])
    with pytest.raises(ValueError, match="model family must be one of"):
        RolloutWorker(model_path=str(path), family="qwen3")
