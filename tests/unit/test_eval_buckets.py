"""Per-bucket scores of an evaluation that ran before the held-out clips were profiled."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from diadem_ray.config import TrainConfig
from diadem_ray.driver.evaluation import Evaluator
from diadem_ray.driver.state import DriverState

pytestmark = pytest.mark.unit

_FLAGS = {
    "is_single_shot": 1,
    "has_off_screen_speaker": 0,
    "has_same_sex_speakers": 0,
    "only_opposite_sex_speakers": 1,
    "people_num_in_screen": 2,
}
ANNOTATIONS = [
    {"video_id": "a", "gt_dialogues": ["the man: hello there", "the woman: good morning"], "speaker_num": 2, **_FLAGS},
    {"video_id": "b", "gt_dialogues": ["the boy: where is the map"], "speaker_num": 1, **_FLAGS},
]
# clip a: both words and speakers right; clip b: the words right, the speaker wrong
PREDS = [
    {"video_id": "a", "pred": 'the man: "hello there"\nthe woman: "good morning"'},
    {"video_id": "b", "pred": 'the girl: "where is the map"'},
]


class _Tracker:
    def __init__(self) -> None:
        self.logged: list = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, dict(metrics)))


def _evaluator(tmp_path, version: int) -> Evaluator:
    cfg = TrainConfig()
    cfg.stages.profile.bucket_names = ["hard", "medium", "easy"]
    res = SimpleNamespace(rollouts=SimpleNamespace(version=version), tracker=_Tracker())
    data = SimpleNamespace(annotations=ANNOTATIONS)
    return Evaluator(cfg, res, data, out=tmp_path, generate=lambda *a, **k: [])  # type: ignore[arg-type]


def _state(tmp_path) -> DriverState:
    st = DriverState(global_step=40)
    for label, version in (("untrained", 0), ("sft", 1)):
        st.evals[label] = {"ref_f1": 50.0, "asr_f1": 100.0, "clips": 2.0, "policy_version": version}
        d = tmp_path / "eval" / label
        d.mkdir(parents=True)
        (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PREDS))
    return st


def test_evaluations_before_the_held_out_profile_get_their_bucket_scores_from_saved_captions(tmp_path):
    ev, st = _evaluator(tmp_path, version=1), _state(tmp_path)
    assert ev.fill_buckets(st) == []  # no held-out profile yet: nothing to break down
    ev.held_out_buckets = {"a": "easy", "b": "hard"}
    assert ev.fill_buckets(st) == ["untrained", "sft"]
    sft = st.evals["sft"]
    assert sft["easy/ref_f1"] == pytest.approx(100.0) and sft["easy/clips"] == 1.0
    assert sft["hard/ref_f1"] == pytest.approx(0.0) and sft["hard/asr_f1"] == pytest.approx(100.0)
    assert "medium/ref_f1" not in sft  # no held-out clip in that bucket
    logged = dict(ev.res.tracker.logged)  # type: ignore[attr-defined]
    assert list(logged) == [40]
    metrics = ev.res.tracker.logged  # type: ignore[attr-defined]
    untrained_metrics, sft_metrics = metrics[0][1], metrics[1][1]
    # the bare eval/<bucket>/ names (compare's final per-bucket score) only for the current policy
    assert "eval/untrained/hard/ref_f1" in untrained_metrics and "eval/hard/ref_f1" not in untrained_metrics
    assert sft_metrics["eval/sft/easy/ref_f1"] == pytest.approx(100.0)
    assert sft_metrics["eval/hard/ref_f1"] == pytest.approx(0.0)
    assert ev.fill_buckets(st) == []  # filled once


def test_an_evaluation_without_saved_captions_is_left_as_it_is(tmp_path):
    ev, st = _evaluator(tmp_path, version=1), _state(tmp_path)
    (tmp_path / "eval" / "sft" / "predictions.jsonl").unlink()
    ev.held_out_buckets = {"a": "easy", "b": "hard"}
    assert ev.fill_buckets(st) == ["untrained"]
    assert "easy/ref_f1" not in st.evals["sft"]


def test_an_evaluation_that_reused_scores_takes_the_buckets_of_the_same_policy(tmp_path):
    ev, st = _evaluator(tmp_path, version=1), _state(tmp_path)
    st.evals["final"] = dict(st.evals["sft"])  # "final" right after "sft": scores reused, no captions saved
    ev.held_out_buckets = {"a": "easy", "b": "hard"}
    assert ev.fill_buckets(st) == ["untrained", "sft", "final"]
    assert st.evals["final"]["easy/ref_f1"] == st.evals["sft"]["easy/ref_f1"] == pytest.approx(100.0)
