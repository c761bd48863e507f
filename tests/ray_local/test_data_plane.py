"""The streaming data plane (decode pool + clip feeds) with the qwen2_5_omni family and a tiny
random thinker: media are put in the object store by the decode workers (their owner is not the
driver) and reach a rollout replica and a learner rank as references; a clip that fails to decode
is skipped and its step filled from the same bucket; the feed's order is the driver's (a feed
rebuilt from the saved cursors takes the clips the first one would have); the per-clip cache is
off (``none``: nothing written) or bounded."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from diadem_ray.models import qwen2_5_omni as q
from diadem_ray.types import Prompt

SETTINGS = {"max_frames": 8, "max_pixels": 6272, "fps": 2.0, "sample_rate_hz": 16000}


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    return q.build_tiny_thinker(tmp_path_factory.mktemp("thinker"))[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Five clips in bucket ``hard`` (the second one unreadable) and two in ``easy``."""
    from diadem_ray.data.shards import write_shards
    from diadem_ray.data.synth import synthesize

    tmp = tmp_path_factory.mktemp("clips")
    clips = synthesize(tmp / "syn", 6, seed=3, workers=1, progress=False)
    bad = tmp / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    hard = [replace(c, bucket="hard") for c in clips[:4]]
    hard.insert(1, replace(clips[0], clip_id="broken", video_uri=str(bad), bucket="hard"))
    write_shards(hard + [replace(c, bucket="easy") for c in clips[4:]], str(tmp / "shards"))
    return str(tmp / "shards")


def _pool(thinker, cache_dir="", cache_max_bytes=0):
    from diadem_ray.cluster.decode_pool import DecodePool

    return DecodePool(
        num_workers=1,
        num_cpus_per_worker=0.25,
        node_wait_s=60,
        family="qwen2_5_omni",
        model_path=str(thinker),
        max_frames=8,
        sample_rate_hz=16000,
        options=SETTINGS,
        cache_dir=cache_dir,
        cache_max_bytes=cache_max_bytes,
    )


def _kill_owner(pool, refs) -> None:
    """The pool's decode worker dies (Ray restarts it), and this process learns that the media it
    owned are gone (the news reaches a borrower within seconds; wait for it, 60 s at most)."""
    import time

    import ray

    from diadem_ray.data.media_refs import MediaLost, resolve
    from diadem_ray.types import MediaRef

    ray.kill(pool.workers[0], no_restart=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            resolve([MediaRef(r, 0, "probe") for r in refs])
        except MediaLost:
            return
        time.sleep(0.5)
    raise AssertionError("the killed decode worker's media were still readable after 60 s")


def _owner(ref) -> str:
    from ray.core.generated.common_pb2 import Address

    a = Address()
    a.ParseFromString(ref.owner_address())
    return a.worker_id.hex()


def test_media_owned_by_decode_workers_reach_replica_and_learner(ray_local, thinker, shards, tmp_path):
    import ray

    from diadem_ray.actors.rollout import RolloutWorker
    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.data.cursor import ClipStream
    from diadem_ray.data.feed import FeedStats, StageFeed
    from diadem_ray.types import MediaRef

    pool = _pool(thinker)
    try:
        stats = FeedStats()
        # a stream seed whose order puts the unreadable clip among the first two, so the first take meets it
        seed = next(
            s for s in range(100) if [c.clip_id for c in ClipStream(shards, ["hard"], seed=s).take(2)].count("broken")
        )

        def feed(cursors=None):
            streams = {b: ClipStream(shards, [b], seed=seed, cursor=(cursors or {}).get(b)) for b in ("easy", "hard")}
            return StageFeed(
                pool,
                streams,
                {"hard": 1.0, "easy": 1e-9},
                seed=0,
                stage="grpo_stage1",
                per_step=2,
                steps=3,
                prefetch_steps=1,
                stats=stats,
            )

        f = feed()
        f.prefetch(0)
        assert f.in_flight() == 4  # steps 0 and 1: two clips each, bounded ahead of use
        taken = f.take(2, key=0)
        order = [c.clip_id for c in ClipStream(shards, ["hard"], seed=seed).take(5)]
        want = [c for c in order if c != "broken"][:2]
        assert [c.clip_id for c, _ in taken] == want  # the stream's order, the broken clip skipped
        assert list(stats.failed) == ["broken"] and "broken.mp4" in stats.failed["broken"]
        # the step was filled: two decoded clips, from the same (only drawn) bucket
        assert len(taken) == 2 and all(c.bucket == "hard" for c, _ in taken)
        # A feed rebuilt from the saved cursors takes what the first one takes next.
        resumed = feed(dict(f.cursors))
        assert [c.clip_id for c, _ in resumed.take(2, key=100)] == [c.clip_id for c, _ in f.take(2, key=100)]

        enc = taken[0][1]
        assert isinstance(enc.media, MediaRef) and enc.media.nbytes > 0 and enc.prompt_token_ids
        driver = ray.get_runtime_context().get_worker_id()
        assert _owner(enc.media.ref) != driver  # put by the decode worker, not by this process
        inline = ray.get(enc.media.ref)
        prompt = Prompt(f"{enc.clip_id}#t", enc.prompt_token_ids, enc.clip_id, enc.media)

        # A replica fetches the media from the reference (and an equal inline prompt samples the same).
        replica = (
            ray.remote(RolloutWorker)
            .options(num_cpus=0.25)
            .remote(model_path=str(thinker), backend="hf", family="qwen2_5_omni")
        )
        ray.get(replica.setup.remote())
        by_ref = ray.get(replica.generate.remote([prompt], samples_per_prompt=2, max_new_tokens=4, seed=1))
        by_value = ray.get(
            replica.generate.remote([replace(prompt, media=inline)], samples_per_prompt=2, max_new_tokens=4, seed=1)
        )
        assert [r.logprobs for r in by_ref] == [r.logprobs for r in by_value]
        ray.kill(replica)

        # A learner rank does too: the references score as the media themselves.
        ids = [list(enc.prompt_token_ids)] * 2
        resp = [list(r.token_ids) or [1] for r in by_ref]
        g = LearnerGroup(
            num_ranks=1,
            num_cpus_per_rank=0.25,
            model_path=str(thinker),
            family="qwen2_5_omni",
            zero_stage=0,
            lr=1e-3,
            micro_batch_size=2,
            need_reference=False,
        )
        try:
            lp_ref = g.compute_logprobs(ids, resp, media=[enc.media, enc.media])
            lp_val = g.compute_logprobs(ids, resp, media=[inline, inline])
            assert lp_ref == lp_val
            blind = g.compute_logprobs(ids, resp)
            assert max(abs(a - b) for x, y in zip(blind, lp_ref) for a, b in zip(x, y)) > 1e-4
        finally:
            g.shutdown()
    finally:
        pool.shutdown()


def test_cache_none_writes_nothing_and_a_bounded_cache_stays_under_its_bound(ray_local, thinker, shards, tmp_path):
    import ray

    from diadem_ray.data.cursor import ClipStream

    clips = [c for c in ClipStream(shards, ["hard", "easy"], seed=0).take(6) if c.clip_id != "broken"]
    bound = 4_000_000  # an entry is ~1.6 MB (Whisper features [1, 128, 3000] float32 + frames)
    pool = _pool(thinker, cache_dir=str(tmp_path / "cache"), cache_max_bytes=bound)
    try:
        first = [pool.result(pool.submit(c.clip_id, c.video_uri)) for c in clips]
        assert not any(e.error for e in first) and not any(e.cached for e in first)
        files = list((tmp_path / "cache").glob("*.npz"))
        assert files and sum(f.stat().st_size for f in files) <= bound
        assert len(files) < len(clips)  # the bound evicted the least recently used entries
        again = pool.result(pool.submit(clips[-1].clip_id, clips[-1].video_uri))  # the newest entry is kept
        assert again.cached and again.prompt_token_ids == first[-1].prompt_token_ids
        a, b = ray.get(again.media.ref), ray.get(first[-1].media.ref)
        assert all(np.array_equal(a[k], b[k]) for k in a if isinstance(a[k], np.ndarray))
        # an entry: token ids with the placeholders expanded, and compact media
        ids, media = q.load_inputs(sorted(files, key=lambda f: f.stat().st_mtime_ns)[-1])
        frames = media["video_frames"]  # resized uint8 frames, patchified where the model runs
        assert frames.dtype == np.uint8 and frames.ndim == 4 and media["input_features"].shape == (1, 128, 3000)
        assert "pixel_values_videos" not in media and media["use_audio_in_video"] is True
        from transformers import AutoTokenizer

        video_id = AutoTokenizer.from_pretrained(str(thinker)).convert_tokens_to_ids(q.TOKENS["video"])
        assert ids.count(video_id) == int(media["video_grid_thw"].prod()) // 4  # one token per 2x2 merged patch
    finally:
        pool.shutdown()
    none = _pool(thinker)  # data.cache: none
    try:
        before = {p for p in tmp_path.rglob("*")}
        assert not none.result(none.submit(clips[0].clip_id, clips[0].video_uri)).error
        assert {p for p in tmp_path.rglob("*")} == before
    finally:
        none.shutdown()


def test_media_lost_with_their_worker_are_decoded_again(ray_local, thinker, shards, capsys):
    """A decode worker that dies takes the media it owns with it: fetching them names the clips
    (MediaLost), and the driver's rollout and learner calls decode those clips again on the
    restarted worker and go on; the learner group finds the loss before any rank starts the step."""
    import ray

    from diadem_ray.actors.rollout import _fetch_media
    from diadem_ray.data.cursor import ClipStream
    from diadem_ray.data.media_refs import MediaLost, resolve
    from diadem_ray.driver.calls import ClipCalls
    from diadem_ray.models.families import get_family

    clips = [c for c in ClipStream(shards, ["easy"], seed=0).take(2)]
    pool = _pool(thinker)
    try:
        taken = [(c, pool.result(pool.submit(c.clip_id, c.video_uri))) for c in clips]
        _kill_owner(pool, [e.media.ref for _, e in taken])  # the owner dies; Ray restarts the actor
        with pytest.raises(MediaLost) as lost:
            resolve([taken[0][1].media])
        assert lost.value.clip_ids == [clips[0].clip_id]

        @ray.remote(num_cpus=0)
        def replica(prompts):  # what a rollout replica does first with its prompts
            return [len(p.media["video_frames"]) for p in _fetch_media(prompts)]

        class Rollouts:
            calls = 0

            def generate(self, prompts, **kwargs):
                Rollouts.calls += 1
                return ray.get(replica.remote(prompts)), {}

        res = SimpleNamespace(family=get_family("qwen2_5_omni"), tokens=None, decoders=pool, rollouts=Rollouts())
        calls = ClipCalls(
            SimpleNamespace(model=SimpleNamespace(max_prompt_tokens=100_000)), res, {c.clip_id: c for c in clips}
        )
        prompts, (frames, _) = calls.roll(taken, ["a", "b"])
        assert Rollouts.calls == 2 and all(n > 0 for n in frames)  # failed once, then ran on media decoded again
        assert "media of 2 clip(s) lost with their decode worker; decoded again" in capsys.readouterr().out
        assert all(_owner(p.media.ref) != ray.get_runtime_context().get_worker_id() for p in prompts)

        from diadem_ray.cluster.learner_group import LearnerGroup

        g = LearnerGroup(
            num_ranks=1,
            num_cpus_per_rank=0.25,
            model_path=str(thinker),
            family="qwen2_5_omni",
            zero_stage=0,
            lr=1e-3,
            micro_batch_size=2,
            need_reference=False,
        )
        try:
            _kill_owner(pool, [p.media.ref for p in prompts])  # the media the prompts refer to are lost again
            ids, resp = [list(p.prompt_token_ids) for p in prompts], [[1, 2], [3]]
            with pytest.raises(MediaLost, match=clips[0].clip_id):
                g.sft_step(ids, resp, media=[p.media for p in prompts])
            assert g.step == 0  # no rank started the step
            m = calls.learn(lambda media: g.sft_step(ids, resp, media=media), prompts)
            assert np.isfinite(m["learner/sft_loss"]) and g.step == 1
            assert "media of 2 clip(s) lost with their decode worker; decoded again" in capsys.readouterr().out
        finally:
            g.shutdown()
    finally:
        pool.shutdown()
