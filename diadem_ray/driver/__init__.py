"""The training driver (``diadem-ray train`` / ``demo`` / ``profile``), composed of named parts:

* :mod:`~diadem_ray.driver.loop`: the stage and step loop, read top to bottom (``Driver``, the one
  owner of the run's state).
* :mod:`~diadem_ray.driver.resources`: Ray, the decode pool, engines, learners, weight sync, reward
  pools and the MLflow tracker; started and stopped there.
* :mod:`~diadem_ray.driver.clips`: the run's clips (synthesised once, read from shards).
* :mod:`~diadem_ray.driver.calls`: engine and learner calls over decoded clips, media lost with a
  node decoded again.
* :mod:`~diadem_ray.driver.grpo_step`: one GRPO step, clips to weight push.
* :mod:`~diadem_ray.driver.evaluation`: held-out evaluation, policy export, the final report.
* :mod:`~diadem_ray.driver.recovery`: a lost learner/rollout group restarted from the checkpoint.
* :mod:`~diadem_ray.driver.state`: the resumable ``DriverState`` and the stage names.
"""

from diadem_ray.driver.loop import Driver
from diadem_ray.driver.state import TRAIN_STAGES, DriverState, hash_name

__all__ = ["TRAIN_STAGES", "Driver", "DriverState", "hash_name"]
