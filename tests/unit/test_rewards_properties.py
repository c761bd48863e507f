"""Properties of the scorer over arbitrary input (hypothesis)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diadem_ray.config import RewardComponentConfig, RewardSpec
from diadem_ray.rewards.compose import Composition
from diadem_ray.rewards.extract import extract_prose, extract_structured
from diadem_ray.rewards.metrics import score_dialogue
from diadem_ray.types import Turn

speakers = st.sampled_from(["A", "B", "the man", "the woman", "男人"])
content = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
lines = st.lists(st.builds(lambda s, c: f"{s}: {c}", speakers, content), max_size=10)
junk = st.lists(st.text(max_size=60), max_size=10)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(lines, lines)
def test_scores_stay_in_unit_interval(dt, gt):
    s = score_dialogue(dt, gt)
    for v in (s.asr_recall, s.asr_precision, s.ref_recall, s.ref_precision, s.asr_f1, s.ref_f1):
        assert 0.0 <= v <= 1.0 + 1e-12
    assert s.ref_hits <= len(s.groups)


@SETTINGS
@given(lines)
def test_identical_dialogues_score_one(gt):
    s = score_dialogue(gt, gt)
    assert abs(s.asr_recall - 1.0) < 1e-9 and abs(s.asr_precision - 1.0) < 1e-9
    assert s.ref_recall == 1.0 and s.ref_precision == 1.0


@SETTINGS
@given(junk, junk)
def test_no_input_crashes_the_scorer(dt, gt):
    score_dialogue(dt, gt)


@SETTINGS
@given(st.text(max_size=400))
def test_extractors_never_crash(caption):
    for turn in extract_structured(caption) + extract_prose(caption):
        assert ":" not in turn.speaker


@SETTINGS
@given(st.text(max_size=300), lines)
def test_composed_reward_is_bounded(caption, gt):
    spec = RewardSpec(
        name="p",
        components=[
            RewardComponentConfig("asr_f1", 0.5),
            RewardComponentConfig("ref_f1", 0.5),
            RewardComponentConfig("repetition_penalty", 0.1),
        ],
    )
    ref = tuple(Turn(*l.split(": ", 1)) for l in gt)
    r = Composition.from_spec(spec).score(caption, ref, step=0).reward
    assert -0.1 - 1e-9 <= r <= 1.0 + 1e-9
