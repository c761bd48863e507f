"""Clip feeds: the clips a stage consumes, in the driver's order, decoded ahead of use on the
decode pool (:mod:`diadem_ray.cluster.decode_pool`).

The order is the driver's, never the workers': :class:`StageFeed` draws buckets with the stage's
weights from ``Random(f"{seed}:{stage}:{key}")`` (``key`` = step × 100 + refill round) and takes the
next clip of the drawn bucket's :class:`~diadem_ray.data.cursor.ClipStream`. Because those draws are
a function of the seed alone, the feed knows which clips the next ``prefetch_steps`` steps will take
and submits them before they are needed; a resumed run, rebuilt from the saved cursors, takes
exactly the clips the uninterrupted one would have. A clip that fails to decode is skipped (named
in the log, counted) and its draw is followed by the next one, so the step is filled from the same
weighted buckets. What is in flight is bounded: the clips of ``prefetch_steps + 1`` steps, plus
one refill round of dynamic sampling (decoded while the round before it is scored).

:class:`ListFeed` does the same for a fixed list (evaluation, profiling): groups of clips, the next
``lookahead`` clips in flight.

Example:
    >>> # feed = StageFeed(pool, streams, {"hard": 1.0}, seed=0, stage="grpo_stage1", per_step=4, steps=10,
    >>> #                  prefetch_steps=1, stats=FeedStats())
    >>> # feed.prefetch(0); clips = feed.take(4, key=0)   # [(Clip, EncodedClip), ...]
"""

from __future__ import annotations

import collections
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Sequence, Tuple

from diadem_ray.types import Clip, EncodedClip

log = logging.getLogger(__name__)

Taken = Tuple[Clip, EncodedClip]


@dataclass
class FeedStats:
    """Counters over a run's feeds (MLflow ``data/*``); ``wait_s`` is reset by the reader."""

    decoded: int = 0
    cached: int = 0
    failed: Dict[str, str] = field(default_factory=dict)  # clip_id -> reason
    wait_s: float = 0.0
    decode_s: float = 0.0
    nodes: Dict[str, int] = field(default_factory=dict)  # node id -> clips its workers made

    def count(self, enc: EncodedClip) -> None:
        if enc.node:
            self.nodes[enc.node] = self.nodes.get(enc.node, 0) + 1
        if enc.error:
            if enc.clip_id not in self.failed:
                log.warning("clip %s skipped: %s", enc.clip_id, enc.error)
            self.failed[enc.clip_id] = enc.error
            return
        self.cached += enc.cached
        self.decoded += not enc.cached
        self.decode_s += enc.seconds

    def metrics(self) -> Dict[str, float]:
        return {"data/clips_decoded": float(self.decoded), "data/clips_cached": float(self.cached),
                "data/clips_failed": float(len(self.failed)), "data/decode_s": self.decode_s}

    def take_wait(self) -> float:
        """Seconds waited for clips since the last call."""
        w, self.wait_s = self.wait_s, 0.0
        return w


def bucket_draws(seed: int, stage: str, key: int, weights: Dict[str, float]) -> Iterator[str]:
    """The buckets a take draws from, in order (an endless, reproducible sequence)."""
    rng = random.Random(f"{seed}:{stage}:{key}")
    names = sorted(weights)
    w = [weights[x] for x in names]
    while True:
        yield rng.choices(names, weights=w)[0]


def _result(pool: Any, pending: Any, stats: FeedStats) -> EncodedClip:
    t0 = time.perf_counter()
    enc: EncodedClip = pool.result(pending)
    stats.wait_s += time.perf_counter() - t0
    stats.count(enc)
    return enc


class StageFeed:
    """One training stage's clips (see the module docstring). ``streams``: bucket → ClipStream at
    the saved cursor; :attr:`cursors` holds, per bucket, the cursor after the last clip taken.
    A step's first take uses ``key = step * key_stride`` (refill round ``r``: ``+ r``)."""

    def __init__(self, pool: Any, streams: Dict[str, Any], weights: Dict[str, float], *, seed: int, stage: str,
                 per_step: int, steps: int, prefetch_steps: int, stats: FeedStats, key_stride: int = 100):
        self.pool, self.streams, self.weights, self.key_stride = pool, streams, dict(weights), key_stride
        self.seed, self.stage, self.per_step, self.steps = seed, stage, per_step, steps
        self.prefetch_steps, self.stats = max(0, prefetch_steps), stats
        self.ahead: Dict[str, Deque[Tuple[Clip, Dict[str, int], Any]]] = {b: collections.deque() for b in streams}
        self.cursors: Dict[str, Dict[str, int]] = {b: s.cursor() for b, s in streams.items()}

    def _submit(self, bucket: str) -> None:
        stream = self.streams[bucket]
        clip = stream.take(1)[0]
        self.ahead[bucket].append((clip, stream.cursor(), self.pool.submit(clip.clip_id, clip.video_uri)))

    def prefetch(self, step: int, also: Sequence[int] = ()) -> None:
        """Submit the clips that steps ``step`` … ``step + prefetch_steps`` take in their first round,
        and ``per_step`` draws for each key in ``also`` (a refill round that may come: its draws are
        known, only whether it happens is not; clips submitted for it that it does not take are the
        next ones of their bucket, which later steps take, so nothing is decoded in vain)."""
        need: collections.Counter[str] = collections.Counter()
        keys = [s * self.key_stride for s in range(step, min(step + self.prefetch_steps + 1, self.steps))]
        for key in [*keys, *also]:
            draws = bucket_draws(self.seed, self.stage, key, self.weights)
            need.update(next(draws) for _ in range(self.per_step))
        for b, n in need.items():
            while len(self.ahead[b]) < n:
                self._submit(b)

    def in_flight(self) -> int:
        return sum(len(q) for q in self.ahead.values())

    def take(self, n: int, key: int) -> List[Taken]:
        """``n`` decoded clips, drawn bucket by bucket as ``key`` says; failed clips are skipped."""
        out: List[Taken] = []
        draws = bucket_draws(self.seed, self.stage, key, self.weights)
        failed_in_a_row = 0
        while len(out) < n:
            b = next(draws)
            if not self.ahead[b]:
                self._submit(b)
            clip, cursor, pending = self.ahead[b].popleft()
            enc = _result(self.pool, pending, self.stats)
            self.cursors[b] = cursor
            if enc.error:
                failed_in_a_row += 1
                if failed_in_a_row > 1000:
                    raise RuntimeError(f"{self.stage}: 1000 clips in a row failed to decode (last {clip.clip_id}: "
                                       f"{enc.error}); check the shards' video URIs")
                continue
            failed_in_a_row = 0
            out.append((clip, enc))
        return out


class ListFeed:
    """A fixed list of clips in order, ``lookahead`` of them in flight."""

    def __init__(self, pool: Any, clips: Sequence[Clip], *, lookahead: int, stats: FeedStats):
        self.pool, self.clips, self.lookahead, self.stats = pool, list(clips), max(1, lookahead), stats

    def groups(self, size: int) -> Iterator[Tuple[int, List[Taken]]]:
        """``(index of the group's first clip in the list, group)`` for consecutive groups of
        ``size`` clips (failed clips left out, so a group may be smaller)."""
        pending: Deque[Tuple[Clip, Any]] = collections.deque()
        nxt = 0
        group: List[Taken] = []
        for i in range(len(self.clips)):
            while nxt < len(self.clips) and nxt < i + max(self.lookahead, size):
                c = self.clips[nxt]
                pending.append((c, self.pool.submit(c.clip_id, c.video_uri)))
                nxt += 1
            clip, p = pending.popleft()
            enc = _result(self.pool, p, self.stats)
            if not enc.error:
                group.append((clip, enc))
            if (i + 1) % size == 0 or i + 1 == len(self.clips):
                if group:
                    yield i - i % size, group
                group = []

