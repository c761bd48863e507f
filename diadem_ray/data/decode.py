"""Decoding a clip's frames and audio with PyAV (no ffmpeg binary, no torchvision).

Example:
    >>> # media = decode_clip("runs/data/train/videos/syn0-00000.mp4", max_frames=64)
    >>> # media.frames.shape, media.audio.shape   # (T, H, W, 3) uint8, (N,) float32 at 16 kHz
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


class DecodeError(RuntimeError):
    """A clip that cannot be read; the message names the URI and the reason."""


class FrameTooLarge(DecodeError):
    """A clip whose frames have more pixels than the caller allows."""


@dataclass(frozen=True)
class Media:
    """Decoded clip: ``frames`` uint8 ``[T, H, W, 3]`` at times ``frame_times_s`` ``[T]``; ``audio``
    float32 mono ``[N]`` at ``sample_rate_hz``."""

    frames: np.ndarray
    frame_times_s: np.ndarray
    audio: np.ndarray
    sample_rate_hz: int


def open_container(uri: str):
    """A PyAV container for a local path, ``file://`` URI or any URI pyarrow's filesystems read (s3://, gs://)."""
    import av

    if "://" in uri and not uri.startswith("file://"):
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(uri)
        return av.open(fs.open_input_file(path))
    return av.open(uri.removeprefix("file://"))


def probe(uri: str) -> float:
    """The clip's duration in seconds from its container header (no decoding). Raises
    :class:`DecodeError` for a file PyAV cannot open or one that declares no duration."""
    import av

    try:
        with open_container(uri) as box:
            if box.duration is not None:
                return float(box.duration) / av.time_base
            streams = [s for s in box.streams if s.duration is not None and s.time_base is not None]
            if streams:
                return max(float(s.duration * s.time_base) for s in streams)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"{uri}: cannot open ({type(exc).__name__}: {exc})") from exc
    raise DecodeError(f"{uri}: the container declares no duration")


def frame_size(uri: str) -> tuple:
    """``(width, height)`` in pixels of the first video stream, from its header (no decoding);
    ``(0, 0)`` without a video stream. Raises :class:`DecodeError`."""
    import av

    try:
        with open_container(uri) as box:
            if not box.streams.video:
                return (0, 0)
            ctx = box.streams.video[0].codec_context
            return (int(ctx.width or 0), int(ctx.height or 0))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"{uri}: cannot open ({type(exc).__name__}: {exc})") from exc


def _pick(n: int, max_frames: int) -> np.ndarray:
    """Indices of the frames kept out of ``n``: all of them, or ``max_frames`` evenly spaced."""
    if n <= max_frames:
        return np.arange(n)
    return np.linspace(0, n - 1, max_frames).round().astype(int)


def _video(box, max_frames: int, declared: int, max_frame_pixels: Optional[int] = None):
    """The kept frames and their times. Only the kept frames are converted to RGB and held, so a
    long HD clip costs ``max_frames`` frames of memory, not all of its frames (a 30 s 720p clip at
    30 fps would otherwise hold 2.5 GB). Needs the frame count: the header's when it declares one,
    else a first pass that only counts. A header that miscounts is found at the end of the pass
    and the pass is repeated with the true count, so the kept frames are always the ones the
    true count selects."""
    vs = box.streams.video[0]
    n = declared if declared > 0 else sum(1 for _ in box.decode(vs))
    for _ in range(3):  # the header's count, then the true one (a third pass would mean decoding is not repeatable)
        box.seek(0)
        keep = set(_pick(n, max_frames).tolist())
        frames, times, seen = [], [], 0
        for i, fr in enumerate(box.decode(vs)):
            seen = i + 1
            if max_frame_pixels is not None and fr.width * fr.height > max_frame_pixels:
                raise FrameTooLarge(f"frame {i} is {fr.width}x{fr.height} = {fr.width * fr.height:,} pixels; "
                                    f"the limit is {max_frame_pixels:,}")
            if i in keep:
                frames.append(fr.to_ndarray(format="rgb24"))
                times.append(float(fr.time or 0.0))
        if seen == n:
            return frames, times
        n = seen
    raise DecodeError(f"the video stream decodes to a different number of frames on each pass (last {n})")


def audio_track(box, sample_rate_hz: int) -> np.ndarray:
    """The first audio stream of an open container, downmixed to mono float32 at ``sample_rate_hz``
    (empty without one). PyAV errors propagate to the caller, which names the file."""
    import av

    if not box.streams.audio:
        return np.zeros(0, np.float32)
    res = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)
    chunks = []
    for fr in box.decode(box.streams.audio[0]):
        for out in res.resample(fr):
            chunks.append(out.to_ndarray().reshape(-1))
    for out in res.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def decode_clip(uri: str, *, max_frames: int = 64, sample_rate_hz: int = 16000,
                max_frame_pixels: Optional[int] = None) -> Media:
    """All frames when the clip has at most ``max_frames``, else ``max_frames`` evenly spaced ones
    (only those are converted and held); audio downmixed to mono and resampled to
    ``sample_rate_hz``. Raises :class:`DecodeError` (:class:`FrameTooLarge` for a frame over
    ``max_frame_pixels``, checked on every decoded frame, whatever the header said)."""
    import av

    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    try:
        with open_container(uri) as box:
            frames, times = [], []
            if box.streams.video:
                frames, times = _video(box, max_frames, int(box.streams.video[0].frames or 0), max_frame_pixels)
            box.seek(0)
            audio = audio_track(box, sample_rate_hz)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"{uri}: cannot decode ({type(exc).__name__}: {exc})") from exc
    except DecodeError as exc:
        raise type(exc)(f"{uri}: {exc}") from exc
    if not frames:
        raise DecodeError(f"{uri}: no video frames")
    return Media(np.stack(frames), np.asarray(times, np.float64), audio, sample_rate_hz)
