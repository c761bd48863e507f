"""The training driver (``diadem-ray train`` / ``demo`` / ``profile``), split by responsibility:

* :mod:`~diadem_ray.driver.loop`: the stage and step loop, read top to bottom (``Driver``).
* :mod:`~diadem_ray.driver.startup`: Ray, clips, engines, learners, MLflow run, reward pools; stop.
* :mod:`~diadem_ray.driver.evaluation`: held-out evaluation, policy export, the final report.
* :mod:`~diadem_ray.driver.state`: the resumable ``DriverState`` and the stage names.
"""

from diadem_ray.driver.loop import Driver
from diadem_ray.driver.state import TRAIN_STAGES, DriverState, hash_name

__all__ = ["Driver", "DriverState", "TRAIN_STAGES", "hash_name"]
