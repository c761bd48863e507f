"""``diadem-ray annotate`` as a Ray Data job: the videos are rows, a pool of actors (each holding
Whisper, the voice encoder and the face finder) annotates them in parallel, and only the
annotations — never the media — come back to the driver, which writes the outputs:

* ``shards/bucket=<annotate.bucket>/`` — parquet shards that ``train`` reads (``data.root/<split>``);
* ``annotations.jsonl`` — DiaDemBench rows (``diadem-ray eval``), speakers as ``SPEAKER_k``, with
  each line's times (``gt_times_s``), whether its speaker is on screen (``gt_on_screen``) and the
  dialogue's ``confidence``;
* ``videos/`` — the dialogues cut out of videos that hold more than one;
* ``report.jsonl`` — one row per video: its dialogues with confidence and source times, or why it
  was skipped; every dialogue dropped under ``annotate.min_confidence`` with its confidence.

Actors write cut videos into the output folder themselves, so it must be a folder every worker
node sees (a shared disk on a multi-node cluster).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

from diadem_ray.config.schema import AnnotateConfig

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class AnnotateReport:
    """What the job did: kept dialogues, skipped videos, dropped dialogues, and the time taken."""

    clips: List[Any] = field(default_factory=list)  # Clip
    rows: List[Dict[str, Any]] = field(default_factory=list)  # report.jsonl rows, one per video
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (video, reason)
    dropped: List[Tuple[str, str]] = field(default_factory=list)  # (clip_id, reason)
    confidence: Dict[str, float] = field(default_factory=dict)  # kept clip_id -> confidence
    on_screen: Dict[str, List[bool]] = field(default_factory=dict)  # kept clip_id -> per line
    worker_seconds: float = 0.0


def list_videos(videos: str) -> List[str]:
    """Every file under ``videos`` (a folder, or a URI pyarrow reads) whose name ends in a video
    extension, sorted. Raises ``ValueError`` naming the input when there are none."""
    if "://" in videos:
        import pyarrow.fs as pafs

        fs, root = pafs.FileSystem.from_uri(videos)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        scheme = videos.split("://", 1)[0]
        found = sorted(f"{scheme}://{i.path}" for i in infos if i.is_file and i.path.lower().endswith(VIDEO_EXTS))
    else:
        root_dir = Path(videos)
        if not root_dir.is_dir():
            raise ValueError(f"--videos {videos}: not a folder; give the folder (or s3:// URI) holding the videos")
        found = sorted(str(p.resolve()) for p in root_dir.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if not found:
        raise ValueError(f"--videos {videos}: no {'/'.join(VIDEO_EXTS)} files found under it")
    return found


def clip_ids(videos: List[str], root: str) -> List[str]:
    """A clip id per video: its path under ``root`` without the extension, with every run of
    characters other than letters, digits, ``_`` and ``-`` replaced by ``_``; made unique."""
    out, seen = [], set()
    base = root.rstrip("/")
    for v in videos:
        rel = v[len(base) :].lstrip("/") if v.startswith(base) else v.rsplit("/", 1)[-1]
        cid = _UNSAFE.sub("_", rel.rsplit(".", 1)[0]).strip("_") or "video"
        unique, k = cid, 2
        while unique in seen:
            unique, k = f"{cid}_{k}", k + 1
        seen.add(unique)
        out.append(unique)
    return out


class _Worker:
    """One Ray Data actor: the models, loaded once, applied to a batch of video rows."""

    def __init__(self, cfg: Dict[str, Any], videos_out: str) -> None:
        from diadem_ray.annotate.pipeline import Annotator

        self.annotator = Annotator(AnnotateConfig(**cfg))
        self.videos_out = Path(videos_out)

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, List[str]]:
        from diadem_ray.data.schema import clip_to_row

        results = []
        for uri, cid in zip(batch["uri"], batch["clip_id"]):
            res = self.annotator(str(uri), str(cid), self.videos_out)
            results.append(
                json.dumps(
                    {
                        "uri": res.uri,
                        "skipped": res.skipped,
                        "seconds": res.seconds,
                        "dialogues": [
                            {**{k: v for k, v in asdict(d).items() if k != "clip"}, "clip": clip_to_row(d.clip)}
                            for d in res.dialogues
                        ],
                    }
                )
            )
        return {"result": results}


def run_annotate(videos: List[str], ids: List[str], out: Path, cfg: AnnotateConfig) -> AnnotateReport:
    """Annotate ``videos`` (clip ids ``ids``) on the connected Ray cluster; nothing is written but
    the cut videos (``out/videos``). Needs ``ray.init`` first."""
    import ray

    ds = ray.data.from_items(
        [{"uri": v, "clip_id": c} for v, c in zip(videos, ids)], override_num_blocks=max(1, min(len(videos), 1000))
    )
    annotated = ds.map_batches(
        _Worker,
        fn_constructor_kwargs={"cfg": asdict(cfg), "videos_out": str((out / "videos").resolve())},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=cfg.workers),
        num_cpus=cfg.num_cpus_per_worker,
    )
    return collect((json.loads(r["result"]) for r in annotated.iter_rows()), cfg)


def collect(results: Iterable[Dict[str, Any]], cfg: AnnotateConfig) -> AnnotateReport:
    """The report of the workers' per-video results (in video order): dialogues that fail
    validation or fall under ``annotate.min_confidence`` are dropped, each with its reason."""
    from diadem_ray.data.schema import row_to_clip, validate_clip

    rep = AnnotateReport()
    for row in sorted(results, key=lambda r: r["uri"]):
        rep.worker_seconds += row["seconds"]
        entry: Dict[str, Any] = {"video": row["uri"], "seconds": row["seconds"], "dialogues": []}
        if row["skipped"]:
            rep.skipped.append((row["uri"], row["skipped"]))
            entry["skipped"] = row["skipped"]
        for d in row["dialogues"]:
            clip = row_to_clip({**d["clip"], "bucket": cfg.bucket})
            info = {k: v for k, v in d.items() if k != "clip"} | {"clip_id": clip.clip_id}
            problems = validate_clip(clip)
            if problems:
                info["dropped"] = "; ".join(problems)
            elif d["confidence"] < cfg.min_confidence:
                info["dropped"] = f"confidence {d['confidence']:.3f} < annotate.min_confidence {cfg.min_confidence}"
            if "dropped" in info:
                rep.dropped.append((clip.clip_id, info["dropped"]))
            else:
                rep.clips.append(clip)
                rep.confidence[clip.clip_id] = float(d["confidence"])
                rep.on_screen[clip.clip_id] = [bool(x) for x in d.get("on_screen", ())]
            entry["dialogues"].append(info)
        rep.rows.append(entry)
    return rep


def write_outputs(rep: AnnotateReport, out: Path, cfg: AnnotateConfig) -> None:
    """shards/, annotations.jsonl and report.jsonl under ``out`` (shards replaced, not appended)."""
    from diadem_ray.data.schema import annotation_of
    from diadem_ray.data.shards import write_shards

    out.mkdir(parents=True, exist_ok=True)
    if rep.clips:
        write_shards(rep.clips, str(out / "shards"), clips_per_shard=cfg.clips_per_shard, replace=True)
    with (out / "annotations.jsonl").open("w", encoding="utf-8") as fh:
        for c in rep.clips:
            row = annotation_of(c) | {
                "gt_times_s": [[t.start_s, t.end_s] for t in c.dialogue],
                "gt_on_screen": rep.on_screen.get(c.clip_id, []),
                "confidence": rep.confidence.get(c.clip_id),
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (out / "report.jsonl").open("w", encoding="utf-8") as fh:
        for r in rep.rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
