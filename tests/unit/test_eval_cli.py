"""`diadem-ray eval`: tables, per-sample lines, and bad input that loses nothing else."""

import json

from diadem_ray.cli import main

ANN = {
    "speaker_num": 2,
    "people_num_in_screen": 2,
    "is_single_shot": 1,
    "has_off_screen_speaker": 0,
    "has_same_sex_speakers": 0,
    "only_opposite_sex_speakers": 1,
}


def ann(vid, lines, **kw):
    return {"video_id": vid, "gt_dialogues": lines, **ANN, **kw}


def write(path, rows):
    with open(path, "wb") as fh:
        for r in rows:
            fh.write(r if isinstance(r, bytes) else (json.dumps(r, ensure_ascii=False) + "\n").encode())
    return str(path)


def run(tmp_path, anns, preds, *extra):
    a = write(tmp_path / "a.jsonl", anns)
    p = write(tmp_path / "p.jsonl", preds)
    out = tmp_path / "per.jsonl"
    rc = main(["eval", "--annotations", a, "--predictions", p, "--per-sample", str(out), *extra])
    rows = {r["video_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    return rc, rows


def test_good_run_prints_tables_and_per_sample_fields(tmp_path, capsys):
    gt = ["Anna: Where were you?", "Ben: At the office."]
    rc, rows = run(
        tmp_path,
        [ann("v1", gt), ann("v2", gt, is_single_shot=0)],
        [
            {"video_id": "v1", "pred": 'Anna: "Where were you?"\nBen: "At the office."'},
            {"video_id": "v2", "pred_dialogues": ["Anna: where were you", "Ben: at home"]},
        ],
    )
    out = capsys.readouterr().out
    assert rc == 0
    for title in ("Speaker Num", "People Num", "Off-screen Spk", "Have Same Sex Spk", "Only Opposite Sex Spk"):
        assert f"=== {title} Table ===" in out
    assert "REF / ASR (F1 x100):" in out
    r = rows["v1"]
    assert set(r) == {
        "video_id",
        "clean_dt",
        "clean_gt",
        "groups",
        "dt_num",
        "gt_num",
        "asr_recall",
        "asr_precision",
        "ref_recall",
        "ref_precision",
        "error",
    }
    assert r["error"] is None and r["asr_recall"] == 1.0 and r["groups"][0]["dt_indices"] == [0]
    assert rows["v2"]["ref_recall"] == 0.5


def test_bad_input_each_gets_a_reason_and_nothing_else_is_lost(tmp_path, capsys):
    gt = ["Anna: Where were you?", "Ben: At the office."]
    anns = [
        ann("ok", gt),
        ann("empty", gt),
        ann("nodialogue", gt),
        ann("huge", gt),
        ann("junk", gt),
        ann("missing_pred", gt),
        ann("dup", gt),
        ann("dup", ["X: other"]),
        {"video_id": 7, "gt_dialogues": gt, **ANN},  # mistyped id
        {"video_id": "nofields", "gt_dialogues": gt},
        b"{not json\n",
        b"\xff\xfe binary \x00\n",
    ]
    preds = [
        {"video_id": "ok", "pred": 'Anna: "Where were you?"\nBen: "At the office."'},
        {"video_id": "empty", "pred": ""},
        {"video_id": "nodialogue", "pred": "A quiet room with a clock ticking."},
        {"video_id": "huge", "pred": "x" * (1 << 20)},
        {"video_id": "junk", "pred": "\x00\x01\ufffd\u202e" * 100},
        {"video_id": "dup", "pred": 'Anna: "Where were you?"'},
        {"video_id": "dup", "pred": "second"},
        {"video_id": "orphan", "pred": "A: hi"},
        {"video_id": "bothfields", "pred": "a", "pred_dialogues": []},
        {"video_id": "wrongtype", "pred_dialogues": "Anna: hi"},
        b"\xc3\x28 invalid utf8\n",
    ]
    rc, rows = run(tmp_path, anns, preds)
    out = capsys.readouterr().out
    assert rc == 1  # input problems make the exit status non-zero, after everything is reported
    assert rows["ok"]["asr_recall"] == 1.0 and rows["ok"]["error"] is None
    assert (
        rows["empty"]["error"] is None and rows["empty"]["asr_recall"] == 0.0 and rows["empty"]["asr_precision"] == 1.0
    )
    assert rows["nodialogue"]["error"] is None and rows["nodialogue"]["dt_num"] == 0
    assert "1,048,576 characters" in rows["huge"]["error"]
    assert rows["junk"]["error"] is None
    assert rows["missing_pred"]["error"] == "no prediction for this video_id"
    assert rows["dup"]["asr_recall"] == 0.5  # first annotation and first prediction kept
    for needle in (
        "a.jsonl:8: duplicate video_id 'dup'",
        "a.jsonl:9: field 'video_id' should be str",
        "a.jsonl:10: missing field 'speaker_num'",
        "a.jsonl:11: not valid JSON",
        "a.jsonl:12: not valid UTF-8",
        "p.jsonl:7: duplicate video_id 'dup'",
        "'orphan' has no annotation",
        "p.jsonl:9: give exactly one of 'pred'",
        "p.jsonl:10: 'pred_dialogues' must be a list",
        "p.jsonl:11: not valid UTF-8",
    ):
        assert needle in out, needle
    assert "Skipped clips: 2" in out  # huge + missing_pred
    assert len(rows) == 7


def test_missing_files_and_llm_without_model(tmp_path, capsys):
    assert main(["eval", "--annotations", str(tmp_path / "nope.jsonl"), "--predictions", "x"]) == 1
    assert "no such file" in capsys.readouterr().err
    a = write(tmp_path / "a.jsonl", [ann("v", ["A: hi"])])
    assert main(["eval", "--annotations", a, "--predictions", a, "--speaker-judge", "llm"]) == 1
    assert "--judge-model" in capsys.readouterr().err


def test_prose_extractor_and_embedding_judge_through_cli(tmp_path, capsys):
    gt = ["the man in the black suit: Sit down.", "the young woman: I'd rather stand."]
    rc, rows = run(
        tmp_path,
        [ann("v", gt)],
        [
            {
                "video_id": "v",
                "pred": '"Sit down," says the tall man in a black suit. The young woman replies, "I\'d rather stand."',
            }
        ],
        "--extractor",
        "prose",
        "--speaker-judge",
        "embedding",
        "--judge-threshold",
        "0.6",
    )
    assert rc == 0 and rows["v"]["asr_recall"] == 1.0 and rows["v"]["ref_recall"] == 1.0
