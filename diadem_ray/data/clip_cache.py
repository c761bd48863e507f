"""The optional per-clip cache of decode results (``data.cache``): ``none`` | ``local`` | ``shared``.

* ``none``: nothing is written; every clip is decoded when a stage needs it.
* ``local``: each node keeps its own cache on local disk (``data.cache_dir``, default
  ``<tmp>/diadem-ray-cache``); no shared storage is needed.
* ``shared``: one cache under ``data.root/features`` that every node reads (shared storage).

An entry is one file ``<clip_id>.<key>.<ext>``: ``key`` hashes what the result depends on (the
family's input version and the video's URI, size and modification time), ``ext`` is ``txt`` (tiny_av
evidence) or ``npz`` (Qwen2.5-Omni inputs). With a bound (``data.cache_max_gb``) the least recently
used entries are removed before a new one is written, under a lock shared by the node's writers,
so the cache never holds more than the bound; an entry larger than the bound is not kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

CACHE_MODES = ("none", "local", "shared")
LOCK_NAME = ".lock"


def cache_key(uri: str, version: str) -> str:
    """16 hex digits naming (``version``, ``uri``, the file's size and mtime when it is local)."""
    try:
        st = os.stat(uri.removeprefix("file://"))
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "remote"
    return hashlib.sha1(f"{version}|{uri}|{stamp}".encode()).hexdigest()[:16]


def entry_name(clip_id: str, uri: str, version: str, ext: str) -> str:
    """The cache file of one clip: ``ext`` is the model family's (``txt``, ``npz``)."""
    return f"{clip_id}.{cache_key(uri, version)}.{ext}"


def cache_root(mode: str, *, data_root: str, cache_dir: str = "") -> str:
    """The directory of cache ``mode`` (``""`` for ``none``), as the node that writes it sees it."""
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache must be one of {', '.join(CACHE_MODES)}; got {mode!r}")
    if mode == "none":
        return ""
    if cache_dir:
        return cache_dir
    if mode == "shared":
        return str(Path(data_root) / "features")
    tag = hashlib.sha1(str(Path(data_root).resolve()).encode()).hexdigest()[:8]
    return str(Path(tempfile.gettempdir()) / "diadem-ray-cache" / tag)


class ClipCache:
    """Entries under ``root`` with at most ``max_bytes`` in all (0: no bound)."""

    def __init__(self, root: Union[str, Path], max_bytes: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)

    def get(self, name: str) -> Optional[Path]:
        """The entry's path, marked as used now; ``None`` when absent."""
        path = self.root / name
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def put(self, name: str, write: Callable[[Path], None]) -> bool:
        """Write an entry with ``write(tmp_path)``; ``False`` when it alone exceeds the bound."""
        tmp = self.root / f".{name}.tmp{os.getpid()}"
        write(tmp)
        size = tmp.stat().st_size
        if self.max_bytes and size > self.max_bytes:
            tmp.unlink(missing_ok=True)
            return False
        with open(self.root / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.max_bytes:
                self._evict(self.max_bytes - size, keep=name)
            os.replace(tmp, self.root / name)
        return True

    def size_bytes(self) -> int:
        return sum(e.stat().st_size for e in self._entries())

    def _entries(self):
        for e in os.scandir(self.root):
            if e.is_file() and not e.name.startswith("."):
                yield e

    def _evict(self, budget: int, *, keep: str) -> None:
        """Remove least recently used entries until the others hold at most ``budget`` bytes."""
        entries = []
        for e in self._entries():
            try:
                st = e.stat()
            except FileNotFoundError:
                continue
            if e.name != keep:
                entries.append((st.st_mtime_ns, st.st_size, e.path))
        total = sum(s for _, s, _ in entries)
        for _, s, path in sorted(entries):
            if total <= budget:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            total -= s
