"""`diadem-ray compare`: runs grouped by reward hash, table and PNG from a real MLflow store."""

from __future__ import annotations

from diadem_ray.actors.tracker import Tracker
from diadem_ray.cli import main


def _run(uri: str, name: str, reward: str, h: str, ref: list) -> None:
    t = Tracker(tracking_uri=uri, experiment="cmp", run_name=name)
    t.set_tags({"reward_hash": h, "reward.grpo_stage1": reward, "reward.grpo_stage2": reward})
    for step, v in enumerate(ref, start=1):
        t.log_metrics({"reward/mean": v / 100, "eval/ref_f1": v, "eval/asr_f1": v + 10}, step=step)
    t.end()


def test_compare_groups_runs_and_draws(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/m.db"
    _run(uri, "seed0-f1", "diadem_f1", "aaaaaaaaaaaa", [10, 30, 20])
    _run(uri, "seed0-cpwer", "cpwer", "bbbbbbbbbbbb", [5, 15])
    png = tmp_path / "c.png"
    assert main(["compare", "--experiment", "cmp", "--tracking-uri", uri, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith(("aaaa", "bbbb"))]
    assert len(lines) == 2
    assert "20.0 / 30.0" in lines[0] and "30.0 / 40.0" in lines[0]  # final, best
    assert "cpwer" in lines[1] and "15.0 / 25.0" in lines[1]
    assert png.stat().st_size > 10_000
    assert main(["compare", "--experiment", "nope", "--tracking-uri", uri]) == 1
    assert "no experiment 'nope'" in capsys.readouterr().err
