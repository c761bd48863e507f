"""Cutting one dialogue out of a longer video with PyAV: video re-encoded (H.264, yuv420p) at the
source's frame rate, audio as 16 kHz mono AAC, both starting at 0. Frames are streamed from
decoder to encoder, so a long HD source costs one frame of memory, not the whole dialogue; the
audio is the caller's (already decoded for the annotation), never decoded again.

Units: seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diadem_ray.data.decode import DecodeError, open_container
from diadem_ray.data.synth import mux_audio

RATE_HZ = 16000


def cut_video(uri: str, start_s: float, end_s: float, out: Path, audio: np.ndarray) -> float:
    """Write the frames of ``[start_s, end_s)`` of ``uri`` and ``audio`` (those seconds of its sound,
    16 kHz mono float32) to ``out`` (mp4); returns the cut's duration in seconds. Raises
    :class:`DecodeError` naming the source."""
    import av

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    try:
        with open_container(uri) as src, av.open(str(tmp), "w") as dst:
            vin = src.streams.video[0]
            rate = vin.average_rate or 25
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
            vout.pix_fmt = "yuv420p"
            vout.options = {"preset": "veryfast", "crf": "20"}
            aout = dst.add_stream("aac", rate=RATE_HZ, layout="mono") if len(audio) else None
            for fr in src.decode(vin):
                t = float(fr.time or 0.0)
                if start_s <= t < end_s:
                    img = fr.to_ndarray(format="rgb24")[: vout.height, : vout.width]
                    for pkt in vout.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                        dst.mux(pkt)
            for pkt in vout.encode():
                dst.mux(pkt)
            if aout is not None:
                mux_audio(dst, aout, audio)
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        tmp.unlink(missing_ok=True)
        raise DecodeError(f"{uri}: cannot cut [{start_s:.2f}, {end_s:.2f}) s ({type(exc).__name__}: {exc})") from exc
    tmp.replace(out)
    return round(end_s - start_s, 3)
