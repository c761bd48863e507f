"""The shared-prefix layout and forward: hand-checked packing, and log-probs, loss and gradients
equal to the per-sequence path on a tiny text LM and on a tiny Qwen2.5-Omni thinker with media
(in process, plain autograd; the DeepSpeed ranks are checked in tests/ray_local/test_shared_prefix_ranks.py)."""

import random

import pytest
import torch

from diadem_ray import packing
from diadem_ray.actors.learner import Learner
from diadem_ray.models.families import get_family


def test_pack_group_lays_out_tails_targets_and_rows():
    g = packing.pack_group(
        [4, 5, 6],
        [[7, 8, 9], [], [10]],
        old_logprobs=[[-1.0, -2.0, -3.0], [], [-0.5]],
        advantages=[[0.1, 0.2, 0.3], [], [0.9]],
        first_index=12,
    )
    assert g["context_ids"].tolist() == [[4, 5]]
    # tail t predicts response token t: the prompt's last token, then the response but its last token
    assert g["tail_ids"].tolist() == [[6, 7, 8], [6, 0, 0], [6, 0, 0]]
    assert g["tail_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert g["targets"].tolist() == [[7, 8, 9], [0, 0, 0], [10, 0, 0]]
    assert g["response_mask"].tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert g["old_logprobs"].tolist() == [[-1.0, -2.0, -3.0], [0.0, 0.0, 0.0], [-0.5, 0.0, 0.0]]
    assert g["advantages"][0].tolist() == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="sequence 13: 1 old logprobs for 0 response tokens"):
        packing.pack_group([4, 5], [[7], []], old_logprobs=[[0.0], [0.0]], first_index=12)
    with pytest.raises(ValueError, match="1 rows of advantages for 2 sequences"):
        packing.pack_group([4, 5], [[7], [8]], advantages=[[0.1]])
    with pytest.raises(ValueError, match="1 rows of old logprobs for 2 sequences"):
        packing.pack_sequences([[4], [5]], [[7], [8]], old_logprobs=[[0.1]])
    with pytest.raises(ValueError, match=">= 2 tokens"):
        packing.pack_group([4], [[7]])
    assert packing.pack_group([4, 5], [[], []])["tail_ids"].tolist() == [[5], [5]]


def test_prompt_groups_cut_runs_by_prompt_media_and_size():
    def cut(prompts, **kw):
        return [(u.rows.start, u.rows.stop, u.shared) for u in packing.prompt_groups(prompts, **kw)]

    prompts = [[1, 2]] * 5 + [[3]] * 2 + [[1, 2]] + [[4, 5]] * 2
    assert cut(prompts, max_size=3) == [
        (0, 3, True),
        (3, 5, True),  # a run longer than max_size: each piece encodes the prompt once
        (5, 8, False),  # one-token prompts (no context to share) and a lone prompt: per sequence
        (8, 10, True),
    ]
    # the fifth [1, 2] is left alone by a cut after two: batched per sequence with its neighbours
    assert cut(prompts, max_size=2) == [(0, 2, True), (2, 4, True), (4, 6, False), (6, 8, False), (8, 10, True)]
    a, b = {"clip": "a"}, {"clip": "a"}  # equal contents, different clips: never shared
    media = [a, a, b, b, b, None, None, a, a, a]
    assert cut(prompts, media=media, max_size=8)[:2] == [(0, 2, True), (2, 5, True)]
    assert cut([[1, 2], [1, 2]], media=[a, b], max_size=8) == [(0, 2, False)]
    assert packing.prompt_groups([], max_size=2) == []
    with pytest.raises(ValueError):
        packing.prompt_groups(prompts, max_size=0)


def _learner(family: str, shared: bool, micro: int = 8) -> Learner:
    learner = Learner.__new__(Learner)
    learner.device, learner.family, learner.bf16 = torch.device("cpu"), get_family(family), False
    learner.micro_batch_size, learner.shared_prefix, learner.response_logits = micro, shared, True
    learner.zero_stage, learner.world_size = 2, 1
    return learner


def _loss_and_grads(learner, model, prompts, responses, advantages, media=None, temperature=0.7):
    """A token-mean policy-gradient loss over the batch, backpropagated unit by unit."""
    model.zero_grad()
    n = sum(len(r) for r in responses)
    total, logprobs = 0.0, []
    for unit in learner._units(prompts, media):
        s = unit.rows
        packed = learner._pack(
            prompts, responses, unit, advantages=[[a] * len(r) for a, r in zip(advantages, responses)]
        )
        lp, ent = learner._forward(
            model, packed, need_entropy=True, media=media[s] if media else None, temperature=temperature
        )
        mask = packed["response_mask"]
        loss = -(lp * packed["advantages"] * mask).sum() / n - 0.01 * (ent * mask).sum() / n
        loss.backward()
        total += float(loss.detach())
        logprobs += [row[m.bool()] for row, m in zip(lp.detach(), mask)]
    return total, logprobs, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _assert_same(family, model, prompts, responses, advantages, media=None, micro=8):
    shared = _loss_and_grads(_learner(family, True, micro), model, prompts, responses, advantages, media)
    per_seq = _loss_and_grads(_learner(family, False, micro), model, prompts, responses, advantages, media)
    assert shared[0] == pytest.approx(per_seq[0], abs=1e-5)
    assert [len(x) for x in shared[1]] == [len(r) for r in responses]
    assert max(float((x - y).abs().max()) for x, y in zip(shared[1], per_seq[1]) if len(x)) < 1e-5
    assert shared[2].keys() == per_seq[2].keys() and len(shared[2]) > 0
    for k in per_seq[2]:
        torch.testing.assert_close(shared[2][k], per_seq[2][k], atol=1e-5, rtol=0)
    assert max(float(g.abs().max()) for g in per_seq[2].values()) > 1e-3  # the comparison is not of zeros


def test_text_lm_gives_the_same_loss_log_probs_and_gradients(tmp_path):
    from transformers import AutoModelForCausalLM

    from diadem_ray.models.tiny_lm import build_tiny_lm

    model = AutoModelForCausalLM.from_pretrained(str(build_tiny_lm(tmp_path)), dtype=torch.float32)
    rng = random.Random(0)
    prompts, responses = [], []
    for _ in range(3):  # groups of 4 with prompts of different lengths; some responses empty
        prompt = [rng.randrange(3, 500) for _ in range(rng.randint(3, 9))]
        for _ in range(4):
            prompts.append(prompt)
            responses.append([rng.randrange(3, 500) for _ in range(rng.randint(0, 7))])
    prompts += [[7], [11, 12, 13]]  # a one-token prompt and a lone prompt: per sequence inside the shared path
    responses += [[8, 9], [14]]
    advantages = [rng.uniform(-1, 1) for _ in prompts]
    _assert_same("tiny_av", model, prompts, responses, advantages)
    _assert_same("tiny_av", model, prompts, responses, advantages, micro=3)  # groups cut in pieces


def test_qwen_thinker_with_media_gives_the_same_loss_log_probs_and_gradients(tmp_path, tiny_clip_inputs):
    from diadem_ray.models import qwen2_5_omni as q
    from diadem_ray.models.media import expand_media, learner_media

    path, tok, fe = q.build_tiny_thinker(tmp_path)

    def clip(seed, seconds, fps):
        ids, media = tiny_clip_inputs(tok, fe, seed, seconds=seconds, fps=fps)
        return list(ids), learner_media(media)

    # clip b: 4 s at 1 fps, so its video and audio interleave in two chunks (multimodal positions)
    (ids_a, media_a), (ids_b, media_b) = clip(0, 2, 2.0), clip(1, 4, 1.0)
    prompts = [ids_a] * 3 + [ids_b] * 2
    media = expand_media([media_a] * 3 + [media_b] * 2)
    rng = random.Random(1)
    responses = [[rng.randrange(3, 200) for _ in range(rng.randint(1, 6))] for _ in prompts]
    model = get_family("qwen2_5_omni").load_causal_lm(str(path), dtype=torch.float32)
    _assert_same("qwen2_5_omni", model, prompts, responses, [rng.uniform(-1, 1) for _ in prompts], media)


def test_packing_docstring_examples_hold():
    import doctest

    assert doctest.testmod(packing).failed == 0
