"""Parity with a straightforward implementation of docs/metrics.md (bench/reference_diadembench.py)."""

import random

import pytest
import reference_diadembench as R

from diadem_ray.rewards.benchmark import TABLES, evaluate, format_table
from diadem_ray.rewards.metrics import score_dialogue
from diadem_ray.rewards.normalize import clean_line, similarity

FIELDS = ("dt_num", "gt_num", "asr_recall", "asr_precision", "ref_recall", "ref_precision")


def assert_same(dt, gt):
    ours = score_dialogue(dt, gt)
    ref = R.score(dt, gt)
    assert [list(x) for x in ours.clean_dt] == ref["clean_dt"]
    assert [list(x) for x in ours.clean_gt] == ref["clean_gt"]
    got = [(list(g.dt_indices), list(g.gt_indices)) for g in ours.groups]
    want = [(g["dt_indices"], g["gt_indices"]) for g in ref["groups"]]
    assert got == want
    for g, w in zip(ours.groups, ref["groups"]):
        assert abs(g.score - w["score"]) <= 1e-9
    row = {
        "dt_num": ours.dt_num,
        "gt_num": ours.gt_num,
        "asr_recall": ours.asr_recall,
        "asr_precision": ours.asr_precision,
        "ref_recall": ours.ref_recall,
        "ref_precision": ours.ref_precision,
    }
    for f in FIELDS:
        assert abs(row[f] - ref[f]) <= 1e-9, f
    return ours


CASES = {
    "identical": (["A: Hello there.", "B: Fine, thanks!"], ["A: Hello there.", "B: Fine, thanks!"]),
    "dt_merge": (
        ["A: three times three different states", "A: over the past year over 100 grand total", "B: really"],
        ["A: Three times, three different states over the past year, over 100 grand total.", "B: Really?"],
    ),
    "gt_merge": (["A: where were you last night I waited"], ["A: Where were you last night?", "A: I waited."]),
    "both_merge": (
        ["A: one two three", "A: four five six seven", "B: ok"],
        ["A: one two", "A: three four five six seven", "B: ok"],
    ),
    "merge_blocked_by_speaker": (["A: where were you", "B: last night"], ["A: where were you last night"]),
    "ties": (["A: ab", "A: ab", "B: ab"], ["A: ab", "B: ab", "A: ab"]),
    "tie_skip": (["A: xx", "A: yy"], ["B: zz", "B: ww"]),
    "cjk": (["男人: 你好，今天天气很好。", "女人: 是的！"], ["男人: 你好今天天气很好", "女人: 是的"]),
    "traditional": (["男人: 謝謝你的幫助。", "女人: 不客氣"], ["男人: 谢谢你的帮助", "女人: 不客气"]),
    "japanese_keeps_kanji": (["女: ありがとう、學校へ行きます"], ["女: ありがとう学校へ行きます"]),
    "empty_dt": ([], ["A: hello"]),
    "empty_gt": (["A: hello"], []),
    "both_empty": ([], []),
    "no_colon_lines": (["just narration", "A: hello world", "another line"], ["A: hello world", "no colon"]),
    "curly_quotes_trailing": (["The man: “Really?”", "  B: 'fine'.  "], ["The man: Really", "B: fine"]),
    "empty_contents": (["A: ...", "B: !!"], ["A: ?", "B: hello"]),
    "long_speaker": (["X" * 150 + ": hi"], ["X" * 120 + ": hi"]),
    "colon_in_content": (["A: time is 10:30 now"], ["A: time is 1030 now"]),
    "window_limit": (["A: a", "A: b", "A: c", "A: d", "A: e", "A: f", "A: g"], ["A: a b c d e f g"]),
    "below_threshold": (["A: completely different words"], ["A: nothing alike at all here"]),
    "exactly_point_six": (["A: abcdefghij"], ["A: abcdefxxxx"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hand_built_parity(name):
    dt, gt = CASES[name]
    assert_same(dt, gt)


def test_hand_computed_values():
    s = assert_same(*CASES["dt_merge"])
    assert [(g.dt_indices, g.gt_indices) for g in s.groups] == [((0, 1), (0,)), ((2,), (1,))]
    assert (s.dt_num, s.gt_num) == (2, 2)
    assert s.asr_recall == pytest.approx(1.0)
    s = assert_same(*CASES["gt_merge"])
    assert s.groups[0].gt_indices == (0, 1) and s.gt_num == 1 and s.asr_recall == pytest.approx(1.0)
    s = assert_same(*CASES["merge_blocked_by_speaker"])
    # The speakers differ, so no merge; "wherewereyou" alone is 12/21 < 0.6 of the reference.
    assert s.groups == () and (s.dt_num, s.gt_num) == (2, 1)
    s = assert_same(*CASES["empty_dt"])
    assert (s.asr_recall, s.asr_precision, s.groups) == (0.0, 1.0, ())
    s = assert_same(*CASES["exactly_point_six"])
    assert s.groups == ()  # similarity 0.6 is not strictly greater than 0.6
    assert similarity("abcdefghij", "abcdefxxxx") == pytest.approx(0.6)


def test_cleaning_rules():
    assert clean_line('  "The man": “Really?”') == ("The man", "really")
    assert clean_line("A: Hello, World!") == ("A", "hello world")
    assert clean_line("no colon") is None
    assert clean_line("A: 謝謝") == ("A", "谢谢")
    assert clean_line("A: ありがとう謝謝") == ("A", "ありがとう謝謝")  # kana present: no t2s
    assert clean_line("A:") == ("A", "")
    assert clean_line("S" * 120 + ": " + "x" * 1200) == ("S" * 100, "x" * 1000)


def _random_dialogue(rng, n):
    words = "hi hello there yes no maybe we go now later why because I you they 你好 謝謝 再見 是的 ok".split()
    return [
        f"{rng.choice('ABC')}: "
        + " ".join(rng.choice(words) for _ in range(rng.randint(0, 7)))
        + rng.choice(["", ".", "?", "!"])
        for _ in range(n)
    ]


def _perturb(rng, gt):
    dt = []
    for line in gt:
        r = rng.random()
        spk, content = line.split(":", 1)
        if r < 0.12:
            continue
        if r < 0.27:
            ws = content.split()
            dt += [f"{spk}: {' '.join(ws[: len(ws) // 2])}", f"{spk}: {' '.join(ws[len(ws) // 2 :])}"]
        elif r < 0.37 and dt:
            dt[-1] += " " + content
        elif r < 0.47:
            dt.append(_random_dialogue(rng, 1)[0])
        else:
            dt.append(line)
    return dt


def test_random_parity_with_merges_and_ties():
    rng = random.Random(1234)
    for _ in range(400):
        gt = _random_dialogue(rng, rng.randint(0, 12))
        assert_same(_perturb(rng, gt), gt)


def test_benchmark_table_matches_reference_formatting():
    rng = random.Random(7)
    anns, preds, ref_rows = [], [], {}
    for i in range(40):
        gt = _random_dialogue(rng, rng.randint(1, 8))
        dt = _perturb(rng, gt)
        a = {
            "video_id": f"v{i}",
            "gt_dialogues": gt,
            "speaker_num": i % 4,
            "people_num_in_screen": i % 5,
            "is_single_shot": i % 2,
            "has_off_screen_speaker": i % 3 == 0,
            "has_same_sex_speakers": int(i % 5 == 1),
            "only_opposite_sex_speakers": 0,
        }
        anns.append(a)
        preds.append({"video_id": f"v{i}", "pred_dialogues": dt})
        ref_rows[f"v{i}"] = (a, R.score(dt, gt))
    res = evaluate(anns, preds)
    # Expected cells straight from the reference per-sample rows.
    overall = R.f1_cell([r for _, r in ref_rows.values()])
    spk = {0: "Overlap", 1: "N=1", 2: "N=2"}
    for title, category, buckets in TABLES:
        table = format_table(res, title, category, buckets)
        lines = table.split("\n")
        assert lines[1] == f"=== {title} Table ==="
        assert len(lines[2]) == len(lines[5]) and set(lines[2]) == {"-"}
        assert lines[7].startswith(f"| {overall:^18} |")
        for shot_flag, shot_cells in (
            (1, lines[7].split("|")[2 : 2 + len(buckets)]),
            (0, lines[7].split("|")[2 + len(buckets) : 2 + 2 * len(buckets)]),
        ):
            for b, cell in zip(buckets, shot_cells):

                def key(a, category=category):
                    if category == "speaker_num":
                        return spk.get(a["speaker_num"], "N>=3")
                    if category == "people_num":
                        return {1: "N=1", 2: "N=2"}.get(a["people_num_in_screen"], "N>=3")
                    return "Yes" if a[category] == 1 else "No"

                rows = [
                    r for a, r in ref_rows.values() if a["is_single_shot"] == shot_flag and (b == "All" or key(a) == b)
                ]
                assert cell == f" {R.f1_cell(rows):^13} "
