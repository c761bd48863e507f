import dataclasses

import pytest

from diadem_ray.types import Clip, TrainBatch, Turn


def test_turn_line_and_frozen():
    t = Turn("the man", "Really?")
    assert t.line() == "the man: Really?"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.text = "x"  # type: ignore[misc]


def test_clip_gt_dialogues():
    c = Clip("c1", "a.mp4", 3.0, "en", "Describe.", ("a man",), (Turn("a man", "Hi."), Turn("a woman", "Hello.")),
             2, 1, True, True, False, True)
    assert c.gt_dialogues() == ["a man: Hi.", "a woman: Hello."]


def test_train_batch_rejects_ragged_fields():
    with pytest.raises(ValueError, match="one entry per sequence"):
        TrainBatch(((1,), (2,)), ((3,),), (0.0, 1.0), (), ("p0", "p1"))
    b = TrainBatch(((1,),), ((3,),), (0.5,), ((-0.1,),), ("p0",))
    assert b.policy_version == 0
