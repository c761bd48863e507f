"""The decode worker: one actor that owns one front-end and turns clips into what the model
family's prompts are made of, on a CPU node (``data.decode_resources``).

* ``tiny_av``: decode (PyAV) → the frozen front-end's evidence text (returned inline: small).
* ``qwen2_5_omni``: decode → the thinker's token ids + media (``build_inputs``); the media go into
  the object store with this actor as their owner, and only a :class:`~diadem_ray.types.MediaRef`
  is returned. The actor lives as long as the run, so the objects it owns outlive every step that
  uses them; they are freed when the last holder (driver, replica or learner) drops its reference.

A clip that cannot be decoded comes back with ``error`` set (data, not a crash). The per-clip cache
(:mod:`diadem_ray.data.clip_cache`) is read and written here, never by the driver.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Dict, Optional

from diadem_ray.types import EncodedClip, MediaRef


def cache_version(family: str, model_path: str = "", qwen: Optional[Dict[str, float]] = None) -> str:
    """What a clip's result depends on besides the video (``qwen``: keyword arguments of ``Settings``)."""
    if family == "qwen2_5_omni":
        from diadem_ray.models import qwen2_5_omni

        return qwen2_5_omni.inputs_version(model_path, qwen2_5_omni.Settings(**(qwen or {})))
    from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION

    return FRONTEND_VERSION


class ClipDecoder:
    """Decode and encode clips for ``family``. ``cache_dir`` ``""``: no cache; ``cache_max_bytes``
    0: no bound."""

    def __init__(self, *, family: str = "tiny_av", model_path: str = "", max_frames: int = 64,
                 sample_rate_hz: int = 16000, qwen: Optional[Dict[str, float]] = None, cache_dir: str = "",
                 cache_max_bytes: int = 0, cpu_threads: int = 1):
        from diadem_ray.data.clip_cache import ClipCache

        self.family, self.max_frames, self.rate = family, max_frames, sample_rate_hz
        self.version = cache_version(family, model_path, qwen)
        self.cache = ClipCache(cache_dir, cache_max_bytes) if cache_dir else None
        self.frontend: Any = None
        self.qwen: Any = None
        if family == "qwen2_5_omni":
            from diadem_ray.models import qwen2_5_omni

            self.qwen = qwen2_5_omni.ClipInputs(model_path, qwen2_5_omni.Settings(**(qwen or {})))
        else:
            from diadem_ray.models.tiny_av_frontend import FrontEnd

            self.frontend = FrontEnd(cpu_threads=cpu_threads)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def encode(self, clip_id: str, uri: str) -> EncodedClip:
        """One clip, from the cache when it holds it."""
        from diadem_ray.data.clip_cache import entry_name
        from diadem_ray.data.decode import DecodeError

        t0 = time.perf_counter()
        name = entry_name(clip_id, uri, self.version, self.family)
        try:
            out = self._qwen(clip_id, uri, name) if self.qwen is not None else self._tiny(clip_id, uri, name)
        except DecodeError as exc:
            out = EncodedClip(clip_id, error=str(exc))
        except Exception as exc:  # a clip that breaks the front-end is data, not a crash
            out = EncodedClip(clip_id, error=f"{uri}: {type(exc).__name__}: {exc}")
        return replace(out, node=self.node(), seconds=time.perf_counter() - t0)

    def _tiny(self, clip_id: str, uri: str, name: str) -> EncodedClip:
        from diadem_ray.data.decode import decode_clip

        hit = self.cache.get(name) if self.cache else None
        if hit is not None:
            return EncodedClip(clip_id, evidence=hit.read_text(encoding="utf-8"), cached=True)
        m = decode_clip(uri, max_frames=self.max_frames, sample_rate_hz=self.rate)
        text = self.frontend.evidence(m.frames, m.frame_times_s, m.audio, m.sample_rate_hz).text()
        if self.cache is not None:
            self.cache.put(name, lambda p: p.write_text(text, encoding="utf-8"))
        return EncodedClip(clip_id, evidence=text)

    def _qwen(self, clip_id: str, uri: str, name: str) -> EncodedClip:
        from diadem_ray.data.decode import decode_clip
        from diadem_ray.data.media_refs import media_nbytes
        from diadem_ray.models.families import split_inputs
        from diadem_ray.models.qwen2_5_omni import load_inputs, save_inputs

        hit = self.cache.get(name) if self.cache else None
        if hit is not None:
            ids, media = load_inputs(hit)
        else:
            m = decode_clip(uri, max_frames=self.max_frames, sample_rate_hz=self.rate)
            inputs = self.qwen(m.frames, m.frame_times_s, m.audio, m.sample_rate_hz)
            if self.cache is not None:
                self.cache.put(name, lambda p: _save_npz(save_inputs, p, inputs))
            ids, media = split_inputs(inputs)
        import ray

        held = MediaRef(ray.put(media), media_nbytes(media), clip_id, self.node())  # owned by this actor, not the driver
        return EncodedClip(clip_id, prompt_token_ids=tuple(ids), media=held, cached=hit is not None)


def _save_npz(save_inputs: Any, tmp: Any, inputs: Dict[str, Any]) -> None:
    """``save_inputs`` into ``tmp`` exactly (numpy would append ``.npz`` to another suffix)."""
    import os

    save_inputs(str(tmp) + ".npz", inputs)
    os.replace(str(tmp) + ".npz", tmp)
