"""Learner pieces that need no process group."""

import pytest

from diadem_ray.actors.learner import _lr_lambda


def test_lr_schedules():
    const = _lr_lambda("constant", 0, 100)
    assert [const(s) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    warm = _lr_lambda("linear", 10, 110)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(10) == pytest.approx(1.0) and warm(60) == pytest.approx(0.5) and warm(110) == pytest.approx(0.0)
    cos = _lr_lambda("cosine", 0, 100)
    assert cos(0) == pytest.approx(1.0) and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        _lr_lambda("step", 0, 10)(5)


def test_amend_checkpoint_only_touches_a_checkpoint_of_the_current_weights(tmp_path):
    """The driver records a finished stage in the latest checkpoint; a checkpoint the learners have
    stepped past (or none at all) is left as it is."""
    import json

    from diadem_ray.cluster.learner_group import LearnerGroup

    group = LearnerGroup.__new__(LearnerGroup)  # no actors: amending is the driver's file work
    group.step = 7
    assert not group.amend_checkpoint(str(tmp_path), {"driver": {"done_stages": ["sft"]}})  # nothing saved yet
    (tmp_path / "step_7").mkdir()
    meta = tmp_path / "step_7" / "meta.json"
    meta.write_text(json.dumps({"driver": {"done_stages": []}, "learner_step": 7}))
    (tmp_path / "latest").write_text("step_7")
    assert group.amend_checkpoint(str(tmp_path), {"driver": {"done_stages": ["sft"]}})
    assert json.loads(meta.read_text()) == {"driver": {"done_stages": ["sft"]}, "learner_step": 7}
    group.step = 8  # a step since: the checkpoint no longer holds these weights
    assert not group.amend_checkpoint(str(tmp_path), {"driver": {"done_stages": ["sft", "profile"]}})
    assert json.loads(meta.read_text())["driver"]["done_stages"] == ["sft"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_7"]  # no temporary file left
