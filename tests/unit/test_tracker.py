"""MLflow tracking: params within MLflow's limits, tags, metrics, resume continues the same run and
knows the last step it holds."""

from __future__ import annotations

from diadem_ray.actors.tracker import MAX_PARAM_CHARS, Tracker, flatten


def test_flatten_and_limits():
    flat = flatten({"a": {"b": 1, "c": {"d": "x" * 10_000}}, "e": [1, 2], "f": {}})
    assert flat["a.b"] == "1" and flat["e"] == "[1, 2]" and flat["f"] == "{}"
    assert len(flat["a.c.d"]) == MAX_PARAM_CHARS


def test_many_params_and_resume(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = Tracker(tracking_uri=uri, experiment="t", run_name="r")
    t.log_config({f"k{i}": {"v": i} for i in range(250)})  # > 100 params: logged in chunks
    t.set_tags({"reward_hash": "abc"})
    t.log_metrics({"reward/mean": 0.5, "nan": float("nan")}, step=1)
    run_id = t.run_id
    t.end("KILLED")
    t2 = Tracker(tracking_uri=uri, experiment="t", run_name="r", resume_run_id=run_id)
    assert t2.last_step("reward/mean") == 1 and t2.last_step("never/logged") == -1
    t2.log_config({"k0": {"v": 0}})  # already there: not re-logged (MLflow refuses changed params)
    t2.log_metrics({"reward/mean": 0.7}, step=2)
    assert t2.last_step("reward/mean") == 2
    t2.end()
    import mlflow

    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    assert len(run.data.params) == 250 and run.data.tags["reward_hash"] == "abc"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "reward/mean")] == [(1, 0.5), (2, 0.7)]
    assert "nan" not in run.data.metrics
