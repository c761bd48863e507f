"""Resuming under a changed config: the restored driver state is fitted to run.stages and the
stages' step counts before the loop runs (driver/state.py `reconcile`)."""

import pytest

from diadem_ray.driver.state import DriverState, reconcile

ALL = ["sft", "profile", "grpo_stage1", "grpo_stage2", "eval"]
STEPS = {"sft": 48, "grpo_stage1": 10, "grpo_stage2": 10}
EVALS = {"untrained": {"ref_f1": 0.0}, "sft": {"ref_f1": 47.1}, "final": {"ref_f1": 47.1}}


def sft_run() -> DriverState:
    """The state an ``[sft, eval]`` run records when it has finished."""
    return DriverState(
        stage="eval",
        done_stages=["sft", "eval"],
        global_step=48,
        steps_done={"sft": 48},
        evals={k: dict(v) for k, v in EVALS.items()},
    )


def test_a_stage_done_before_stages_now_listed_ahead_of_it_runs_again():
    st = sft_run()
    notes = reconcile(st, stages=ALL, steps=STEPS)
    assert st.done_stages == ["sft"] and sorted(st.evals) == ["sft", "untrained"]  # no stale "final" score
    assert notes == ["eval ran before profile, which run.stages now puts first: it runs again"]
    assert reconcile(st, stages=ALL, steps=STEPS) == []  # nothing left to fit


def test_the_same_config_changes_nothing():
    st = sft_run()
    assert reconcile(st, stages=["sft", "eval"], steps={"sft": 48}) == []
    assert st == sft_run()
    mid = DriverState(
        stage="grpo_stage1", stage_step=4, done_stages=["sft", "profile"], steps_done={"sft": 48, "grpo_stage1": 4}
    )
    assert reconcile(mid, stages=ALL, steps=STEPS) == [] and mid.stage_step == 4


def test_the_last_stage_that_trained_continues_with_more_steps_and_what_followed_runs_again():
    st = sft_run()
    notes = reconcile(st, stages=["sft", "eval"], steps={"sft": 64})
    assert (st.stage, st.stage_step, st.done_stages) == ("sft", 48, [])
    assert sorted(st.evals) == ["untrained"]
    assert notes == [
        "sft finished after 48 steps and stages.sft.steps is now 64: it continues at step 49; eval run again after it"
    ]
    two = DriverState(
        stage="eval",
        done_stages=ALL[:],
        steps_done={"sft": 48, "grpo_stage1": 10, "grpo_stage2": 10},
        evals={"sft": {}, "grpo_stage1": {}, "grpo_stage2": {}, "final": {}},
    )
    reconcile(two, stages=ALL, steps=dict(STEPS, grpo_stage2=20))
    assert (two.stage, two.stage_step) == ("grpo_stage2", 10)
    assert two.done_stages == ["sft", "profile", "grpo_stage1"] and sorted(two.evals) == ["grpo_stage1", "sft"]


def test_a_stage_another_trained_on_top_of_cannot_grow():
    mid = DriverState(
        stage="grpo_stage1", stage_step=4, done_stages=["sft", "profile"], steps_done={"sft": 48, "grpo_stage1": 4}
    )
    with pytest.raises(
        ValueError,
        match=r"stages.sft.steps is 64, .* finished after 48 steps and grpo_stage1 trained on top "
        r"of it; resume with stages.sft.steps=48",
    ):
        reconcile(mid, stages=ALL, steps=dict(STEPS, sft=64))


def test_a_checkpoint_without_step_counts_is_taken_as_it_is():
    """Checkpoints written before ``steps_done`` existed: the stage in progress continues as before."""
    old = DriverState(stage="sft", stage_step=48, done_stages=[], evals={"untrained": {}})
    assert reconcile(old, stages=ALL, steps=dict(STEPS, sft=64)) == []
    assert (old.stage, old.stage_step, old.done_stages) == ("sft", 48, [])


def test_train_resume_refuses_a_config_its_checkpoint_cannot_continue_before_anything_starts(
    repo_root, tmp_path, capsys
):
    import json
    from dataclasses import asdict

    from diadem_ray.cli import main

    ckpt = tmp_path / "runs" / "r" / "checkpoints"
    (ckpt / "step_52").mkdir(parents=True)
    mid = DriverState(
        stage="grpo_stage1",
        stage_step=4,
        global_step=52,
        done_stages=["sft", "profile"],
        steps_done={"sft": 48, "grpo_stage1": 4},
    )
    (ckpt / "step_52" / "meta.json").write_text(json.dumps({"driver": asdict(mid), "learner_step": 52}))
    (ckpt / "latest").write_text("step_52")
    rc = main(
        [
            "train",
            "--config",
            str(repo_root / "configs/demo_cpu.yaml"),
            "--resume",
            "run.name=r",
            f"run.output_dir={tmp_path / 'runs'}",
            "stages.sft.steps=64",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "error: --resume: stages.sft.steps is 64, but this checkpoint's sft finished after 48 steps" in err, err
    assert "resume with stages.sft.steps=48" in err


class _Learners:
    """The learner group's resume calls, recorded (the checkpoint's metadata given)."""

    def __init__(self, driver_state: DriverState):
        from dataclasses import asdict

        self.meta = {"driver": asdict(driver_state), "learner_step": driver_state.global_step}
        self.calls = []

    def load_checkpoint(self, path):
        self.calls.append(("load_checkpoint", path))
        return self.meta

    def load_reference(self, path):
        self.calls.append(("load_reference", path))


class _Sync:
    def __init__(self, rollouts):
        self.rollouts, self.pushed_over = rollouts, []

    def push(self, version=None):
        version = self.rollouts.version + 1 if version is None else version
        self.pushed_over.append(self.rollouts.version)
        self.rollouts.version = version
        return {"sync/policy_version": float(version)}


def _restored(repo_root, state, *overrides):
    from types import SimpleNamespace

    from diadem_ray.config import load_config
    from diadem_ray.driver import Driver

    base = ["run.output_dir=/r", "run.name=n", "stages.sft.steps=2", "stages.grpo_stage1.steps=1"]
    d = Driver(load_config(repo_root / "configs/demo_cpu.yaml", base + list(overrides)), resume=True)
    d.res.learners, d.res.rollouts = _Learners(state), SimpleNamespace(version=0)
    d.res.sync = _Sync(d.res.rollouts)
    d._restore()
    return d


def test_restore_fits_the_checkpoint_to_the_config_reloads_the_reference_and_says_where_it_goes_on(repo_root, capsys):
    """The driver's resume path (startup ``_restore``): a finished ``[sft, profile, grpo_stage1,
    eval]`` run resumed with grpo_stage2 added drops its stale final score, reloads its anchored KL
    reference, pushes the restored weights as the checkpoint's policy_version, and says so."""
    done = DriverState(
        stage="eval",
        done_stages=["sft", "profile", "grpo_stage1", "eval"],
        global_step=3,
        policy_version=2,
        reference="kl_reference.safetensors",
        steps_done={"sft": 2, "grpo_stage1": 1},
        evals={"untrained": {}, "sft": {}, "grpo_stage1": {}, "final": {}},
    )
    d = _restored(repo_root, done, "grpo.kl_coef=0.05")
    out = capsys.readouterr().out
    assert d.res.learners.calls == [
        ("load_checkpoint", "/r/n/checkpoints"),
        ("load_reference", "/r/n/checkpoints/kl_reference.safetensors"),
    ]
    assert (
        d.res.sync.pushed_over == [0] and d.res.rollouts.version == 2
    )  # the engines' weights become policy_version 2 again
    assert d.state.done_stages == ["sft", "profile", "grpo_stage1"] and "final" not in d.state.evals
    assert "resume: eval ran before grpo_stage2, which run.stages now puts first: it runs again" in out
    assert "KL reference restored from /r/n/checkpoints/kl_reference.safetensors" in out
    assert (
        "resumed at global step 3, policy_version 2; stages done: sft, profile, grpo_stage1; next: grpo_stage2 step 1"
        in out
    )

    # Without a KL term the reference is not loaded; a run with nothing left says so.
    d = _restored(repo_root, done, "grpo.kl_coef=0.0", "run.stages=[sft,profile,grpo_stage1,eval]")
    out = capsys.readouterr().out
    assert (
        [c[0] for c in d.res.learners.calls] == ["load_checkpoint"]
        and "KL reference" not in out
        and "resume:" not in out
    )
    assert "stages done: sft, profile, grpo_stage1, eval; nothing left to run" in out
    # A checkpoint taken at the end of a stage's steps, before its evaluation ran.
    mid = DriverState(stage="sft", stage_step=2, global_step=2, policy_version=3, steps_done={"sft": 2})
    assert "next: the evaluation after sft" in (_restored(repo_root, mid), capsys.readouterr().out)[1]
