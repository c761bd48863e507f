"""The pure parts of `diadem-ray annotate`: voice activity and word assignment, dialogue splits and
turn merging, constrained speaker clustering, shot cuts, video listing, and the truth comparison."""

from __future__ import annotations

import numpy as np
import pytest

from diadem_ray.annotate.dialogues import merge_turns, split_dialogues
from diadem_ray.annotate.diarize import cluster_constrained, cluster_distances, pair_distances
from diadem_ray.annotate.evaluate import Found, Truth, score
from diadem_ray.annotate.job import clip_ids, list_videos
from diadem_ray.annotate.shots import shot_cuts
from diadem_ray.annotate.speech import SpeechSegment, Word, segments_of
from diadem_ray.models.tiny_av_frontend import speech_segments

RATE = 16000


def _seg(a: float, b: float, text: str = "hi", p: float = 0.9) -> SpeechSegment:
    return SpeechSegment(a, b, (Word(a, b, text, p),))


def test_voiced_spans_close_short_pauses_and_keep_long_ones():
    t = np.arange(RATE * 4) / RATE
    tone = np.sin(2 * np.pi * 140 * t).astype(np.float32)
    on = ((t > 0.5) & (t < 1.0)) | ((t > 1.2) & (t < 1.6)) | ((t > 2.5) & (t < 3.0))
    spans = speech_segments(np.where(on, tone, 0.0).astype(np.float32), RATE, min_gap_s=0.3)
    assert [(round(a, 1), round(b, 1)) for a, b in spans] == [(0.5, 1.6), (2.5, 3.0)]
    assert speech_segments(np.zeros(RATE, np.float32), RATE, min_gap_s=0.3) == []
    assert speech_segments(np.zeros(10, np.float32), RATE, min_gap_s=0.3) == []


def test_words_go_to_the_span_holding_their_midpoint_and_empty_spans_drop():
    spans = [(0.0, 1.0), (2.0, 3.0), (5.0, 6.0)]
    words = [Word(0.1, 0.4, "a", 0.9), Word(0.9, 1.3, "b", 0.9), Word(1.8, 2.1, "c", 0.9), Word(3.2, 3.4, "d", 0.5)]
    segs = segments_of(spans, words)
    assert [(s.start_s, s.text) for s in segs] == [(0.0, "a b"), (2.0, "c d")]  # (5, 6) heard no word


def test_dialogues_split_at_long_silences_and_at_cuts_in_shorter_ones():
    segs = [_seg(0, 1), _seg(1.5, 2), _seg(4.0, 5), _seg(9, 10)]
    assert [len(d) for d in split_dialogues(segs, [], gap_s=3.0, cut_gap_s=1.5)] == [3, 1]
    assert [len(d) for d in split_dialogues(segs, [3.0], gap_s=3.0, cut_gap_s=1.5)] == [2, 1, 1]
    assert [len(d) for d in split_dialogues(segs, [1.2], gap_s=3.0, cut_gap_s=1.5)] == [3, 1]  # pause 0.5 s < 1.5
    assert split_dialogues([], [], gap_s=3.0) == []


def test_turns_merge_one_speakers_close_segments_only():
    segs = [_seg(0, 1, "one"), _seg(1.4, 2, "two"), _seg(2.5, 3, "three"), _seg(5, 6, "four")]
    turns = merge_turns(segs, [0, 0, 1, 1], merge_gap_s=1.0)
    assert [(t.speaker, t.start_s, t.end_s, t.text) for t in turns] == [
        (0, 0, 2, "one two"),
        (1, 2.5, 3, "three"),
        (1, 5, 6, "four"),
    ]


def _unit(rows):
    e = np.asarray(rows, np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_voice_clustering_finds_the_number_of_speakers():
    emb = _unit([[1, 0, 0], [0.98, 0.2, 0], [0, 1, 0], [0.1, 0.99, 0], [0, 0, 1]])
    labels, conf = cluster_distances(pair_distances(emb), threshold=0.3)
    assert labels == [0, 0, 1, 1, 2] and 0.9 < conf <= 1.0
    labels, _ = cluster_distances(pair_distances(emb), threshold=1.5)
    assert labels == [0, 0, 0, 0, 0]
    assert cluster_distances(np.zeros((1, 1)), threshold=0.3) == ([0], 1.0)


def test_visual_evidence_overrides_voices():
    same_voice = _unit([[1, 0], [1, 0.01], [1, 0.02]])
    d = pair_distances(same_voice)
    # two different people seen speaking: never one speaker, however alike the voices
    assert cluster_constrained(d, ["red", "blue", None], threshold=0.3)[0] == [0, 1, 1]  # 2 is nearer to 1
    # red seen in segments 0 and 2 with far-apart voices: still one speaker
    far = _unit([[1, 0], [0, 1], [0.05, 1]])
    assert cluster_constrained(pair_distances(far), ["red", None, "red"], threshold=0.3)[0] == [0, 1, 0]
    # segment 1's speaker is not red (red was visible and quiet), though the voices match
    d = pair_distances(_unit([[1, 0], [1, 0.3], [1, 0.01]]))
    assert cluster_constrained(d, ["red", None, None], threshold=0.3)[0] == [0, 0, 0]
    assert cluster_constrained(d, ["red", None, None], [set(), {"red"}, set()], threshold=0.3)[0] == [0, 1, 0]
    assert cluster_constrained(np.zeros((0, 0)), [], threshold=0.3) == ([], 1.0)


def test_shot_cuts_find_hard_cuts_not_steady_motion():
    h, w = 32, 32
    frames = []
    for i in range(24):  # a bright square panning across a grey wall, then a cut to a green room
        img = np.full((h, w, 3), 120, np.uint8)
        if i < 12:
            img[8:20, i : i + 8] = (240, 240, 240)
        else:
            img[:] = (30, 160, 40)
        frames.append(img)
    times = np.arange(24) / 8.0
    assert shot_cuts(np.stack(frames), times) == [1.5]
    assert shot_cuts(np.stack(frames[:12]), times[:12]) == []
    assert shot_cuts(np.stack(frames[:1]), times[:1]) == []


def test_videos_are_listed_and_named_uniquely(tmp_path):
    (tmp_path / "a b").mkdir()
    for name in ("a b/x.mp4", "x.MP4", "notes.txt", "y.mkv"):
        (tmp_path / name).write_bytes(b"")
    found = list_videos(str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in found] == ["x.mp4", "x.MP4", "y.mkv"]
    assert clip_ids(found, str(tmp_path)) == ["a_b_x", "x", "y"]
    assert clip_ids([str(tmp_path / "x.mp4"), str(tmp_path / "x.mkv")], str(tmp_path)) == ["x", "x_2"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .mp4"):
        list_videos(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not a folder"):
        list_videos(str(tmp_path / "missing"))


def test_score_against_truth_by_hand():
    truth = {
        "v1": Truth(("A", "B", "A"), ("Hello there.", "Fine, thanks.", "Good"), True, 2),
        "v2": Truth(("A",), ("one two three four",), False, 1),
        "v3": Truth(("A", "B"), ("yes", "no"), False, 1),
    }
    found = {
        # v1: speakers swapped in name only, one word wrong ("there" -> "bear"): 1 error / 5 words
        "v1": Found(("S2", "S1", "S2"), ("hello bear", "fine thanks", "good"), True, 2),
        # v2: one speaker too many (its word is an insertion for cpWER), shots wrong
        "v2": Found(("S1", "S2"), ("one two three four", "five"), True, 3),
        # v3: skipped -> 2 deletions
    }
    got = score(truth, found)
    assert got["cpwer"] == round((1 + 1 + 2) / (5 + 4 + 2), 4)
    assert got["speaker_count_exact"] == round(1 / 3, 4)
    assert got["shot_count_exact"] == round(1 / 3, 4)
    assert got["off_screen_f1"] == round(2 * 1 / (2 * 1 + 1 + 0), 4)  # tp 1 (v1), fp 1 (v2), fn 0


def _result(uri: str, confidences, skipped: str = ""):
    from diadem_ray.data.schema import clip_to_row
    from diadem_ray.types import Clip, Turn

    dialogues = []
    for k, conf in enumerate(confidences):
        turns = (Turn("SPEAKER_1", "hello there", 0.2, 1.0), Turn("SPEAKER_2", "fine", 1.5, 2.0))
        clip = Clip(f"{uri}-d{k + 1}", uri, 3.0, "en", "Describe.", (), turns, 2, 1, True, False, False, False)
        row = clip_to_row(clip)
        dialogues.append(
            {
                "clip": row,
                "confidence": conf,
                "source_uri": uri,
                "source_start_s": 0.0,
                "source_end_s": 3.0,
                "num_shots": 1,
                "on_screen": [True, False],
            }
        )
    return {"uri": uri, "skipped": skipped, "seconds": 1.5, "dialogues": dialogues}


def test_low_confidence_dialogues_are_dropped_with_their_reason_and_outputs_written(tmp_path):
    import json

    from diadem_ray.annotate.job import collect, write_outputs
    from diadem_ray.config.schema import AnnotateConfig
    from diadem_ray.data.shards import list_shards, read_shard

    cfg = AnnotateConfig(min_confidence=0.5, bucket="raw")
    rep = collect([_result("b.mp4", [0.9, 0.2]), _result("a.mp4", [], skipped="no audio track")], cfg)
    assert [c.clip_id for c in rep.clips] == ["b.mp4-d1"] and rep.clips[0].bucket == "raw"
    assert rep.dropped == [("b.mp4-d2", "confidence 0.200 < annotate.min_confidence 0.5")]
    assert rep.skipped == [("a.mp4", "no audio track")] and rep.worker_seconds == 3.0
    assert [r["video"] for r in rep.rows] == ["a.mp4", "b.mp4"]
    write_outputs(rep, tmp_path, cfg)
    ann = [json.loads(x) for x in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert ann == [
        {
            "video_id": "b.mp4-d1",
            "gt_dialogues": ["SPEAKER_1: hello there", "SPEAKER_2: fine"],
            "speaker_num": 2,
            "people_num_in_screen": 1,
            "is_single_shot": 1,
            "has_off_screen_speaker": 0,
            "has_same_sex_speakers": 0,
            "only_opposite_sex_speakers": 0,
            "gt_times_s": [[0.2, 1.0], [1.5, 2.0]],
            "gt_on_screen": [True, False],
            "confidence": 0.9,
        }
    ]
    report = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert report[0]["skipped"] == "no audio track" and report[1]["dialogues"][1]["dropped"].startswith("confidence")
    root = str(tmp_path / "shards")
    assert [c.clip_id for p in list_shards(root) for c in read_shard(p, root)] == ["b.mp4-d1"]
