"""Per-line credit: caption lines -> REF verdicts -> line advantages -> per-token advantages."""

import random

import pytest
import torch

from diadem_ray import grpo, packing
from diadem_ray.config import RewardComponentConfig, RewardSpec, line_credit_problems
from diadem_ray.driver.grpo_step import _nonzero
from diadem_ray.rewards.compose import Composition
from diadem_ray.rewards.extract import extract_structured, extract_structured_spans
from diadem_ray.rewards.lines import line_hits
from diadem_ray.rewards.metrics import score_dialogue
from diadem_ray.types import LineHit, Rollout, ScoredRollout, Turn

REF = (
    Turn("the old man", "Did the driver call this morning?"),
    Turn("the woman", "No, I left the map at the hospital."),
    Turn("the old man", "Then we should check the door first."),
)


def test_spans_point_at_the_raw_speaker_phrase_of_each_form():
    caption = (
        'Intro line without a quote.\r\n  - the old man :  "Did the driver call?"\n'
        '0:01 - 0:03, the woman in red said: "No."\n\nthe man: "Fine."'
    )
    spans = extract_structured_spans(caption)
    assert [t for t, _ in spans] == extract_structured(caption)
    assert [caption[s:e] for _, (s, e) in spans] == ["the old man", "the woman in red", "the man"]


def test_line_hits_agree_with_the_ref_count_line_by_line():
    caption = (
        'the old man: "Did the driver call this morning?"\nthe man: "No, I left the map at the hospital."\n'
        'the old man: "A line nobody said at all, really."\nthe old man: "Then we should check the door first."'
    )
    spans = extract_structured_spans(caption)
    hyp = [t for t, _ in spans]
    score = score_dialogue([t.line() for t in hyp], [t.line() for t in REF])
    hits = line_hits(hyp, [s for _, s in spans], score)
    assert [(caption[h.start : h.end], h.ref_index, h.hit) for h in hits] == [
        ("the old man", 0, True),
        ("the man", 1, False),
        ("the old man", 2, True),
    ]  # the invented line is unmatched
    assert sum(h.hit for h in hits) == score.ref_hits == 2


def test_line_hits_sum_to_ref_hits_on_random_captions():
    rng = random.Random(3)
    speakers = ["the old man", "the woman", "the man", "the old woman", "the man in red"]
    words = "the door map call driver hospital morning check first left no then we should".split()
    for _ in range(200):
        ref = [
            Turn(rng.choice(speakers), " ".join(rng.choices(words, k=rng.randint(2, 7))))
            for _ in range(rng.randint(1, 5))
        ]
        hyp_turns = [
            Turn(rng.choice(speakers), t.text if rng.random() < 0.7 else " ".join(rng.choices(words, k=4)))
            for t in ref
            if rng.random() < 0.9
        ]
        caption = "\n".join(f'{t.speaker}: "{t.text}"' for t in hyp_turns)
        scored = Composition.from_spec(RewardSpec("r", components=[RewardComponentConfig("ref_f1", 1.0)])).score(
            caption, ref, step=0, lines=True
        )
        score = score_dialogue([t.line() for t in scored.hyp], [t.line() for t in ref])
        assert sum(h.hit for h in scored.lines) == score.ref_hits
        assert all(caption[h.start : h.end].strip() for h in scored.lines)


def test_composition_lines_leave_the_reward_alone_and_need_the_structured_extractor():
    spec = RewardSpec("r", components=[RewardComponentConfig("ref_f1", 1.0), RewardComponentConfig("asr_f1", 0.25)])
    caption = 'the man: "Did the driver call this morning?"\nthe woman: "No, I left the map at the hospital."'
    plain = Composition.from_spec(spec).score(caption, REF, step=0)
    lined = Composition.from_spec(spec).score(caption, REF, step=0, lines=True)
    assert (plain.reward, plain.components, plain.lines) == (lined.reward, lined.components, ())
    assert [(h.ref_index, h.hit) for h in lined.lines] == [(0, False), (1, True)]
    prose = RewardSpec("p", extractor="prose", components=[RewardComponentConfig("ref_f1", 1.0)])
    with pytest.raises(ValueError, match="extractor: structured"):
        Composition.from_spec(prose).score(caption, REF, step=0, lines=True)
    assert line_credit_problems(0.0, prose) == []
    (problem,) = line_credit_problems(0.5, prose)
    assert "reward 'p'.extractor" in problem and "grpo.line_credit_weight" in problem


def test_line_advantages_compare_each_reference_line_within_the_group():
    adv = grpo.line_advantages(
        [[(0, True), (1, False), (2, True)], [(0, False), (1, False)], [(0, True), (2, True)], []]
    )
    assert adv == [[pytest.approx(1 / 3), 0.0, 0.0], [pytest.approx(-2 / 3), 0.0], [pytest.approx(1 / 3), 0.0], []]


def test_char_spans_to_tokens_covers_straddling_tokens():
    pieces = ["the", " old", " man", ':"', "Hi", '."\n', "the", " wo", "man", ':"', "No", '."']
    text = "".join(pieces)
    prefix = lambda i: len("".join(pieces[:i]))  # noqa: E731
    start = text.index("the wo")
    spans = grpo.char_spans_to_tokens(prefix, len(pieces), [(0, 11), (start, start + 9), (start + 1, start + 5)])
    assert spans == [(0, 3), (6, 9), (6, 8)]  # 'he w' starts inside 'the' and ends inside ' wo'
    assert "".join(pieces[6:9]) == "the woman"


def test_token_advantages_add_weighted_line_credit_on_speaker_tokens_only():
    out = grpo.token_advantages(0.5, 8, [(0, 2), (5, 7)], [1.0, -0.5], weight=0.4)
    assert out == pytest.approx([0.9, 0.9, 0.5, 0.5, 0.5, 0.3, 0.3, 0.5])
    with pytest.raises(ValueError):
        grpo.token_advantages(0.5, 8, [(0, 2)], [1.0, 2.0], weight=1.0)


def test_per_token_advantages_pack_like_log_probs_and_drive_the_loss():
    prompts, responses = [[1, 2, 3], [4, 5]], [[6, 7], [8, 9, 10]]
    rows = [[0.5, 0.5], [1.0, -1.0, 0.0]]
    packed = packing.pack_sequences(prompts, responses, old_logprobs=[[0.0] * 2, [0.0] * 3], advantages=rows)
    mask = packed["response_mask"]
    assert packed["advantages"][mask.bool()].tolist() == [0.5, 0.5, 1.0, -1.0, 0.0]
    assert packed["advantages"][~mask.bool()].abs().sum() == 0
    lp = torch.log(torch.full(mask.shape, 0.5)).requires_grad_()
    # A row that is constant equals the scalar form; a row that differs moves only its own tokens.
    scalar, _ = grpo.grpo_loss(lp, lp.detach(), torch.tensor([0.5, 0.0]), mask)
    rowwise, _ = grpo.grpo_loss(
        lp,
        lp.detach(),
        packing.pack_sequences(prompts, responses, advantages=[[0.5, 0.5], [0.0] * 3])["advantages"],
        mask,
    )
    assert float(scalar.detach()) == pytest.approx(float(rowwise.detach()))
    (grad,) = torch.autograd.grad(grpo.grpo_loss(lp, lp.detach(), packed["advantages"], mask)[0], lp)
    assert grad[mask.bool()].tolist() == pytest.approx([-0.1, -0.1, -0.2, 0.2, 0.0])
    with pytest.raises(ValueError, match="advantages"):
        packing.pack_sequences(prompts, responses, advantages=[[0.5], [1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="sequence 9: 1 old logprobs for 3"):  # numbered within the whole batch
        packing.pack_sequences(prompts, responses, old_logprobs=[[0.0] * 2, [0.0]], first_index=8)


class _CharTokens:
    """A tokenizer stand-in: token i is chr(i)."""

    @staticmethod
    def decode(ids):
        return "".join(chr(i) for i in ids)


def _scored(text, lines, decoded=None):
    ids = tuple(ord(c) for c in (decoded if decoded is not None else text))
    return ScoredRollout(Rollout("p", 0, (1,), ids, (0.0,) * len(ids), text, "stop", 1), 0.0, {}, lines=tuple(lines))


def test_driver_turns_a_group_into_per_token_advantages():
    a = 'the man: "Hi."\nthe woman: "No."'
    b = 'the woman: "Hi."\nthe woman: "No."'
    group = [
        _scored(a, [LineHit(0, 7, 0, True), LineHit(15, 24, 1, True)]),
        _scored(b, [LineHit(0, 9, 0, False), LineHit(17, 26, 1, True)]),
        _scored(a, [], decoded=a + "!"),  # tokens that do not decode to the scored text
        _scored("", []),
    ]
    counts = {"lines": 0.0, "credited": 0.0, "unmapped": 0.0}
    out = grpo.line_credit(group, [0.25, -0.25, 0.0, 0.0], decode=_CharTokens.decode, weight=2.0, counts=counts)
    assert out[0][:7] == pytest.approx([0.25 + 2.0 * 0.5] * 7) and out[0][7:] == pytest.approx([0.25] * (len(a) - 7))
    assert out[1][:9] == pytest.approx([-0.25 - 2.0 * 0.5] * 9) and set(out[1][9:]) == {-0.25}  # line 1: all right, 0
    assert out[2:] == [0.0, 0.0]
    assert counts == {"lines": 4.0, "credited": 2.0, "unmapped": 1.0}
    group[2] = _scored(a, [LineHit(0, 7, 0, False)], decoded=a + "!")
    counts = {"lines": 0.0, "credited": 0.0, "unmapped": 0.0}
    out = grpo.line_credit(group, [0.25, -0.25, 0.0, 0.0], decode=_CharTokens.decode, weight=2.0, counts=counts)
    assert out[2] == 0.0 and counts["unmapped"] == 1.0
    assert [_nonzero(x) for x in ([0.0, 0.0], [0.0, 1.0], 0.0, -0.5)] == [False, True, False, True]
