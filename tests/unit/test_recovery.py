"""Recovery decisions without Ray: what the groups need, waiting for capacity, and the bound on
restarts (run.max_restarts) with the count and the last failure named."""

from types import SimpleNamespace

import pytest

from diadem_ray.config import load_config
from diadem_ray.driver import recovery
from diadem_ray.driver.recovery import RunFailed, group_needs, shortfall, wait_for_capacity


def test_group_needs_adds_ranks_and_replicas(repo_root):
    cfg = load_config(
        str(repo_root / "configs/demo_cpu.yaml"),
        [
            "learner.num_ranks=2",
            "learner.num_cpus_per_rank=0.5",
            "learner.custom_resources={diadem_gpu_node: 0.001}",
            "rollout.num_replicas=1",
            "rollout.num_cpus_per_replica=0.5",
            "rollout.custom_resources={diadem_gpu_node: 0.001}",
        ],
    )
    assert group_needs(cfg) == pytest.approx({"CPU": 1.5, "diadem_gpu_node": 0.003})
    assert shortfall({"CPU": 1.5, "diadem_gpu_node": 0.003}, {"CPU": 4.0}) == {"diadem_gpu_node": 0.003}
    assert shortfall({"CPU": 1.5}, {"CPU": 1.5}) == {}


def test_wait_for_capacity_says_what_it_waits_for_and_gives_up():
    said = []
    offers = iter([{}, {}, {"CPU": 1.0}, {"CPU": 2.0}])
    waited = wait_for_capacity(
        {"CPU": 2.0}, wait_s=10, available=lambda: next(offers), say=said.append, poll_s=0.0, report_s=0.0
    )
    assert waited < 10 and said and "{'CPU': 2.0} more" in said[0]
    with pytest.raises(RunFailed, match="cluster.node_wait_s"):
        wait_for_capacity({"GPU": 1.0}, wait_s=0.05, available=dict, say=said.append, poll_s=0.01)


class _Tracker:
    def __init__(self):
        self.ended = None

    def end(self, status="FINISHED"):
        self.ended = status


def _driver(repo_root, monkeypatch, losses, max_restarts):
    """A driver whose stages lose the learner group ``losses`` times before they finish."""
    from diadem_ray.cluster.learner_group import LearnerDied
    from diadem_ray.driver import Driver

    cfg = load_config(str(repo_root / "configs/demo_cpu.yaml"), [f"run.max_restarts={max_restarts}"])
    d = Driver(cfg)
    d.res.tracker = _Tracker()
    d.evaluator = SimpleNamespace(report=lambda state: None, fill_buckets=lambda state: [])
    calls = {"stages": 0, "recovered": []}

    def stages():
        calls["stages"] += 1
        if calls["stages"] <= losses:
            raise LearnerDied(0, calls["stages"], ConnectionError(f"node gone #{calls['stages']}"))

    for name in ("_prepare_data", "_start_actors", "_restored_profile", "_start_tracking"):
        monkeypatch.setattr(d, name, lambda: None)
    for name in ("start_ray", "stop"):
        monkeypatch.setattr(d.res, name, lambda: None)
    monkeypatch.setattr(d, "_run_stages", stages)
    monkeypatch.setattr(recovery, "recover", lambda drv, exc, n: calls["recovered"].append(n))
    return d, calls


def test_losses_within_max_restarts_are_recovered(repo_root, monkeypatch):
    d, calls = _driver(repo_root, monkeypatch, losses=2, max_restarts=2)
    d.run()
    assert calls["recovered"] == [1, 2] and calls["stages"] == 3 and d.res.tracker.ended == "FINISHED"


def test_one_loss_more_than_max_restarts_stops_with_the_count_and_last_failure(repo_root, monkeypatch):
    d, calls = _driver(repo_root, monkeypatch, losses=3, max_restarts=2)
    with pytest.raises(
        RunFailed, match=r"lost 3 times, more than run.max_restarts 2; last: LearnerDied: .*node gone #3"
    ):
        d.run()
    assert calls["recovered"] == [1, 2] and d.res.tracker.ended == "KILLED"
