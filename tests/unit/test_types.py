import dataclasses

import pytest

from diadem_ray.types import Clip, MediaRef, Prompt, Turn


def test_turn_line_and_frozen():
    t = Turn("the man", "Really?")
    assert t.line() == "the man: Really?"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.text = "x"  # type: ignore[misc]


def test_clip_gt_dialogues():
    c = Clip(
        "c1",
        "a.mp4",
        3.0,
        "en",
        "Describe.",
        ("a man",),
        (Turn("a man", "Hi."), Turn("a woman", "Hello.")),
        2,
        1,
        True,
        True,
        False,
        True,
    )
    assert c.gt_dialogues() == ["a man: Hi.", "a woman: Hello."]


def test_prompt_travels_whole():
    import pickle

    p = Prompt("c1#sft", (1, 2, 3), "c1", MediaRef("ref", 1024, "c1"))
    back = pickle.loads(pickle.dumps(p))
    assert back == p and back.media.clip_id == "c1" and back.multi_modal_data is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.clip_id = "c2"  # type: ignore[misc]
