"""The MLflow run of one job (owned by the driver process; plain class, no remote state).

One run per job: params are the resolved config flattened to dotted keys (MLflow keeps at most 100
params per call and 6,000 characters per value: both respected), tags carry the reward-config
names and hashes, metrics are logged per global step, artifacts are files. ``resume_run_id``
continues the same run after a restart; ``last_step`` tells the restarted driver which steps the
run already holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

MAX_PARAM_CHARS = 6000
PARAMS_PER_CALL = 100


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, str]:
    out: Dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:MAX_PARAM_CHARS]
    return out


class Tracker:
    def __init__(self, *, tracking_uri: str, experiment: str, run_name: str, resume_run_id: Optional[str] = None):
        import mlflow

        if tracking_uri.startswith("sqlite:///"):
            db = tracking_uri[len("sqlite:///") :]
            if db and not db.startswith("/"):
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        self.mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_id=resume_run_id) if resume_run_id else mlflow.start_run(run_name=run_name)
        self.run_id = self.run.info.run_id
        self.tracking_uri = tracking_uri

    def log_config(self, resolved: Mapping[str, Any]) -> None:
        items = sorted(flatten(resolved).items())
        existing = self.mlflow.get_run(self.run_id).data.params
        items = [(k, v) for k, v in items if k not in existing]  # a resumed run keeps its params
        for i in range(0, len(items), PARAMS_PER_CALL):
            self.mlflow.log_params(dict(items[i : i + PARAMS_PER_CALL]))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        clean = {k.replace("@", "_"): float(v) for k, v in metrics.items() if v == v}  # drop NaN
        if clean:
            self.mlflow.log_metrics(clean, step=step)

    def last_step(self, key: str) -> int:
        """The highest step at which this run holds metric ``key``, or -1 when it holds none."""
        client = self.mlflow.tracking.MlflowClient(self.tracking_uri)
        return max((m.step for m in client.get_metric_history(self.run_id, key)), default=-1)

    def log_artifact(self, path: str | os.PathLike, folder: Optional[str] = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=folder)

    def log_text(self, text: str, name: str) -> None:
        self.mlflow.log_text(text, name)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)
