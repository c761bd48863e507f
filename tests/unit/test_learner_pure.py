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


def test_logits_start_at_the_first_position_any_row_scores():
    """The learner asks the model for logits only from the first response position of the batch
    (rows with longer prompts start later; a row without a response counts for nothing); the
    positions before it are zeros in the ``[B, L-1, V]`` result."""
    import torch

    from diadem_ray import packing
    from diadem_ray.actors.learner import Learner
    from diadem_ray.actors.learner_forward import _first_response_position

    packed = packing.pack_sequences([[1, 2, 3, 4], [5, 6], [7, 8, 9]], [[10, 11], [12, 13, 14], []])
    assert _first_response_position(packed["response_mask"]) == 1  # row 1: prompt of 2 -> predicts at position 1
    assert _first_response_position(torch.zeros(2, 5)) == 0

    seen = {}

    class Model:
        def __call__(self, input_ids, attention_mask, use_cache, logits_to_keep):
            seen["keep"] = logits_to_keep
            return type("Out", (), {"logits": torch.ones(input_ids.shape[0], logits_to_keep, 7)})()

    learner = Learner.__new__(Learner)
    learner.device, learner.response_logits = torch.device("cpu"), True
    out = learner._logits(Model(), packed)
    width = packed["input_ids"].shape[1]
    assert seen["keep"] == width - 1 and out.shape == (3, width - 1, 7)
    assert out[:, :1].abs().sum() == 0 and bool((out[:, 1:] == 1).all())
    learner.response_logits = False
    assert learner._logits(Model(), packed).shape == (3, width - 1, 7) and seen["keep"] == width
