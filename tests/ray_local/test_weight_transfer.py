"""The GPU weight-sync path's CPU-testable parts: the replica client gives every replica its own
NCCL rank, stamps the version, and names a replica that misses a deadline.
(The learner's vLLM WeightSource is checked in test_learner.py; the broadcast needs CUDA: tests/gpu.)"""

import time

import pytest
import ray

from diadem_ray.cluster.weight_sync import ReplicaSyncClient, WeightSyncTimeout


@ray.remote(num_cpus=0)
class FakeReplica:
    def __init__(self, delay_s=0.0):
        self.calls, self.delay_s = [], delay_s

    def wt_init(self, info):
        self.calls.append(("init", info["rank_offset"], info["world_size"]))

    def wt_start(self, version):
        time.sleep(self.delay_s)
        self.calls.append(("start", version))

    def wt_update(self, info):
        self.calls.append(("update", len(info["names"])))

    def wt_finish(self):
        self.calls.append(("finish",))

    def log(self):
        return self.calls


def test_replica_client_ranks_versions_and_deadlines(ray_local):
    replicas = [FakeReplica.remote(), FakeReplica.remote()]
    client = ReplicaSyncClient(replicas, timeout_s=10)
    client.init_weight_transfer_engine(
        {"master_address": "10.0.0.1", "master_port": 1234, "rank_offset": 1, "world_size": 3}
    )
    client.version = 4
    client.start_weight_update()
    client.update_weights({"names": ["a", "b"], "dtype_names": ["float32"] * 2, "shapes": [[1], [2]]})
    client.finish_weight_update()
    logs = ray.get([r.log.remote() for r in replicas])
    assert logs[0] == [("init", 1, 3), ("start", 4), ("update", 2), ("finish",)]
    assert logs[1][0] == ("init", 2, 3)  # its own NCCL rank
    pair = [FakeReplica.remote(), FakeReplica.remote(delay_s=5)]
    ray.get([r.log.remote() for r in pair])  # both started: only the slow one can miss the deadline
    slow = ReplicaSyncClient(pair, timeout_s=0.5)
    slow.version = 5
    with pytest.raises(WeightSyncTimeout, match=r"replica\(s\) \[1\] did not start policy_version 5 within 0.5 s"):
        slow.start_weight_update()
