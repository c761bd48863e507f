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


def _seeded(uri: str, kl: float, seed: int, ref: float, asr: float) -> None:
    t = Tracker(tracking_uri=uri, experiment="abl", run_name=f"kl{kl}-s{seed}")
    t.log_config({"run": {"seed": seed, "name": f"kl{kl}-s{seed}"}, "grpo": {"kl_coef": kl}, "stages": {"x": 1}})
    t.set_tags({"reward_hash": "aaaaaaaaaaaa", "reward.grpo_stage1": "ref_focus"})
    t.log_metrics({"reward/mean": 0.5, "eval/ref_f1": ref - 5, "eval/asr_f1": asr}, step=1)
    t.log_metrics({"reward/mean": 0.6, "eval/ref_f1": ref, "eval/asr_f1": asr}, step=2)
    t.end()


def test_compare_groups_seeds_and_gives_intervals_against_a_baseline(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/a.db"
    for seed, (base, new) in enumerate([(10.0, 13.0), (12.0, 14.0), (14.0, 18.0)]):
        _seeded(uri, 0.2, seed, base, 90.0)
        _seeded(uri, 0.3, seed, new, 91.0 + seed)
    png = tmp_path / "g.png"
    argv = ["compare", "--experiment", "abl", "--tracking-uri", uri, "--png", str(png)]
    assert main([*argv, "--group-by", "grpo.kl_coef", "--baseline", "kl_coef=0.2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("grpo.kl_coef=")}
    assert "(baseline)" in rows["grpo.kl_coef=0.2"] and "12.0 ± 2.0" in rows["grpo.kl_coef=0.2"]
    new = rows["grpo.kl_coef=0.3"]
    # per-seed REF differences 3, 2, 4: +3.0 [+0.5, +5.5] paired; ASR differences 1, 2, 3: +2.0 [-0.5, +4.5]
    assert "15.0 ± 2.6" in new and "+3.0 [+0.5, +5.5]" in new and "+2.0 [-0.5, +4.5]" in new and "paired n=3" in new
    assert png.stat().st_size > 10_000
    # with no key named, the differing param is found; a baseline that names nothing is refused
    assert main([*argv, "--group-by"]) == 0
    assert "groups by grpo.kl_coef;" in capsys.readouterr().out  # the reward hash is the same in every run
    assert main([*argv, "--group-by", "grpo.kl_coef", "--baseline", "kl_coef=9"]) == 1
    assert "--baseline 'kl_coef=9' matches no group" in capsys.readouterr().err
    assert main([*argv, "--baseline", "x"]) == 1 and "--baseline needs --group-by" in capsys.readouterr().err


def test_group_table_breaks_the_held_out_set_down_by_bucket(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/b.db"
    # hard-bucket REF per seed: sft_only 10, 20; two_stage 15, 27 -> differences 5, 7: +6.0 paired
    for seed, (sft, grpo) in enumerate([(10.0, 15.0), (20.0, 27.0)]):
        for arm, hard in (("sft_only", sft), ("two_stage", grpo)):
            t = Tracker(tracking_uri=uri, experiment="b", run_name=f"{arm}-s{seed}")
            t.log_config(
                {"run": {"seed": seed, "group": arm}, "stages": {"profile": {"bucket_names": ["hard", "easy"]}}}
            )
            t.log_metrics(
                {
                    "eval/ref_f1": 30.0,
                    "eval/asr_f1": 90.0,
                    "eval/hard/ref_f1": hard,
                    "eval/hard/asr_f1": 80.0,
                    "eval/easy/ref_f1": 50.0,
                    "eval/easy/asr_f1": 95.0,
                },
                step=1,
            )
            t.end()
    argv = ["compare", "--experiment", "b", "--tracking-uri", uri, "--png", str(tmp_path / "b.png")]
    assert main([*argv, "--group-by", "run.group", "--baseline", "sft_only"]) == 0
    out = capsys.readouterr().out
    hard = out.split("held-out bucket 'hard'")[1].split("held-out bucket 'easy'")[0]
    rows = {line.split()[0]: line for line in hard.splitlines() if line.startswith("run.group=")}
    assert "15.0 ± 7.1" in rows["run.group=sft_only"] and "(baseline)" in rows["run.group=sft_only"]
    assert "21.0 ± 8.5" in rows["run.group=two_stage"] and "+6.0 [" in rows["run.group=two_stage"]
    easy = out.split("held-out bucket 'easy'")[1]
    assert "+0.0" in [line for line in easy.splitlines() if line.startswith("run.group=two_stage")][0]


def test_compare_groups_only_finished_runs_of_the_seeds_asked_for(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/s.db"
    for seed, (base, new) in enumerate([(10.0, 13.0), (12.0, 14.0), (14.0, 18.0)]):
        _seeded(uri, 0.2, seed, base, 90.0)
        _seeded(uri, 0.3, seed, new, 91.0)
    t = Tracker(tracking_uri=uri, experiment="abl", run_name="kl0.3-s3")  # stopped after its first evaluation
    t.log_config({"run": {"seed": 3, "name": "kl0.3-s3"}, "grpo": {"kl_coef": 0.3}, "stages": {"x": 1}})
    t.log_metrics({"eval/ref_f1": 0.0, "eval/asr_f1": 0.0}, step=1)
    t.end("KILLED")
    argv = ["compare", "--experiment", "abl", "--tracking-uri", uri, "--png", str(tmp_path / "s.png")]
    assert main([*argv, "--group-by", "grpo.kl_coef", "--baseline", "kl_coef=0.2"]) == 0
    out = capsys.readouterr().out
    assert "left out of the groups (not FINISHED): kl0.3-s3" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("grpo.kl_coef=")}
    assert "15.0 ± 2.6" in rows["grpo.kl_coef=0.3"] and "paired n=3" in rows["grpo.kl_coef=0.3"]
    assert main([*argv, "--group-by", "grpo.kl_coef", "--baseline", "kl_coef=0.2", "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("grpo.kl_coef=")}
    # seeds 0 and 1 only: REF differences 3 and 2 -> +2.5, paired n=2
    assert "13.5 ± 0.7" in rows["grpo.kl_coef=0.3"] and "+2.5 [" in rows["grpo.kl_coef=0.3"]
    assert "paired n=2" in rows["grpo.kl_coef=0.3"] and "kl0.3-s3" not in out
    assert main([*argv, "--seeds", "7"]) == 1
    assert "no runs with run.seed in [7]" in capsys.readouterr().err
