"""cluster.reuse_freed_memory: the variable CPU workers start with, and a user's own value wins."""

from diadem_ray.cluster.worker_env import MMAP_THRESHOLD_BYTES, MMAP_THRESHOLD_VAR, cpu_worker_env
from diadem_ray.config import load_config


def test_on_by_default_off_on_request_and_a_users_threshold_wins(monkeypatch):
    monkeypatch.delenv(MMAP_THRESHOLD_VAR, raising=False)
    assert load_config(None).cluster.reuse_freed_memory is True
    assert cpu_worker_env(True) == {MMAP_THRESHOLD_VAR: str(MMAP_THRESHOLD_BYTES)}
    assert cpu_worker_env(False) == {}
    monkeypatch.setenv(MMAP_THRESHOLD_VAR, "1048576")
    assert cpu_worker_env(True) == {MMAP_THRESHOLD_VAR: "1048576"}
    assert cpu_worker_env(False) == {}
