"""cluster/*.yaml pass Ray's own launcher validation offline; the RayJob manifest is well-formed."""

from __future__ import annotations

import copy

import pytest
import yaml


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_configs_validate(repo_root, name):
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    raw = yaml.safe_load((repo_root / "cluster" / name).read_text())
    validate_config(fillout_defaults(copy.deepcopy(raw)))
    types = raw["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] > 0
    assert "reward_cpu" in types["cpu_worker"]["resources"] and "GPU" not in types["cpu_worker"]["resources"]
    assert types["cpu_worker"]["min_workers"] < types["cpu_worker"]["max_workers"]  # autoscaled
    bad = copy.deepcopy(raw)
    bad["available_node_types"]["cpu_worker"]["max_wokers"] = 3
    with pytest.raises(Exception):
        validate_config(fillout_defaults(bad))


def test_rayjob_manifest(repo_root):
    job = yaml.safe_load((repo_root / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("diadem-ray train --config configs/")
    groups = {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert set(groups) == {"gpu-workers", "cpu-workers"}
    assert groups["cpu-workers"]["minReplicas"] < groups["cpu-workers"]["maxReplicas"]
    assert job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is True
