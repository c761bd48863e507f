"""A small GRPO job on a three-node Ray cluster on one machine (``ray.cluster_utils.Cluster``),
run by ``test_multinode.py`` in its own process (it starts its own Ray): a head that offers no CPU,
a "GPU-like" node that alone offers ``diadem_gpu_node`` (learner ranks, rollout replicas), and a
CPU node that alone offers ``reward_cpu`` and ``decode_cpu`` (reward workers, decode workers).

    python tests/ray_local/multinode_job.py OUT.json WORKDIR CONFIG [--lose-gpu-node-after STAGE:STEP]
        [--lose-cpu-node-at STAGE:STEP] [overrides …]

With ``--lose-gpu-node-after``, the GPU-like node is removed right after that step ends and a new
one joins 3 s later. With ``--lose-cpu-node-at``, the CPU node is removed in the middle of that
step — after its rollouts, before its rewards — and a new one joins 3 s later: the step's reward
workers and decode workers, and the media the decode workers held, are gone. Writes ``{"nodes":
{role: node id}, "placement": {role: [node id, …]}, "placement_after": {…}, "lost_at": global
step}`` to OUT.json.
"""

import json
import sys
import time
from pathlib import Path


def main(out: str, workdir: str, config: str, args) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from diadem_ray.config import load_config
    from diadem_ray.driver import Driver
    from diadem_ray.models import qwen2_5_omni as q

    lose = lose_cpu = None
    while args and args[0] in ("--lose-gpu-node-after", "--lose-cpu-node-at"):
        stage, step = args[1].split(":")
        if args[0] == "--lose-gpu-node-after":
            lose = (stage, int(step))
        else:
            lose_cpu = (stage, int(step))
        args = args[2:]
    store = 120 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store, "include_dashboard": False}
    )
    nodes = {}
    try:
        gpu = cluster.add_node(num_cpus=2, resources={"diadem_gpu_node": 1}, object_store_memory=store)
        cpu = cluster.add_node(num_cpus=2, resources={"reward_cpu": 4, "decode_cpu": 4}, object_store_memory=store)
        cluster.wait_for_nodes()
        cluster.connect()
        nodes.update(head=cluster.head_node.node_id, gpu=gpu.node_id, cpu=cpu.node_id)
        thinker = q.build_tiny_thinker(Path(workdir) / "thinker")[0]
        cfg = load_config(config, [f"model.path={thinker}", *args])
        driver = Driver(cfg, config_dir=str(Path(config).parent))
        first: dict = {}
        if lose is not None:
            end_step = Driver._end_step

            def swap_node() -> None:
                cluster.remove_node(gpu, allow_graceful=False)
                time.sleep(3.0)
                nodes["gpu_after"] = cluster.add_node(
                    num_cpus=2, resources={"diadem_gpu_node": 1}, object_store_memory=store
                ).node_id

            def end_and_lose(self, stage, step, total, metrics, summary):
                end_step(self, stage, step, total, metrics, summary)
                if (stage, step) == lose and not first:
                    first.update(
                        placement={k: list(v) for k, v in self.res.placement.items()}, lost_at=self.state.global_step
                    )
                    print(f"removing the GPU-like node {gpu.node_id[:8]} after {stage} step {step + 1}", flush=True)
                    swap_node()  # here, on the main thread: the harness starts processes with signal handlers

            Driver._end_step = end_and_lose
        if lose_cpu is not None:
            from diadem_ray.cluster.reward_pool import RewardPool

            score = RewardPool.score

            def lose_then_score(pool, items, *, step, **kwargs):
                if (driver.state.stage, step) == lose_cpu and "cpu_after" not in nodes:
                    first.update(
                        placement={k: list(v) for k, v in driver.res.placement.items()},
                        lost_at=driver.state.global_step,
                    )
                    print(
                        f"removing the CPU node {cpu.node_id[:8]} in {driver.state.stage} step {step + 1}", flush=True
                    )
                    cluster.remove_node(cpu, allow_graceful=False)  # on the main thread, as the harness needs
                    time.sleep(3.0)
                    nodes["cpu_after"] = cluster.add_node(
                        num_cpus=2, resources={"reward_cpu": 4, "decode_cpu": 4}, object_store_memory=store
                    ).node_id
                return score(pool, items, step=step, **kwargs)

            RewardPool.score = lose_then_score
        driver.run()
        result = {
            "nodes": nodes,
            "placement": first.get("placement", driver.res.placement),
            "placement_after": driver.res.placement,
            "lost_at": first.get("lost_at"),
            "evals": driver.state.evals,
            "global_step": driver.state.global_step,
        }
        Path(out).write_text(json.dumps(result))
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
