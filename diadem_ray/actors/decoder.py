"""The decode worker: one actor that owns one front-end and turns clips into what the model
family's prompts are made of, on a CPU node (``data.decode_resources``).

What a clip becomes is the model family's business (its
:class:`~diadem_ray.models.encoder.ClipEncoder`): evidence text for ``tiny_av`` (returned inline:
small), prompt token ids plus media for ``qwen2_5_omni``. Media go into the object store with this
actor as their owner, and only a :class:`~diadem_ray.types.MediaRef` is returned. The actor lives
as long as the run, so the objects it owns outlive every step that uses them; they are freed when
the last holder (driver, replica or learner) drops its reference.

A clip that cannot be decoded comes back with ``error`` set (data, not a crash). The per-clip cache
(:mod:`diadem_ray.data.clip_cache`) is read and written here, never by the driver.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Dict, Optional

from diadem_ray.types import EncodedClip, MediaRef


def cache_version(family: str, model_path: str = "", options: Optional[Dict[str, Any]] = None) -> str:
    """What a clip's result depends on besides the video (``options``: the family's decode options)."""
    from diadem_ray.models.families import get_family

    return get_family(family).input_version(model_path, options)


class ClipDecoder:
    """Decode and encode clips for ``family``. ``options``: the family's decode options
    (:meth:`~diadem_ray.models.families.ModelFamily.decode_options`); ``cache_dir`` ``""``: no
    cache; ``cache_max_bytes`` 0: no bound."""

    def __init__(
        self,
        *,
        family: str = "tiny_av",
        model_path: str = "",
        max_frames: int = 64,
        sample_rate_hz: int = 16000,
        options: Optional[Dict[str, Any]] = None,
        cache_dir: str = "",
        cache_max_bytes: int = 0,
        cpu_threads: int = 1,
    ):
        from diadem_ray.data.clip_cache import ClipCache
        from diadem_ray.models.families import get_family

        fam = get_family(family)
        self.max_frames, self.rate, self.ext = max_frames, sample_rate_hz, fam.cache_ext
        self.version = fam.input_version(model_path, options)
        self.cache = ClipCache(cache_dir, cache_max_bytes) if cache_dir else None
        self.encoder = fam.clip_encoder(model_path=model_path, options=options, cpu_threads=cpu_threads)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def encode(self, clip_id: str, uri: str) -> EncodedClip:
        """One clip, from the cache when it holds it."""
        from diadem_ray.data.clip_cache import entry_name
        from diadem_ray.data.decode import DecodeError

        t0 = time.perf_counter()
        name = entry_name(clip_id, uri, self.version, self.ext)
        try:
            out = self._encode(clip_id, uri, name)
        except DecodeError as exc:
            out = EncodedClip(clip_id, error=str(exc))
        except Exception as exc:  # a clip that breaks the front-end is data, not a crash
            out = EncodedClip(clip_id, error=f"{uri}: {type(exc).__name__}: {exc}")
        return replace(out, node=self.node(), seconds=time.perf_counter() - t0)

    def _encode(self, clip_id: str, uri: str, name: str) -> EncodedClip:
        from diadem_ray.data.decode import decode_clip
        from diadem_ray.data.media_refs import media_nbytes

        hit = self.cache.get(name) if self.cache else None
        if hit is not None:
            enc, media = self.encoder.read(clip_id, hit)
        else:
            m = decode_clip(uri, max_frames=self.max_frames, sample_rate_hz=self.rate)
            enc, media = self.encoder.encode(clip_id, m.frames, m.frame_times_s, m.audio, m.sample_rate_hz)
            if self.cache is not None:
                self.cache.put(name, lambda p: self.encoder.write(p, enc, media))
        if media is not None:
            import ray

            # owned by this actor, not the driver
            enc = replace(enc, media=MediaRef(ray.put(media), media_nbytes(media), clip_id, self.node()))
        return replace(enc, cached=hit is not None)
