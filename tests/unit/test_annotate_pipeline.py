"""`diadem-ray annotate`'s per-video pipeline with its real models (Whisper tiny.en, resemblyzer,
the face finders), no Ray: a synthetic clip gives one dialogue close to its truth; a video with
two dialogues is cut in two; bad videos are skipped with a reason; OpenCV's finder sees a real
face and its mouth moving."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from diadem_ray.annotate.evaluate import words
from diadem_ray.annotate.pipeline import Annotator
from diadem_ray.config.schema import AnnotateConfig
from diadem_ray.data.decode import decode_clip
from diadem_ray.data.synth import Voice, make_clip, write_mp4


@pytest.fixture(scope="module")
def annotator() -> Annotator:
    return Annotator(AnnotateConfig(faces="scene", asr_threads=2))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    voice = Voice()
    return [make_clip(i, seed=77, out_dir=out, voice=voice) for i in (3, 4)]


def _overlap(found: str, truth: str) -> float:
    f, t = words(found).split(), words(truth).split()
    return sum(w in f for w in t) / max(1, len(t))


def test_a_synthetic_clip_gives_one_dialogue_near_its_truth(annotator, clips, tmp_path):
    clip = clips[0]
    res = annotator(clip.video_uri, "c0", tmp_path / "videos")
    assert res.skipped == "" and len(res.dialogues) == 1
    d = res.dialogues[0]
    got = d.clip
    assert got.video_uri == clip.video_uri and got.duration_s == pytest.approx(clip.duration_s, abs=0.2)
    assert {t.speaker for t in got.dialogue} <= {f"SPEAKER_{k}" for k in range(1, got.speaker_num + 1)}
    assert got.dialogue[0].speaker == "SPEAKER_1"
    assert all(0 <= t.start_s <= t.end_s <= got.duration_s for t in got.dialogue)
    said = " ".join(t.text for t in got.dialogue)
    assert _overlap(said, " ".join(t.text for t in clip.dialogue)) >= 0.7
    assert 0 < d.confidence <= 1 and d.num_shots >= 1
    assert len(d.on_screen) == len(got.dialogue)
    assert all(d.on_screen) != got.has_off_screen_speaker  # a line off screen <=> an off-screen speaker
    assert not (tmp_path / "videos").exists()  # the whole video is the dialogue: nothing cut
    assert annotator(clip.video_uri, "c0", tmp_path / "videos").dialogues == res.dialogues  # deterministic


def test_two_dialogues_in_one_video_are_cut_apart(annotator, clips, tmp_path):
    a, b = (decode_clip(c.video_uri, max_frames=10_000) for c in clips)
    gap_s = 5.0
    rest = np.repeat(a.frames[-1:], int(gap_s * 8), axis=0)
    frames = np.concatenate([a.frames, rest, b.frames])
    audio = np.concatenate([a.audio, np.zeros(int(gap_s * 16000), np.float32), b.audio])
    src = tmp_path / "long.mp4"
    write_mp4(src, frames, audio, fps=8)
    res = annotator(str(src), "long", tmp_path / "videos")
    assert res.skipped == "" and [d.clip.clip_id for d in res.dialogues] == ["long-d1", "long-d2"]
    first, second = res.dialogues
    assert first.source_end_s < len(a.audio) / 16000 + gap_s / 2 < second.source_start_s
    for d, truth in zip(res.dialogues, clips):
        path = Path(d.clip.video_uri)
        assert path.parent == (tmp_path / "videos").resolve() and path.is_file()
        cut = decode_clip(str(path), max_frames=10_000)
        assert abs(len(cut.audio) / 16000 - d.clip.duration_s) < 0.15
        assert all(0 <= t.start_s <= t.end_s <= d.clip.duration_s + 1e-6 for t in d.clip.dialogue)
        said = " ".join(t.text for t in d.clip.dialogue)
        assert _overlap(said, " ".join(t.text for t in truth.dialogue)) >= 0.7


def test_bad_videos_are_skipped_with_a_reason(annotator, clips, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(Path(clips[0].video_uri).read_bytes()[:400] + os.urandom(2000))
    frames = np.zeros((16, 32, 32, 3), np.uint8)
    silent = tmp_path / "silent.mp4"
    write_mp4(silent, frames, np.zeros(32000, np.float32), fps=8)
    mute = tmp_path / "mute.mp4"
    _video_only(mute, frames)
    reasons = {p.name: annotator(str(p), p.stem, tmp_path / "videos").skipped for p in (empty, corrupt, silent, mute)}
    assert "unreadable" in reasons["empty.mp4"] and "empty.mp4" in reasons["empty.mp4"]
    assert reasons["corrupt.mp4"]  # whichever way the container breaks, a reason is given
    assert reasons["silent.mp4"].startswith("no speech found")
    assert reasons["mute.mp4"] == "no audio track"
    big = Annotator.__new__(Annotator)  # the same models, a smaller frame limit
    big.__dict__.update(annotator.__dict__)
    big.cfg = AnnotateConfig(faces="scene", max_frame_pixels=100)
    assert big(str(silent), "silent", tmp_path / "videos").skipped.startswith("frames over annotate.max_frame_pixels")


def test_a_failing_video_is_skipped_with_its_error_not_the_job(annotator, clips, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(annotator.voices, "embed", broken)
    res = annotator(clips[0].video_uri, "c0", tmp_path / "videos")
    assert res.dialogues == [] and res.skipped == "annotation failed (RuntimeError: encoder exploded)"


def _video_only(path: Path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), "w") as box:
        vs = box.add_stream("libx264", rate=8)
        vs.height, vs.width = frames.shape[1:3]
        vs.pix_fmt = "yuv420p"
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                box.mux(pkt)
        for pkt in vs.encode():
            box.mux(pkt)


def test_opencv_finder_sees_a_real_face_and_its_mouth_move():
    import matplotlib
    import matplotlib.image as mpimg

    from diadem_ray.annotate.faces import OpenCvFaces, visible

    img = mpimg.imread(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))
    finder = OpenCvFaces()
    boxes = finder.faces(img)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    still, talking = [], []
    for i in range(12):
        still.append(img.copy())
        f = img.copy()
        mouth = f[y + 3 * h // 4 : y + 7 * h // 8, x + w // 3 : x + 2 * w // 3]
        mouth[:] = 30 if i % 2 else mouth  # the mouth region opens dark and closes again
        talking.append(f)
    times = np.arange(12) / 8.0
    for frames, moving in ((still, False), (talking, True)):
        tracks = finder.track(np.stack(frames), times)
        assert len(tracks.mouth) == 1 and finder.people_on_screen(tracks) == 1
        assert bool(finder.movers(tracks, 0.0, 2.0)) is moving
        assert visible(tracks, 0.0, 2.0) == set(tracks.mouth)
    blank = np.full((12, 240, 320, 3), 128, np.uint8)
    assert finder.people_on_screen(finder.track(blank, times)) == 0
