"""A resumable, deterministic clip stream over shards (Ray Data iterators cannot resume).

Order: each epoch shuffles the shard list with ``Random(f"{seed}:{epoch}")`` and the rows of each
shard with ``Random(f"{seed}:{epoch}:{bucket folder}/{shard file}")`` — the shard's name within its
root, so the same seed gives the same order wherever the shards live (a run's profiled shards sit
under its own folder, ``runs/<name>/profiled``). The cursor — epoch, index into the shard
order, offset within the shard — is the whole state: a stream rebuilt from a saved cursor yields
exactly the clips an uninterrupted one would have, with no repeat and no skip.

Example:
    >>> # stream = ClipStream(root, ["hard"], seed=0); batch = stream.take(8); state = stream.cursor()
    >>> # ClipStream(root, ["hard"], seed=0, cursor=state).take(8)  # continues where it stopped
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from diadem_ray.data.shards import list_shards, read_shard
from diadem_ray.types import Clip


def shard_key(path: str) -> str:
    """A shard's name within its root: ``bucket=<name>/<file>`` (the last two parts of its path).

    >>> shard_key("runs/a/profiled/bucket=hard/part-00000.parquet")
    'bucket=hard/part-00000.parquet'
    """
    return "/".join(path.rstrip("/").split("/")[-2:])


@dataclass(frozen=True)
class Cursor:
    epoch: int = 0
    shard_index: int = 0
    offset: int = 0

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)


class ClipStream:
    def __init__(self, root: str, buckets: Optional[Sequence[str]], *, seed: int, cursor: Optional[Dict[str, int]] = None):
        self.root = root
        self.seed = seed
        self.shards = list_shards(root, buckets)
        if not self.shards:
            raise FileNotFoundError(f"{root}: no shards for buckets {buckets}")
        self._cursor = Cursor(**(cursor or {}))
        self._rows: Optional[List[Clip]] = None

    def _order(self, epoch: int) -> List[str]:
        order = list(self.shards)
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        return order

    def _load(self) -> List[Clip]:
        if self._rows is None:
            path = self._order(self._cursor.epoch)[self._cursor.shard_index]
            rows = read_shard(path, self.root)
            random.Random(f"{self.seed}:{self._cursor.epoch}:{shard_key(path)}").shuffle(rows)
            self._rows = rows
        return self._rows

    def take(self, n: int) -> List[Clip]:
        """The next ``n`` clips (crossing shard and epoch boundaries)."""
        out: List[Clip] = []
        while len(out) < n:
            rows = self._load()
            c = self._cursor
            if c.offset >= len(rows):
                nxt = c.shard_index + 1
                self._cursor = Cursor(c.epoch + (nxt == len(self.shards)), nxt % len(self.shards), 0)
                self._rows = None
                continue
            k = min(n - len(out), len(rows) - c.offset)
            out += rows[c.offset:c.offset + k]
            self._cursor = Cursor(c.epoch, c.shard_index, c.offset + k)
        return out

    def cursor(self) -> Dict[str, int]:
        """The state to save in a checkpoint."""
        return self._cursor.to_dict()
