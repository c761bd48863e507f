"""decode_clip keeps the right frames without holding every decoded frame."""

from __future__ import annotations

import av
import numpy as np
import pytest

from diadem_ray.data import decode
from diadem_ray.data.decode import DecodeError, decode_clip

N_FRAMES, FPS = 30, 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """A 3 s mp4 whose frames all differ (a grey ramp), without audio."""
    path = str(tmp_path_factory.mktemp("dec") / "ramp.mp4")
    with av.open(path, "w") as box:
        vs = box.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(N_FRAMES):
            img = np.full((48, 64, 3), 8 * i, np.uint8)
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                box.mux(pkt)
        for pkt in vs.encode():
            box.mux(pkt)
    return path


@pytest.fixture(scope="module")
def every_frame(clip) -> np.ndarray:
    """The clip's frames decoded one by one with plain PyAV (the reference)."""
    with av.open(clip) as box:
        return np.stack([f.to_ndarray(format="rgb24") for f in box.decode(box.streams.video[0])])


def _even(k: int) -> list:
    return np.linspace(0, N_FRAMES - 1, k).round().astype(int).tolist()


def test_keeps_evenly_spaced_frames(clip, every_frame):
    assert len(every_frame) == N_FRAMES
    m = decode_clip(clip, max_frames=7)
    assert np.array_equal(m.frames, every_frame[_even(7)])
    assert np.allclose(m.frame_times_s, np.asarray(_even(7)) / FPS)
    assert m.audio.shape == (0,)


def test_short_clip_keeps_every_frame(clip, every_frame):
    assert np.array_equal(decode_clip(clip, max_frames=64).frames, every_frame)


@pytest.mark.parametrize("declared", [0, 12, 50])
def test_missing_or_wrong_header_count_still_picks_by_true_count(clip, every_frame, declared):
    """No declared count (counted first) and a header that under- or over-counts give the same
    frames as the true count."""
    with av.open(clip) as box:
        frames, times = decode._video(box, 5, declared)
    assert np.array_equal(np.stack(frames), every_frame[_even(5)])
    assert np.allclose(times, np.asarray(_even(5)) / FPS)


def test_bad_inputs_are_named(clip, tmp_path):
    with pytest.raises(ValueError, match="max_frames"):
        decode_clip(clip, max_frames=0)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(DecodeError, match="junk.mp4"):
        decode_clip(str(junk))


def test_frame_size_from_the_header_and_a_pixel_limit_on_every_frame(clip):
    from diadem_ray.data.decode import FrameTooLarge, frame_size

    assert frame_size(clip) == (64, 48)
    with pytest.raises(FrameTooLarge, match="64x48 = 3,072 pixels; the limit is 3,071") as info:
        decode_clip(clip, max_frames=4, max_frame_pixels=3071)
    assert clip in str(info.value)
    assert decode_clip(clip, max_frames=4, max_frame_pixels=3072).frames.shape == (4, 48, 64, 3)


def test_media_limits_of_the_captioner():
    from diadem_ray.serve import _over_media_limits

    ok = dict(frames=16, max_seconds=60.0, max_pixels=1920 * 1080, max_bytes=512 << 20)
    assert _over_media_limits(10.0, 1280, 720, **ok) is None
    assert "serve.max_clip_duration_s" in _over_media_limits(61.0, 32, 32, **ok)
    assert "serve.max_frame_pixels" in _over_media_limits(10.0, 4096, 4096, **ok)
    assert "serve.max_decoded_bytes" in _over_media_limits(10.0, 1920, 1080, **dict(ok, frames=100))
