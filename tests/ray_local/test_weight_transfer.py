"""The GPU weight-sync path's CPU-testable parts: the vLLM WeightSource over a learner agrees with
its object-store export (names, dtypes, full shapes; vLLM's own iteration check), ZeRO-3 and LoRA
included; the replica client gives every replica its own NCCL rank, stamps the version, and names
a replica that misses a deadline. (The NCCL broadcast itself needs CUDA: tests/gpu.)"""

import time

import pytest
import ray

from diadem_ray.cluster.weight_sync import ReplicaSyncClient, WeightSyncTimeout
from diadem_ray.config import load_config, weight_transfer_mode
from diadem_ray.models.tiny_lm import build_tiny_lm


@pytest.mark.parametrize("stage,lora", [(3, False), (2, True)])
def test_nccl_source_matches_the_object_store_export(ray_local, tmp_path, stage, lora):
    from diadem_ray.cluster.learner_group import LearnerGroup

    model = str(build_tiny_lm(tmp_path / "m"))
    g = LearnerGroup(num_ranks=2, num_cpus_per_rank=0.5, model_path=model, zero_stage=stage, lr=1e-2, micro_batch_size=2,
                     collective_timeout_s=60, need_reference=False,
                     lora={"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj"]} if lora else None)
    try:
        metas = g.run_all("export_metadata", True, timeout=120)  # every rank; vLLM's iteration check passes
        exported = [(n, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for b in g.export_weights() for n, t in b]
        assert metas[0] == metas[1] == exported
        assert ("lm_head.weight", "float32", (512, 64)) in exported  # tied embedding pushed explicitly
        assert not any("lora" in n or "base_layer" in n for n, _, _ in exported)
    finally:
        g.shutdown()


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
    client.init_weight_transfer_engine({"master_address": "10.0.0.1", "master_port": 1234, "rank_offset": 1, "world_size": 3})
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


def test_weight_transfer_mode_resolution(repo_root):
    gpu = ["rollout.num_gpus_per_replica=1", "learner.num_gpus_per_rank=1"]
    base = str(repo_root / "configs/base.yaml")
    assert weight_transfer_mode(load_config(base)) == "object_store"  # CPU
    assert weight_transfer_mode(load_config(base, gpu)) == "nccl"
    assert weight_transfer_mode(load_config(base, gpu + ["cluster.layout=colocated"])) == "object_store"
    from diadem_ray.config import ConfigError

    with pytest.raises(ConfigError, match="cannot link a learner and an engine that share a GPU"):
        load_config(base, gpu + ["cluster.layout=colocated", "rollout.weight_transfer=nccl"])
    with pytest.raises(ConfigError, match="'nccl' needs GPUs on both sides"):
        load_config(base, ["rollout.weight_transfer=nccl"])
