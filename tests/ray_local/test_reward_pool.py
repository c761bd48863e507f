import random
import threading

import pytest

from diadem_ray.actors.reward import RewardWorker
from diadem_ray.types import Rollout, Turn

SPEC = {"name": "t", "components": [{"name": "asr_f1", "weight": 0.5}, {"name": "ref_f1", "weight": 0.5}]}


def make_items(n, seed=0):
    rng = random.Random(seed)
    words = "where were you last night at the office I waited for hours sorry".split()
    items = []
    for i in range(n):
        ref = tuple(Turn("AB"[k % 2], " ".join(rng.choice(words) for _ in range(8))) for k in range(10))
        cap = "\n".join(f'{t.speaker}: "{t.text}"' if rng.random() < 0.8 else f'{t.speaker}: "nope"' for t in ref)
        items.append((Rollout(f"p{i}", 0, (), (1,) * 40, (-0.5,) * 40, cap, "stop", 1), ref))
    return items


def test_pool_scores_in_order_like_a_direct_worker(ray_local):
    from diadem_ray.cluster.reward_pool import RewardPool

    items = make_items(100)
    pool = RewardPool(SPEC, num_workers=2, num_cpus_per_worker=0.5, batch_size=16)
    try:
        got, stats = pool.score(items, step=0)
        want = RewardWorker(SPEC).score_batch(items, step=0)
        assert [g.rollout.prompt_id for g in got] == [i[0].prompt_id for i in items]
        assert [g.reward for g in got] == [w.reward for w in want]
        assert stats.captions == 100 and not stats.failed
        assert len(pool.reward_hash) == 12
    finally:
        pool.shutdown()


def test_killed_worker_costs_no_sample(ray_local):
    import ray

    from diadem_ray.cluster.reward_pool import RewardPool

    items = make_items(3000, seed=1)
    pool = RewardPool(SPEC, num_workers=2, num_cpus_per_worker=0.5, batch_size=250, max_task_retries=3)
    try:
        ray.get([w.ping.remote() for w in pool.workers])
        killer = threading.Timer(0.3, lambda: ray.kill(pool.workers[0], no_restart=False))
        killer.start()
        got, stats = pool.score(items, step=0)
        killer.join()
        assert len(got) == len(items)
        assert [g.rollout.prompt_id for g in got] == [i[0].prompt_id for i in items]
        assert all(g.error is None for g in got), stats.failed
        assert stats.resubmitted_batches >= 1
        want = RewardWorker(SPEC).score_batch(items[:50], step=0)
        assert [g.reward for g in got[:50]] == [w.reward for w in want]
        # The restarted actor serves again.
        again, _ = pool.score(items[:10], step=1)
        assert len(again) == 10
    finally:
        pool.shutdown()


def test_a_pool_that_cannot_be_placed_says_so_instead_of_hanging(ray_local):
    from diadem_ray.cluster.reward_pool import RewardPool

    with pytest.raises(RuntimeError, match=r"reward pool 't': its 1 worker\(s\) could not start within 1 s"):
        RewardPool(SPEC, num_workers=1, num_cpus_per_worker=64, node_wait_s=1.0, wait_log_s=0.5)
