import json
from pathlib import Path

import pytest

from diadem_ray.rewards.extract import extract_llm, extract_prose, extract_structured, make_extractor
from diadem_ray.rewards.speakers import normalize_speaker

DATA = Path(__file__).parent / "data"


def test_structured_timed_and_plain_forms():
    cap = (
        "Intro narration without dialogue.\n"
        '0:01 - 0:04, the man in scrubs said: "I don\'t know anyone."\n'
        '1:02:03 - 1:02:05.5, Anna says: "Hi."\n'
        'The woman: "Three times."\n'
        "None: nothing\n"
    )
    turns = extract_structured(cap)
    assert [(t.speaker, t.text) for t in turns] == [
        ("the man in scrubs", "I don't know anyone."),
        ("Anna", "Hi."),
        ("The woman", "Three times."),
    ]
    assert (turns[0].start_s, turns[0].end_s) == (1.0, 4.0)
    assert (turns[1].start_s, turns[1].end_s) == (3723.0, 3725.5)
    assert turns[2].start_s is None


def test_structured_ignores_unquoted_colon_lines():
    assert extract_structured("Note: the scene is dark\nTime: 10:30") == []


def _accuracy(path):
    total = correct = 0
    for line in path.read_text().splitlines():
        case = json.loads(line)
        got = extract_prose(case["caption"])
        for i, (speaker, text) in enumerate(case["turns"]):
            total += 1
            correct += (
                i < len(got) and got[i].text == text and normalize_speaker(got[i].speaker) == normalize_speaker(speaker)
            )
    return correct, total


@pytest.mark.parametrize("name,minimum", [("prose_captions.jsonl", 0.95), ("prose_captions_heldout.jsonl", 0.9)])
def test_prose_accuracy_on_hand_labelled_captions(name, minimum):
    correct, total = _accuracy(DATA / name)
    assert total >= 20
    assert correct / total >= minimum, f"{correct}/{total}"


def test_labelled_set_size():
    assert (
        sum(1 for _ in (DATA / "prose_captions.jsonl").open())
        + sum(1 for _ in (DATA / "prose_captions_heldout.jsonl").open())
        >= 30
    )


def test_prose_pronoun_and_trailing_attribution():
    turns = extract_prose('The old man leans forward. "Call me," he says. The girl shrugs. "Fine," she answers.')
    assert [t.speaker for t in turns] == ["The old man", "The girl"]


def test_llm_extractor_parses_model_answer():
    prompts = []

    def generate(ps):
        prompts.append(ps[0])
        return ['The man: "Really?"\nThe woman: "Yes."']

    turns = extract_llm("some prose", generate)
    assert [(t.speaker, t.text) for t in turns] == [("The man", "Really?"), ("The woman", "Yes.")]
    assert "some prose" in prompts[0]
    assert extract_llm("x", lambda ps: ["None."]) == []


def test_make_extractor_errors():
    with pytest.raises(ValueError, match="needs a generate"):
        make_extractor("llm")
    with pytest.raises(ValueError, match="unknown extractor"):
        make_extractor("regex")
