"""bench/speaker_cues.py: exact-speaker hits per hair cue (the issue-#7 analysis tables)."""

import speaker_cues as S


def test_hits_are_counted_per_cue_and_each_caption_line_is_used_once(tmp_path):
    (tmp_path / "v1.abc.txt").write_text(
        "People: red/long, blue/grey-short\n[0.1-1.0] pitch 200 mouth red/long | Hi.\n"
    )
    hair = S.hair_by_colour(tmp_path)
    assert hair == {"v1": {"red": "long", "blue": "grey-short"}}
    annotations = {
        "v1": [
            "the woman in red: Hi there.",
            "the old man in blue: Hi there.",
            "a man off screen: Bye!",
            "the man in green: Nobody has green.",
        ]
    }
    pred = 'the woman in red: "hi there"\nthe man in blue: "Hi there."\na man off screen: "Bye"'
    hits, totals = S.cue_hits(annotations, {"v1": pred}, hair)
    assert totals == {"long": 1, "short": 0, "grey-short": 1, "grey-long": 0, "off": 1}  # green has no cue: skipped
    assert hits == {"long": 1, "short": 0, "grey-short": 0, "grey-long": 0, "off": 1}
    twice = {"v1": ["the woman in red: Hi there.", "the woman in red: Hi there."]}
    assert S.cue_hits(twice, {"v1": pred}, hair)[0]["long"] == 1  # one caption line answers one reference line


def test_confusion_names_what_was_written_for_each_cue(tmp_path):
    hair = {"v1": {"red": "long", "blue": "short"}}
    annotations = {
        "v1": [
            "the woman in red: Hi there.",
            "the man in blue: Go now.",
            "a woman off screen: Bye!",
            "the man in blue: Never said.",
        ]
    }
    pred = 'the old man in red: "Hi there."\nthe woman in green: "Go now"\na woman off screen: "Bye"'
    confusion = S.cue_confusion(annotations, {"v1": pred}, hair)
    assert confusion["long"] == {"the old man": 1}
    assert confusion["short"] == {"the woman [other colour]": 1, "<words missing>": 1}
    assert confusion["off"] == {"a woman off screen": 1}
    assert not confusion["grey-short"] and not confusion["grey-long"]
