"""Recovery after losing the learner or rollout group (a GPU node gone, a rank killed): what the
groups need, waiting until the cluster offers it, and the decision to go on or stop.

The driver tears both groups down, waits up to ``cluster.node_wait_s`` for the resources (saying
so while it waits), starts them again and restores the latest checkpoint — the path a ``--resume``
takes, in the same process and MLflow run — at most ``run.max_restarts`` times.

Example:
    >>> shortfall({"CPU": 2.0, "diadem_gpu_node": 0.002}, {"CPU": 4.0})
    {'diadem_gpu_node': 0.002}
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping

from diadem_ray.config import TrainConfig


class RunFailed(RuntimeError):
    """The run cannot go on: more group losses than ``run.max_restarts``, or no capacity came back."""


def group_needs(cfg: TrainConfig) -> Dict[str, float]:
    """Resources the learner ranks and rollout replicas ask for together (Ray's resource names)."""
    out: Dict[str, float] = {}

    def add(count: int, cpus: float, gpus: float, custom: Mapping[str, float]) -> None:
        for name, amount in (("CPU", cpus), ("GPU", gpus), *dict(custom).items()):
            if amount:
                out[name] = out.get(name, 0.0) + count * float(amount)

    lr, r = cfg.learner, cfg.rollout
    add(lr.num_ranks, lr.num_cpus_per_rank, lr.num_gpus_per_rank, lr.custom_resources)
    add(r.num_replicas, r.num_cpus_per_replica, r.num_gpus_per_replica, r.custom_resources)
    return out


def shortfall(needed: Mapping[str, float], available: Mapping[str, float]) -> Dict[str, float]:
    """What ``available`` lacks of ``needed`` (empty when everything fits in the totals)."""
    return {k: round(v - available.get(k, 0.0), 6) for k, v in needed.items() if available.get(k, 0.0) + 1e-9 < v}


def wait_for_capacity(
    needed: Mapping[str, float],
    *,
    wait_s: float,
    available: Callable[[], Mapping[str, float]],
    say: Callable[[str], None],
    poll_s: float = 1.0,
    report_s: float = 10.0,
) -> float:
    """Block until ``available()`` covers ``needed``; returns the seconds waited. Says what it
    waits for every ``report_s``; raises :class:`RunFailed` after ``wait_s``."""
    start = last = time.perf_counter()
    while True:
        offered = dict(available())
        missing = shortfall(needed, offered)
        waited = time.perf_counter() - start
        if not missing:
            return waited
        if waited >= wait_s:
            raise RunFailed(
                f"no node offered {missing} more within {wait_s:.0f} s (cluster.node_wait_s); the learner "
                f"and rollout groups need {dict(needed)}"
            )
        if time.perf_counter() - last >= report_s or waited == 0.0:
            free = {k: round(v, 3) for k, v in offered.items() if k in needed}
            say(
                f"waiting for resources: the learner and rollout groups need {missing} more than the cluster has free "
                f"({free}; {waited:.0f} s of cluster.node_wait_s {wait_s:.0f} s)"
            )
            last = time.perf_counter()
        time.sleep(poll_s)


def group_lost_errors() -> tuple:
    """Exceptions that mean the learner or rollout group lost an actor."""
    import ray

    from diadem_ray.cluster.learner_group import LearnerDied
    from diadem_ray.cluster.rollout_group import ReplicasLost

    return (LearnerDied, ReplicasLost, ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)


def describe_loss(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def recover(driver: Any, exc: BaseException, restarts: int) -> None:
    """Tear the groups down, wait for capacity, start them again from the latest checkpoint."""
    import ray

    from diadem_ray.driver.state import STEP_METRIC, DriverState, say

    cfg = driver.cfg
    t0 = time.perf_counter()
    say(
        f"lost the learner/rollout group ({describe_loss(exc)}); restart {restarts} of run.max_restarts "
        f"{cfg.run.max_restarts}: stopping both groups"
    )
    driver.res.stop_groups()
    waited = wait_for_capacity(
        group_needs(cfg), wait_s=cfg.cluster.node_wait_s, available=ray.available_resources, say=say
    )
    if (driver.ckpt_dir / "latest").is_file():
        driver.resume = True
    else:  # nothing saved yet: start over (same seeds, so the same steps), in the same MLflow run
        driver.state = DriverState(mlflow_run_id=driver.state.mlflow_run_id)
        driver.resume = False
    if driver.res.tracker is not None:  # steps MLflow already holds are replayed, not logged again
        driver._logged_through = max(driver._logged_through, driver.res.tracker.last_step(STEP_METRIC))
    driver._start_actors()
    driver._restored_profile()
    say(
        f"recovered in {time.perf_counter() - t0:.0f} s (waited {waited:.0f} s for resources); going on from "
        f"global step {driver.state.global_step}"
    )
