"""Parquet shards, hive-partitioned by difficulty bucket: ``<root>/bucket=<name>/part-00000.parquet``.

``root`` is a local path or any pyarrow filesystem URI (``s3://…``, ``gs://…``); nothing else in
the code changes. Clips not yet profiled go to ``bucket=unassigned``.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from diadem_ray.data.schema import CLIP_SCHEMA, clip_to_row, row_to_clip, validate_clip
from diadem_ray.types import Clip

UNASSIGNED = "unassigned"


def _fs(root: str) -> Tuple[pafs.FileSystem, str]:
    if "://" in root:
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), str(pafs.LocalFileSystem().normalize_path(root))


def write_shards(clips: Iterable[Clip], root: str, *, clips_per_shard: int = 64, replace: bool = False) -> List[str]:
    """Validate every clip (``ValueError`` listing all problems, nothing written), then write.
    ``replace`` first removes the ``bucket=*`` folders already under ``root`` (and nothing else),
    so a re-partitioned dataset leaves no stale shards behind."""
    clips = list(clips)
    problems = [p for c in clips for p in validate_clip(c)]
    seen = set()
    for c in clips:
        if c.clip_id in seen:
            problems.append(f"clip {c.clip_id!r}: duplicate clip_id")
        seen.add(c.clip_id)
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in the clips to write:\n" + "\n".join(f"  - {p}" for p in problems))
    fs, base = _fs(root)
    if replace:
        for info in fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("bucket="):
                fs.delete_dir(info.path)
    by_bucket: dict = {}
    for c in clips:
        by_bucket.setdefault(c.bucket or UNASSIGNED, []).append(c)
    written = []
    for bucket, items in sorted(by_bucket.items()):
        folder = f"{base.rstrip('/')}/bucket={bucket}"
        fs.create_dir(folder, recursive=True)
        for n, i in enumerate(range(0, len(items), clips_per_shard)):
            table = pa.Table.from_pylist([clip_to_row(c) for c in items[i:i + clips_per_shard]], schema=CLIP_SCHEMA)
            path = f"{folder}/part-{n:05d}.parquet"
            pq.write_table(table, path, filesystem=fs)
            written.append(path)
    return written


def _bucket_dirs(root: str) -> Tuple[pafs.FileSystem, Dict[str, str]]:
    fs, base = _fs(root)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    return fs, {i.base_name.split("=", 1)[1]: i.path for i in infos
                if i.type == pafs.FileType.Directory and i.base_name.startswith("bucket=")}


def bucket_names(root: str) -> List[str]:
    """The buckets that have a folder under ``root`` (sorted)."""
    return sorted(_bucket_dirs(root)[1])


def list_shards(root: str, buckets: Optional[Sequence[str]] = None) -> List[str]:
    """Shard paths (sorted) of the named buckets (all when ``None``); a missing bucket is an error."""
    fs, present = _bucket_dirs(root)
    wanted = sorted(present) if buckets is None else list(buckets)
    missing = [b for b in wanted if b not in present]
    if missing:
        raise FileNotFoundError(f"{root}: no shards for bucket(s) {missing}; present: {sorted(present)}")
    paths: List[str] = []
    for b in wanted:
        files = fs.get_file_info(pafs.FileSelector(present[b], recursive=False))
        paths += sorted(f.path for f in files if f.base_name.endswith(".parquet"))
    return paths


def read_shard(path: str, root: str = "") -> List[Clip]:
    fs, _ = _fs(root or path)
    table = pq.read_table(path, filesystem=fs, schema=CLIP_SCHEMA)
    return [row_to_clip(r) for r in table.to_pylist()]
