"""Clip feeds without Ray (a stand-in pool): the driver's order, the prefetch bound, failed clips
skipped with the step filled from the same buckets, resume from saved cursors; the per-clip cache's
bound and least-recently-used eviction."""

from __future__ import annotations

import os
import random

import pytest

from diadem_ray.data.clip_cache import ClipCache, cache_root
from diadem_ray.data.cursor import ClipStream
from diadem_ray.data.feed import FeedStats, ListFeed, StageFeed
from diadem_ray.data.shards import write_shards
from diadem_ray.types import Clip, EncodedClip

BROKEN = {"h3", "e1"}


def _clip(cid: str, bucket: str) -> Clip:
    return Clip(
        clip_id=cid,
        video_uri=f"/v/{cid}.mp4",
        duration_s=1.0,
        language="en",
        prompt="p",
        characters=(),
        dialogue=(),
        speaker_num=1,
        people_on_screen=1,
        is_single_shot=True,
        has_off_screen_speaker=False,
        has_same_sex_speakers=False,
        only_opposite_sex_speakers=False,
        bucket=bucket,
    )


class Pool:
    """Submits nothing anywhere: results are made when asked for; records what was submitted."""

    def __init__(self, broken=BROKEN):
        self.submitted, self.collected, self.broken = [], [], broken

    def submit(self, clip_id, uri):
        self.submitted.append(clip_id)
        return clip_id

    def result(self, clip_id):
        self.collected.append(clip_id)
        return EncodedClip(clip_id, error="cannot decode" if clip_id in self.broken else "", evidence=f"ev {clip_id}")


@pytest.fixture
def root(tmp_path):
    clips = [_clip(f"h{i}", "hard") for i in range(9)] + [_clip(f"e{i}", "easy") for i in range(5)]
    write_shards(clips, str(tmp_path / "shards"), clips_per_shard=4)
    return str(tmp_path / "shards")


def _streams(root, cursors=None):
    return {b: ClipStream(root, [b], seed=7, cursor=(cursors or {}).get(b)) for b in ("easy", "hard")}


def _reference_take(streams, weights, n, seed, stage, key, skipped=None):
    """The order the driver drew clips in before feeds existed: weighted bucket draws, next clip of
    the drawn bucket, unreadable clips skipped (and added to ``skipped``)."""
    rng = random.Random(f"{seed}:{stage}:{key}")
    names = sorted(streams)
    out = []
    while len(out) < n:
        b = rng.choices(names, weights=[weights[x] for x in names])[0]
        c = streams[b].take(1)[0]
        if c.clip_id not in BROKEN:
            out.append(c.clip_id)
        elif skipped is not None:
            skipped.add(c.clip_id)
    return out


def test_stage_feed_keeps_the_driver_order_bound_and_resume(root):
    weights = {"hard": 2.0, "easy": 1.0}
    pool, stats = Pool(), FeedStats()
    feed = StageFeed(
        pool, _streams(root), weights, seed=3, stage="grpo_stage1", per_step=3, steps=6, prefetch_steps=1, stats=stats
    )
    ref = _streams(root)
    skipped: set = set()
    feed.prefetch(0)
    assert feed.in_flight() == 6 and not pool.collected  # two steps' first rounds, nothing waited for yet
    got = []
    for step in range(4):
        taken = feed.take(3, key=step * 100)
        feed.prefetch(step + 1)
        assert feed.in_flight() <= 6 + 2  # bounded: the next steps' clips (+ what a failed draw pulled ahead)
        got.append([c.clip_id for c, _ in taken])
        assert got[-1] == _reference_take(ref, weights, 3, 3, "grpo_stage1", step * 100, skipped)
        assert all(e.evidence == f"ev {c.clip_id}" for c, e in taken)
    extra = feed.take(2, key=301)  # a refill round takes what its own draws say
    assert [c.clip_id for c, _ in extra] == _reference_take(ref, weights, 2, 3, "grpo_stage1", 301, skipped)
    assert set(stats.failed) == skipped  # the unreadable clips drawn: named and skipped
    assert all(len(ids) == 3 for ids in got)  # every step filled
    # A feed rebuilt from the saved cursors (a resumed run) continues exactly.
    resumed = StageFeed(
        Pool(),
        _streams(root, dict(feed.cursors)),
        weights,
        seed=3,
        stage="grpo_stage1",
        per_step=3,
        steps=6,
        prefetch_steps=1,
        stats=FeedStats(),
    )
    assert [c.clip_id for c, _ in resumed.take(3, key=400)] == [c.clip_id for c, _ in feed.take(3, key=400)]


def test_list_feed_groups_in_order_without_failed_clips():
    clips = [_clip(f"h{i}", "hard") for i in range(7)]
    pool, stats = Pool(), FeedStats()
    groups = list(ListFeed(pool, clips, lookahead=2, stats=stats).groups(3))
    assert [(s, [c.clip_id for c, _ in g]) for s, g in groups] == [
        (0, ["h0", "h1", "h2"]),
        (3, ["h4", "h5"]),
        (6, ["h6"]),
    ]
    assert list(stats.failed) == ["h3"] and stats.decoded == 6


def test_cache_bound_evicts_least_recently_used(tmp_path):
    cache = ClipCache(tmp_path / "c", max_bytes=250)
    for name in ("a", "b"):
        assert cache.put(name, lambda p: p.write_bytes(b"x" * 100))
    os.utime(tmp_path / "c" / "a", ns=(1, 1))  # "a" used long ago ...
    assert cache.get("b") is not None  # ... "b" just now
    assert cache.put("c", lambda p: p.write_bytes(b"y" * 100))
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")) == ["b", "c"]
    assert cache.size_bytes() <= 250 and cache.get("a") is None
    assert not cache.put("huge", lambda p: p.write_bytes(b"z" * 300))  # alone over the bound: not kept
    assert cache.size_bytes() <= 250 and not list((tmp_path / "c").glob(".huge*"))
    unbounded = ClipCache(tmp_path / "u")
    for i in range(5):
        unbounded.put(str(i), lambda p: p.write_bytes(b"x" * 100))
    assert unbounded.size_bytes() == 500


def test_cache_roots(tmp_path):
    assert cache_root("none", data_root=str(tmp_path)) == ""
    assert cache_root("shared", data_root=str(tmp_path)) == str(tmp_path / "features")
    assert cache_root("local", data_root=str(tmp_path), cache_dir="/x/y") == "/x/y"
    assert "diadem-ray-cache" in cache_root("local", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="data.cache must be one of none, local, shared"):
        cache_root("disk", data_root=str(tmp_path))


def test_cache_mode_auto(repo_root):
    from diadem_ray.config import cache_mode, load_config

    cfg = load_config(str(repo_root / "configs/demo_cpu.yaml"))
    assert cache_mode(cfg) == "shared"
    q = load_config(str(repo_root / "configs/demo_cpu.yaml"), ["model.family=qwen2_5_omni", "model.path=/m"])
    assert cache_mode(q) == "none"
    assert cache_mode(load_config(str(repo_root / "configs/demo_cpu.yaml"), ["data.cache=local"])) == "local"


def test_a_refill_round_is_decoded_ahead_and_nothing_in_vain(root):
    weights = {"hard": 1.0, "easy": 1.0}
    pool = Pool(broken=set())  # (a failed clip would pull one draw more than was submitted ahead)
    feed = StageFeed(
        pool,
        _streams(root),
        weights,
        seed=1,
        stage="grpo_stage1",
        per_step=2,
        steps=4,
        prefetch_steps=0,
        stats=FeedStats(),
    )
    feed.prefetch(0)
    first = [c.clip_id for c, _ in feed.take(2, key=0)]
    feed.prefetch(1, also=[1])  # step 0 may refill (key 1) while step 1's clips decode
    submitted = list(pool.submitted)
    refill = feed.take(2, key=1)
    assert all(c.clip_id in submitted for c, _ in refill)  # the refill round waited for nothing new
    # whatever was submitted ahead is taken by later steps (each bucket's clips in its order)
    later = [c.clip_id for k in range(1, 6) for c, _ in feed.take(2, key=k * 100)]
    assert set(submitted) <= set(first) | {c.clip_id for c, _ in refill} | set(later)


def test_local_cache_with_a_005_gb_bound_never_exceeds_it(tmp_path):
    """data.cache: local with data.cache_max_gb 0.05: 80 entries of 1 MiB written, the directory
    never holds more than the bound, and the newest entries are the ones kept."""
    root = cache_root("local", data_root=str(tmp_path), cache_dir=str(tmp_path / "local"))
    bound = int(0.05 * (1 << 30))
    cache = ClipCache(root, max_bytes=bound)
    for i in range(80):
        assert cache.put(f"c{i:02d}.npz", lambda p: p.write_bytes(b"\0" * (1 << 20)))
        assert cache.size_bytes() <= bound
    kept = sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith("."))
    assert len(kept) == bound // (1 << 20) and kept[-1] == "c79.npz" and "c00.npz" not in kept
