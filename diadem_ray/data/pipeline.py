"""Ray Data: shards → decoded media → what the model family's prompts are made of, on CPU workers.

``encode_clips`` reads the shards with ``ray.data.read_parquet``, decodes each clip (PyAV: frames +
16 kHz mono audio) in ``map_batches`` actors and turns it into the family's prompt material:

* ``tiny_av``: the frozen front-end's evidence text (:mod:`diadem_ray.models.tiny_av_frontend`);
* ``qwen2_5_omni``: the thinker's token ids and media (:class:`~diadem_ray.models.qwen2_5_omni.ClipInputs`),
  saved as one ``.npz`` per clip; the row carries the file's path.

One small row per clip streams back to the driver (``iter_rows``: bounded memory; decoded media
never pass through it). Results are cached per clip under ``cache_dir`` keyed by the family's input
version and the video's size and modification time, so later stages and resumed runs do not decode
again (on a multi-node cluster ``cache_dir`` must be storage every node reads, as the run folder is).
The driver looks the cache up first and hands Ray Data only the clips it lacks: a pass over cached
clips starts no Ray Data job (no decoder actors, no front-end load).
A corrupt or missing clip is skipped, counted and named in the log; the run goes on.

The order in which a stage consumes clips is not Ray Data's: :class:`~diadem_ray.data.cursor.ClipStream`
decides it, reproducibly and resumably; this module only supplies each clip's prompt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Union

log = logging.getLogger(__name__)


@dataclass
class EncodeReport:
    # clip_id -> tiny_av: the evidence text; qwen2_5_omni: the path of the clip's cached inputs (.npz)
    features: Dict[str, str] = field(default_factory=dict)
    failed: Dict[str, str] = field(default_factory=dict)  # clip_id -> reason
    cached: int = 0
    decoded: int = 0
    seconds: float = 0.0
    nodes: Dict[str, int] = field(default_factory=dict)  # node id -> clips its decode actors handled


def _cache_key(uri: str, version: str) -> str:
    try:
        st = os.stat(uri.removeprefix("file://"))
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "remote"
    return hashlib.sha1(f"{version}|{uri}|{stamp}".encode()).hexdigest()[:16]


def cache_version(family: str, model_path: str = "", qwen: Optional[Dict[str, float]] = None) -> str:
    """What a clip's cached result depends on besides the video (``qwen``: as for ``ClipEncoder``)."""
    if family == "qwen2_5_omni":
        from diadem_ray.models import qwen2_5_omni

        return qwen2_5_omni.inputs_version(model_path, qwen2_5_omni.Settings(**(qwen or {})))
    from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION

    return FRONTEND_VERSION


def cache_path(cache_dir: Union[str, Path], clip_id: str, uri: str, version: str, family: str) -> Path:
    """Where ``clip_id``'s result is cached: evidence text (``tiny_av``) or the inputs ``.npz``."""
    ext = "npz" if family == "qwen2_5_omni" else "txt"
    return Path(cache_dir) / f"{clip_id}.{_cache_key(uri, version)}.{ext}"


def _take_cached(shard_paths: Sequence[str], cache_dir: str, version: str, family: str, filesystem: Optional[object],
                 report: EncodeReport) -> Optional[Set[str]]:
    """Put every clip of ``shard_paths`` already cached into ``report``; return the ids still to
    encode, or ``None`` when the driver cannot read the shards (Ray Data's workers then read all)."""
    import pyarrow.parquet as pq

    try:
        tables = [pq.read_table(p, columns=["clip_id", "video_uri"], filesystem=filesystem) for p in shard_paths]
    except (OSError, ValueError) as exc:
        log.info("cache lookup on the driver skipped (%s); Ray Data reads every shard", exc)
        return None
    todo: Set[str] = set()
    for table in tables:
        for clip_id, uri in zip(table.column("clip_id").to_pylist(), table.column("video_uri").to_pylist()):
            path = cache_path(cache_dir, clip_id, uri, version, family)
            if not path.is_file():
                todo.add(clip_id)
                continue
            report.features[clip_id] = str(path) if family == "qwen2_5_omni" else path.read_text(encoding="utf-8")
            report.cached += 1
    return todo


class ClipEncoder:
    """``map_batches`` callable: one front-end per actor (the Whisper model or the Qwen tokenizer
    and feature extractor load once). ``qwen``: keyword arguments of ``Settings`` for
    ``qwen2_5_omni`` (with ``model_path``)."""

    def __init__(self, cache_dir: str, max_frames: int, sample_rate_hz: int, cpu_threads: int = 1, frontend: bool = True,
                 family: str = "tiny_av", model_path: str = "", qwen: Optional[Dict[str, float]] = None):
        self.cache = Path(cache_dir)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.max_frames, self.rate, self.family = max_frames, sample_rate_hz, family
        self.frontend = self.qwen = None
        self.version = cache_version(family, model_path, qwen)  # the key the driver looks cached clips up by
        if family == "qwen2_5_omni":
            from diadem_ray.models import qwen2_5_omni

            self.qwen = qwen2_5_omni.ClipInputs(model_path, qwen2_5_omni.Settings(**(qwen or {})))
            return
        from diadem_ray.models.tiny_av_frontend import FrontEnd

        # frontend=False: decode only and describe the media (benchmarks of the decode stage)
        self.frontend = FrontEnd(cpu_threads=cpu_threads) if frontend else None

    def encode(self, clip_id: str, uri: str) -> Dict[str, str]:
        from diadem_ray.data.decode import DecodeError, decode_clip

        if self.qwen is not None:
            return self._encode_qwen(clip_id, uri)
        path = cache_path(self.cache, clip_id, uri, self.version, self.family)
        if self.frontend is None:
            try:
                m = decode_clip(uri, max_frames=self.max_frames, sample_rate_hz=self.rate)
            except DecodeError as exc:
                return {"clip_id": clip_id, "evidence": "", "error": str(exc), "cached": "0"}
            return {"clip_id": clip_id, "evidence": f"frames {m.frames.shape} audio {len(m.audio) / m.sample_rate_hz:.2f} s",
                    "error": "", "cached": "0"}
        if path.is_file():
            return {"clip_id": clip_id, "evidence": path.read_text(encoding="utf-8"), "error": "", "cached": "1"}
        try:
            media = decode_clip(uri, max_frames=self.max_frames, sample_rate_hz=self.rate)
            text = self.frontend.evidence(media.frames, media.frame_times_s, media.audio, media.sample_rate_hz).text()
        except DecodeError as exc:
            return {"clip_id": clip_id, "evidence": "", "error": str(exc), "cached": "0"}
        except Exception as exc:  # a clip that breaks the front-end is data, not a crash
            return {"clip_id": clip_id, "evidence": "", "error": f"{uri}: {type(exc).__name__}: {exc}", "cached": "0"}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return {"clip_id": clip_id, "evidence": text, "error": "", "cached": "0"}

    def _encode_qwen(self, clip_id: str, uri: str) -> Dict[str, str]:
        from diadem_ray.data.decode import DecodeError, decode_clip
        from diadem_ray.models.qwen2_5_omni import save_inputs

        path = cache_path(self.cache, clip_id, uri, self.version, self.family)
        if path.is_file():
            return {"clip_id": clip_id, "evidence": str(path), "error": "", "cached": "1"}
        try:
            media = decode_clip(uri, max_frames=self.max_frames, sample_rate_hz=self.rate)
            save_inputs(path, self.qwen(media.frames, media.frame_times_s, media.audio, media.sample_rate_hz))
        except DecodeError as exc:
            return {"clip_id": clip_id, "evidence": "", "error": str(exc), "cached": "0"}
        except ValueError as exc:  # e.g. a clip with no frames: data, not a crash
            return {"clip_id": clip_id, "evidence": "", "error": f"{uri}: {exc}", "cached": "0"}
        return {"clip_id": clip_id, "evidence": str(path), "error": "", "cached": "0"}

    def __call__(self, batch: Dict[str, List]) -> Dict[str, List]:
        import ray

        rows = [self.encode(c, u) for c, u in zip(batch["clip_id"], batch["video_uri"])]
        out = {k: [r[k] for r in rows] for k in ("clip_id", "evidence", "error", "cached")}
        out["node"] = [ray.get_runtime_context().get_node_id()] * len(rows)
        return out


def encode_clips(shard_paths: Sequence[str], *, cache_dir: str, max_frames: int = 64, sample_rate_hz: int = 16000,
                 num_cpus: float = 0.5, concurrency: int = 2, filesystem: Optional[object] = None,
                 frontend: bool = True, family: str = "tiny_av", model_path: str = "",
                 qwen: Optional[Dict[str, float]] = None, resources: Optional[Dict[str, float]] = None) -> EncodeReport:
    """Every clip of ``shard_paths`` made ready for ``family`` (see the module docstring).
    ``resources``: custom resources each decode actor asks for (``{"decode_cpu": 1}`` keeps
    decoding on the CPU node type)."""
    import time

    import ray.data

    start = time.perf_counter()
    report = EncodeReport()
    todo = None
    if frontend:  # frontend=False measures decoding: nothing is cached
        todo = _take_cached(shard_paths, cache_dir, cache_version(family, model_path, qwen), family, filesystem, report)
    if todo is not None and not todo:
        report.seconds = time.perf_counter() - start
        return report
    ds = ray.data.read_parquet(list(shard_paths), columns=["clip_id", "video_uri"], filesystem=filesystem)
    if todo is not None and report.cached:
        from ray.data.expressions import col

        ds = ds.filter(expr=col("clip_id").is_in(sorted(todo)))  # vectorised on Arrow batches
    ds = ds.map_batches(ClipEncoder, fn_constructor_kwargs={"cache_dir": cache_dir, "max_frames": max_frames,
                                                            "sample_rate_hz": sample_rate_hz, "frontend": frontend,
                                                            "family": family, "model_path": model_path, "qwen": qwen},
                        batch_size=2, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, concurrency)),
                        num_cpus=num_cpus, **({"resources": dict(resources)} if resources else {}))
    for row in ds.iter_rows():
        report.nodes[row["node"]] = report.nodes.get(row["node"], 0) + 1
        if row["error"]:
            report.failed[row["clip_id"]] = row["error"]
            log.warning("clip %s skipped: %s", row["clip_id"], row["error"])
            continue
        report.features[row["clip_id"]] = row["evidence"]
        report.cached += row["cached"] == "1"
        report.decoded += row["cached"] != "1"
    report.seconds = time.perf_counter() - start
    return report
