"""A small GRPO job on a three-node Ray cluster on one machine (``ray.cluster_utils.Cluster``),
run by ``test_multinode.py`` in its own process (it starts its own Ray): a head that offers no CPU,
a "GPU-like" node that alone offers ``diadem_gpu_node`` (learner ranks, rollout replicas), and a
CPU node that alone offers ``reward_cpu`` and ``decode_cpu`` (reward workers, Ray Data decoding).

    python tests/ray_local/multinode_job.py OUT.json WORKDIR CONFIG [overrides …]

Writes ``{"nodes": {role: node id}, "placement": {role: [node id, …]}, "rc": 0}`` to OUT.json.
"""

import json
import sys
from pathlib import Path


def main(out: str, workdir: str, config: str, overrides) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from diadem_ray.config import load_config
    from diadem_ray.driver import Driver
    from diadem_ray.models import qwen2_5_omni as q

    store = 120 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store,
                                                            "include_dashboard": False})
    try:
        gpu = cluster.add_node(num_cpus=2, resources={"diadem_gpu_node": 1}, object_store_memory=store)
        cpu = cluster.add_node(num_cpus=2, resources={"reward_cpu": 4, "decode_cpu": 4}, object_store_memory=store)
        cluster.wait_for_nodes()
        cluster.connect()
        thinker = q.build_tiny_thinker(Path(workdir) / "thinker")[0]
        cfg = load_config(config, [f"model.path={thinker}", *overrides])
        driver = Driver(cfg, config_dir=str(Path(config).parent))
        driver.run()
        result = {"rc": 0, "placement": driver.placement,
                  "nodes": {"head": cluster.head_node.node_id, "gpu": gpu.node_id, "cpu": cpu.node_id}}
        Path(out).write_text(json.dumps(result))
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
