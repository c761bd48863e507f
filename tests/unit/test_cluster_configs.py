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
    with pytest.raises(Exception, match="max_wokers"):  # the schema validator's error names the key
        validate_config(fillout_defaults(bad))


def test_rayjob_manifest(repo_root):
    job = yaml.safe_load((repo_root / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("diadem-ray train --config configs/")
    groups = {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert set(groups) == {"gpu-workers", "cpu-workers"}
    assert groups["cpu-workers"]["minReplicas"] < groups["cpu-workers"]["maxReplicas"]
    assert job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is True


def test_images_and_make_venv_share_one_install_recipe(repo_root):
    """cluster/Dockerfile builds with cluster/install.sh, the script `make venv` runs on every clean
    clone (so the CPU image installs what the tests ran on); the script refuses a bad variant."""
    import subprocess

    docker = (repo_root / "cluster" / "Dockerfile").read_text()
    make = (repo_root / "Makefile").read_text()
    assert "bash cluster/install.sh ${VARIANT} /opt/diadem/bin/python" in docker
    assert "bash cluster/install.sh cpu $(PY) --editable" in make
    assert "diadem-ray config check configs/qwen2_5_omni_7b.yaml" in docker
    for rule in ("ARG VARIANT=cpu", "COPY requirements/ requirements/", "COPY diadem_ray/ diadem_ray/"):
        assert rule in docker
    script = repo_root / "cluster" / "install.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bad = subprocess.run(["bash", str(script), "tpu", "python3"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
