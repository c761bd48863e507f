import pytest

from diadem_ray.config import RewardComponentConfig, RewardSpec
from diadem_ray.rewards import components as C
from diadem_ray.rewards.compose import Composition
from diadem_ray.rewards.speakers import EmbeddingJudge, JudgeError, LLMJudge, exact_judge, parse_yes_no
from diadem_ray.types import Turn

REF = (Turn("Anna", "where were you last night", 0.0, 2.0), Turn("Ben", "at the office", 2.0, 3.0))


def ctx(hyp, caption="", tokens=0):
    return C.Context(caption=caption, hyp=tuple(hyp), ref=REF, response_tokens=tokens)


def test_cpwer_swapped_speaker_labels_are_free_but_wrong_words_cost():
    swapped = [Turn("X", "where were you last night", 0, 2), Turn("Y", "at the office", 2, 3)]
    assert C.cpwer_accuracy(ctx(swapped)) == 1.0
    # Ben's line attributed to Anna: 3 deletions + 3 insertions over 8 reference words.
    mixed = [Turn("Anna", "where were you last night"), Turn("Anna", "at the office")]
    assert C.cpwer_accuracy(ctx(mixed)) == pytest.approx(1 - 6 / 8)


def test_tcpwer_needs_times_and_respects_collar():
    good = [Turn("Anna", "where were you last night", 0.1, 2.0), Turn("Ben", "at the office", 2.0, 3.1)]
    assert C.tcpwer_accuracy(ctx(good), collar_s=0.5) == 1.0
    late = [Turn("Anna", "where were you last night", 30.0, 32.0), Turn("Ben", "at the office", 32.0, 33.0)]
    assert C.tcpwer_accuracy(ctx(late), collar_s=0.5) == 0.0
    assert C.tcpwer_accuracy(ctx([Turn("Anna", "where were you last night")])) == 0.0


def test_wer_ignores_speakers_and_handles_cjk():
    assert C.wer_accuracy(ctx([Turn("Q", "where were you last night at the office")])) == 1.0
    assert C.wer_accuracy(ctx([Turn("Q", "where were you")])) == pytest.approx(1 - 5 / 8)
    zh = C.Context("", (Turn("a", "你好世界"),), (Turn("a", "你好世"),))
    assert C.wer_accuracy(zh) == pytest.approx(1 - 1 / 3)


def test_temporal_iou_hand_computed():
    hyp = [Turn("Anna", "where were you last night", 1.0, 2.0), Turn("Ben", "at the office")]
    # Anna: IoU [1,2] vs [0,2] = 0.5; Ben has no times -> 0; mean over 2 references.
    assert C.temporal_iou(ctx(hyp)) == pytest.approx(0.25)


def test_penalties():
    assert C.length_penalty(ctx([], tokens=100), max_tokens=200) == 0.0
    assert C.length_penalty(ctx([], tokens=300), max_tokens=200) == pytest.approx(-0.5)
    assert C.length_penalty(ctx([], tokens=10_000), max_tokens=200) == -1.0
    assert C.repetition_penalty(ctx([], caption="a b c d e f")) == 0.0
    assert C.repetition_penalty(ctx([], caption="la " * 50)) < -0.9
    assert C.format_ok(ctx([])) == 0.0 and C.format_ok(ctx(REF)) == 1.0


def _spec(components, **kw):
    return RewardSpec(name=kw.pop("name", "t"), components=[RewardComponentConfig(**c) for c in components], **kw)


def test_composition_weights_and_schedule():
    comp = Composition.from_spec(
        _spec(
            [
                {"name": "asr_f1", "weight": 1.0},
                {"name": "temporal_iou", "weight": 2.0, "enable_step": 5, "disable_step": 9},
            ]
        )
    )
    cap = '0:00 - 0:02, Anna said: "Where were you last night?"\n0:02 - 0:03, Ben said: "At the office."'
    early = comp.score(cap, REF, step=0)
    assert early.reward == pytest.approx(1.0) and set(early.components) == {"asr_f1"}
    mid = comp.score(cap, REF, step=5)
    assert mid.reward == pytest.approx(3.0) and mid.components["temporal_iou"] == pytest.approx(1.0)
    assert set(comp.score(cap, REF, step=9).components) == {"asr_f1"}


def test_hash_stable_across_key_order_component_order_and_name():
    a = _spec(
        [{"name": "asr_f1", "weight": 0.5}, {"name": "length_penalty", "weight": 0.1, "params": {"max_tokens": 512}}],
        name="a",
    )
    b = _spec(
        [{"params": {"max_tokens": 512.0}, "weight": 0.1, "name": "length_penalty"}, {"weight": 0.5, "name": "asr_f1"}],
        name="b",
    )
    c = _spec(
        [{"name": "asr_f1", "weight": 0.6}, {"name": "length_penalty", "weight": 0.1, "params": {"max_tokens": 512}}]
    )
    ha, hb, hc = (Composition.from_spec(x).hash() for x in (a, b, c))
    assert ha == hb and ha != hc and len(ha) == 12


def test_hash_stable_across_yaml_whitespace(tmp_path):
    from diadem_ray.config import load_reward_spec

    (tmp_path / "x.yaml").write_text("name: x\ncomponents:\n  - {name: asr_f1, weight: 0.5}\n")
    (tmp_path / "y.yaml").write_text("components:\n-   weight: 0.5\n    name:    asr_f1\nname: y\n\n")
    hx = Composition.from_spec(load_reward_spec(str(tmp_path / "x.yaml"))).hash()
    hy = Composition.from_spec(load_reward_spec(str(tmp_path / "y.yaml"))).hash()
    assert hx == hy


def test_judges():
    assert exact_judge([("The Man", "the man."), ("a woman", "the woman"), ("x", "y")]) == [True, True, False]
    assert parse_yes_no("Yes no YES", 3) == [True, False, True]
    with pytest.raises(JudgeError):
        parse_yes_no("Yes", 2)
    with pytest.raises(JudgeError):
        parse_yes_no("Yes maybe", 2)
    asked = []
    judge = LLMJudge(lambda ps: (asked.append(ps), ["No"])[1])
    assert judge([("Anna", "anna"), ("the tall man", "the man in black")]) == [True, False]
    assert len(asked) == 1 and "the tall man" in asked[0][0] and '"Anna"' not in asked[0][0]


def test_embedding_judge_offline():
    judge = EmbeddingJudge(threshold=0.6)
    sims = judge.similarities(
        [
            ("a tall man in a black suit", "the man wearing a black suit"),
            ("a tall man in a black suit", "a little girl with a red balloon"),
        ]
    )
    assert sims[0] > 0.6 > sims[1]
    assert judge([("a tall man in a black suit", "the man wearing a black suit")]) == [True]


def test_llm_prompts_are_checked_and_hashed():
    from diadem_ray.rewards.compose import check_spec

    bad = _spec(
        [{"name": "ref_f1"}],
        speaker_judge="llm",
        judge_prompt="no placeholder",
        extractor="llm",
        extract_prompt="nothing",
    )
    problems = check_spec(bad)
    assert any("judge_prompt" in p and "{pairs}" in p for p in problems)
    assert any("extract_prompt" in p and "{caption}" in p for p in problems)
    a = _spec([{"name": "ref_f1"}], speaker_judge="llm", judge_prompt="A {pairs}")
    b = _spec([{"name": "ref_f1"}], speaker_judge="llm", judge_prompt="B {pairs}")
    c = _spec([{"name": "ref_f1"}], speaker_judge="exact", judge_prompt="B {pairs}")  # unused prompt: same reward
    d = _spec([{"name": "ref_f1"}], speaker_judge="exact")
    ha, hb, hc, hd = (Composition.from_spec(x).hash() for x in (a, b, c, d))
    assert ha != hb and hc == hd


def test_custom_judge_prompt_reaches_the_model():
    seen = []
    spec = _spec([{"name": "ref_f1"}], speaker_judge="llm", judge_prompt="Pairs:\n{pairs}\nYes/No?")
    comp = Composition.from_spec(spec).bind(generate=lambda ps: (seen.extend(ps), ["Yes"])[1])
    out = comp.score('the tall guy: "hello there"', (Turn("the man", "hello there"),), step=0)
    assert out.reward == 1.0 and seen == ['Pairs:\n"the tall guy" | "the man"\nYes/No?']
