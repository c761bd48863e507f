"""Difficulty profiling (edges and quantiles, zero-variance marks) and `diadem-ray ingest` of
DiaDemBench and DVD-Bench annotations: bad rows named and skipped, good rows kept."""

import json

import pytest

from diadem_ray.cli import main
from diadem_ray.data.ingest import ingest, mmss
from diadem_ray.data.profile import profile_clips, summary, write_marks
from diadem_ray.data.shards import list_shards, read_shard

NAMES = ["hard", "medium", "easy"]


def test_pass_rate_edges_and_zero_variance():
    rewards = {"a": [0.0, 0.0], "b": [0.7, 0.2], "c": [0.9, 0.8], "d": [0.6, 0.65]}
    got = {
        p.clip_id: p for p in profile_clips(rewards, pass_reward=0.6, bucket_names=NAMES, pass_rate_edges=[0.34, 0.67])
    }
    assert {c: p.bucket for c, p in got.items()} == {"a": "hard", "b": "medium", "c": "easy", "d": "easy"}
    assert got["b"].pass_rate == 0.5 and got["b"].mean_reward == pytest.approx(0.45)
    assert got["a"].zero_variance and not got["b"].zero_variance
    table, metrics = summary(list(got.values()), NAMES)
    assert metrics["profile/clips_easy"] == 2 and metrics["profile/zero_variance_hard"] == 1
    assert table.splitlines()[1].split()[:2] == ["hard", "1"]


def test_quantiles_split_by_mean_reward_hardest_first(tmp_path):
    rewards = {f"c{i}": [i / 10, i / 10] for i in range(9)}
    got = profile_clips(rewards, pass_reward=0.5, bucket_names=NAMES, quantiles=True)
    assert [p.bucket for p in got] == ["hard"] * 3 + ["medium"] * 3 + ["easy"] * 3
    lines = write_marks(got, tmp_path).read_text().splitlines()
    assert len(lines) == 9 and json.loads(lines[0])["zero_variance"] is True
    with pytest.raises(ValueError, match="3 bucket names need 2 pass_rate_edges"):
        profile_clips(rewards, pass_reward=0.5, bucket_names=NAMES, pass_rate_edges=[0.5])
    with pytest.raises(ValueError, match="clip x: no scored samples"):
        profile_clips({"x": []}, pass_reward=0.5, bucket_names=NAMES, pass_rate_edges=[0.3, 0.6])


def test_mmss():
    assert mmss("01:05") == 65.0 and mmss("1:02:03") == 3723.0 and mmss(4.5) == 4.5 and mmss("7.5") == 7.5
    for bad in ("1:xx", "-1:00", "1:2:3:4"):
        with pytest.raises(ValueError):
            mmss(bad)


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_ingest_diadembench_rows(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v1.mp4", "v2.mkv"):
        (videos / name).write_bytes(b"x")
    ann = _write(
        tmp_path / "ann.jsonl",
        [
            {
                "video_id": "v1",
                "gt_dialogues": ["the man in red: Hello there.", "the woman: Hi!"],
                "speaker_num": 2,
                "people_num_in_screen": 2,
                "is_single_shot": 1,
                "has_off_screen_speaker": 0,
                "has_same_sex_speakers": 0,
                "only_opposite_sex_speakers": 1,
            },
            {"video_id": "v2", "gt_dialogues": ["A: x"], "speaker_num": 1, "people_num_in_screen": 1},
            {"video_id": "v3", "gt_dialogues": ["A: x"]},
            {"video_id": "v1", "gt_dialogues": ["A: x"]},
            {"video_id": "v4", "gt_dialogues": ["no speaker here"], "video": "v1.mp4"},
            {"video_id": "v5", "gt_dialogues": ["A: x"], "video": "v1.mp4", "is_single_shot": "maybe"},
            "[1, 2]",
        ],
    )
    rep = ingest(ann, str(videos), fmt="diadembench", duration_of=lambda uri: 12.5)
    assert [c.clip_id for c in rep.clips] == ["v1", "v2"]
    v1 = rep.clips[0]
    assert v1.video_uri == str(videos / "v1.mp4") and v1.duration_s == 12.5 and v1.is_single_shot
    assert [t.line() for t in v1.dialogue] == ["the man in red: Hello there.", "the woman: Hi!"]
    assert rep.clips[1].video_uri.endswith("v2.mkv")
    text = "\n".join(rep.problems)
    assert f"{ann}:3: no video v3" in text and f"{ann}:4: clip 'v1': duplicate of line 1" in text
    assert f"{ann}:5: gt_dialogues[0] 'no speaker here' is not 'speaker: utterance'" in text
    assert f"{ann}:6: is_single_shot must be 0/1" in text and f"{ann}:7: expected a JSON object, got list" in text


def test_ingest_dvdbench_times_and_derived_attributes(tmp_path):
    ann = _write(
        tmp_path / "dvd.jsonl",
        [
            {
                "video": "clips/a.mp4",
                "character": ["a tall man in a suit", "a woman with glasses"],
                "dialogue": [
                    {"speaker": "a tall man in a suit", "content": "Where were you?", "time": ["00:01", "00:03"]},
                    {"speaker": "a woman with glasses", "content": "Out.", "time": ["00:02", "00:04"]},
                ],
            },
            {
                "video": "s3://bucket/b.mp4",
                "character": [],
                "dialogue": [{"speaker": "the man", "content": "Hi", "time": ["00:01", "Unknown"]}],
            },
            {
                "video": "c.mp4",
                "character": [],
                "dialogue": [{"speaker": "the man", "content": "Hi", "time": ["00:05", "00:02"]}],
            },
            {
                "video": "d.mp4",
                "character": [],
                "dialogue": [{"speaker": "the man", "content": "Hi", "time": ["00:01", "00:30"]}],
            },
        ],
    )
    rep = ingest(ann, str(tmp_path), fmt="dvdbench", duration_of=lambda uri: 10.0)
    assert [c.clip_id for c in rep.clips] == ["a", "b"]
    a, b = rep.clips
    assert a.video_uri == str(tmp_path / "clips" / "a.mp4") and b.video_uri == "s3://bucket/b.mp4"
    assert (a.dialogue[0].start_s, a.dialogue[0].end_s) == (1.0, 3.0)
    assert a.speaker_num == 0  # the two turns overlap
    assert a.only_opposite_sex_speakers and not a.has_same_sex_speakers and a.people_on_screen == 2
    assert b.dialogue[0].start_s is None  # "Unknown" time kept as unknown
    text = "\n".join(rep.problems)
    assert f"{ann}:3: dialogue[0] time ['00:05', '00:02'] ends before it starts" in text
    assert f"{ann}:4: clip 'd': dialogue[0] span [1.0, 30.0] is not inside [0, 10.0]" in text


def test_ingest_cli_writes_shards_and_annotations_and_reports(tmp_path, capsys):
    from diadem_ray.data.synth import synthesize

    clips = synthesize(tmp_path / "syn", 2, seed=4, workers=1, progress=False)
    ann = tmp_path / "ann.jsonl"
    rows = (tmp_path / "syn" / "annotations.jsonl").read_text().splitlines()
    _write(ann, rows + [json.dumps({"video_id": "ghost", "gt_dialogues": ["A: x"]})])
    out = tmp_path / "ingested"
    rc = main(
        [
            "ingest",
            "--annotations",
            str(ann),
            "--videos",
            str(tmp_path / "syn" / "videos"),
            "--format",
            "diadembench",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1 and "skipped" in captured.err and "ghost" in captured.err
    got = [c for p in list_shards(str(out / "shards"), ["unassigned"]) for c in read_shard(p)]
    assert sorted(c.clip_id for c in got) == sorted(c.clip_id for c in clips)
    for c in got:
        want = next(x for x in clips if x.clip_id == c.clip_id)
        assert c.duration_s == pytest.approx(want.duration_s, abs=0.1) and c.gt_dialogues() == want.gt_dialogues()
    assert (out / "annotations.jsonl").read_text().splitlines() == rows
    assert (
        main(
            [
                "ingest",
                "--annotations",
                str(tmp_path / "missing.jsonl"),
                "--videos",
                str(tmp_path),
                "--format",
                "dvdbench",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "no such file" in capsys.readouterr().err
