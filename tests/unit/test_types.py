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


def test_grpo_batch_checks_its_columns_and_splits_by_sequence():
    import pickle

    from diadem_ray.types import GrpoBatch

    b = GrpoBatch.of(
        [[1, 2], [1, 2], [3], [3]],
        [[5, 6, 7], [], [8], [9, 9]],
        [0.5, -0.5, [1.0], [0.0, 2.0]],
        rollout_logprobs=[[-1.0, -2.0, -3.0], [], [-0.5], [-0.1, -0.2]],
    )
    assert len(b) == 4 and b.num_tokens == 6 and b.max_response_len == 3 and b.media == ()
    assert b.advantages[3] == (0.0, 2.0) and isinstance(b.prompt_token_ids[0], tuple)
    half = b.part(slice(2, 4))
    assert (
        half.prompt_token_ids == ((3,), (3,)) and half.rollout_logprobs == ((-0.5,), (-0.1, -0.2)) and half.media == ()
    )
    assert pickle.loads(pickle.dumps(half)) == half
    with pytest.raises(ValueError, match="4 prompts but 3 advantages"):
        GrpoBatch.of([[1]] * 4, [[2]] * 4, [0.0] * 3)
    with pytest.raises(ValueError, match="2 prompts but 1 media"):
        GrpoBatch.of([[1], [1]], [[2], [2]], [0.0, 0.0], media=[None])
