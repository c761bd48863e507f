"""The CPU node of a three-node cluster (``ray.cluster_utils.Cluster``) is removed while a reward
pool scores a step's rollouts and a decode pool decodes the next steps' clips, and a replacement
node joins: run by ``test_multinode.py`` in its own process.

    python tests/ray_local/node_loss_rewards.py OUT.json

Writes ``{"results": n, "errors": [...], "resubmitted": k, "lost": node id, "new": node id,
"nodes_after": [...], "decoded": n, "decode_errors": [...], "decode_same": bool, "decode_resubmitted": k,
"decode_nodes": [...]}`` to OUT.json.
"""

import json
import logging
import sys
import threading
import time


def main(out: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from diadem_ray.cluster.reward_pool import RewardPool
    from diadem_ray.types import Rollout, Turn

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    store = 100 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store, "include_dashboard": False}
    )
    try:
        cpu = cluster.add_node(num_cpus=2, resources={"reward_cpu": 2, "decode_cpu": 1}, object_store_memory=store)
        cluster.wait_for_nodes()
        cluster.connect()
        spec = {"name": "t", "components": [{"name": "asr_f1"}, {"name": "ref_f1"}]}
        pool = RewardPool(
            spec,
            num_workers=2,
            num_cpus_per_worker=0.5,
            batch_size=1,
            resources={"reward_cpu": 1},
            max_task_retries=3,
            node_wait_s=120.0,
            wait_log_s=2.0,
        )
        # A step's worth of captions that take a while each (one speaker, unrelated lines: about 0.2 s).
        import random

        rng = random.Random(0)
        words = lambda: " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "eps"]) for _ in range(80))  # noqa: E731
        ref = tuple(Turn("A", words()) for _ in range(20))
        caption = "\n".join(f'A: "{words()}"' for _ in range(20))
        items = [(Rollout(f"p{i}", 0, (), (1,), (-0.1,), caption, "stop", 0), ref) for i in range(60)]
        before = pool.score(items[:2], step=0)[0]
        # Clips for the decode pool (tiny_av front-end, no cache): 3 clips, each submitted 3 times.
        from diadem_ray.cluster.decode_pool import DecodePool
        from diadem_ray.data.synth import synthesize

        clips = synthesize(f"{out}.clips", 3, seed=1, workers=1, progress=False)
        decoders = DecodePool(
            num_workers=1,
            num_cpus_per_worker=0.5,
            resources={"decode_cpu": 1},
            node_wait_s=120.0,
            family="tiny_av",
            max_frames=8,
        )
        want = {c.clip_id: decoders.result(decoders.submit(c.clip_id, c.video_uri)).evidence for c in clips}
        box = {}
        runner = threading.Thread(target=lambda: box.update(zip(("scored", "stats"), pool.score(items, step=1))))
        decoding = threading.Thread(
            target=lambda: box.update(
                decoded=[
                    decoders.result(p)
                    for p in [decoders.submit(c.clip_id, c.video_uri) for _ in range(3) for c in clips]
                ]
            )
        )
        runner.start()
        decoding.start()
        time.sleep(1.0)  # mid-step
        lost = cpu.node_id
        cluster.remove_node(cpu, allow_graceful=False)
        time.sleep(3.0)
        new = cluster.add_node(num_cpus=2, resources={"reward_cpu": 2, "decode_cpu": 1}, object_store_memory=store)
        runner.join(300)
        decoding.join(300)
        decoded = box["decoded"]
        scored, stats = box["scored"], box["stats"]
        result = {
            "results": len(scored),
            "errors": sorted({s.error for s in scored if s.error}),
            "resubmitted": stats.resubmitted_batches,
            "lost": lost,
            "new": new.node_id,
            "nodes_after": pool.nodes,
            "same_reward": all(s.reward == before[0].reward for s in scored),
            "decoded": len(decoded),
            "decode_errors": sorted({d.error for d in decoded if d.error}),
            "decode_same": all(d.evidence == want[d.clip_id] for d in decoded),
            "decode_resubmitted": decoders.resubmitted,
            "decode_nodes": sorted({d.node for d in decoded}),
        }
        with open(out, "w") as fh:
            json.dump(result, fh)
        pool.shutdown()
        decoders.shutdown()
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
