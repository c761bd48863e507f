"""`diadem-ray train` with model.family qwen2_5_omni, end to end on CPU: synthetic clips decoded
by the decode pool, as the stages draw them, into the thinker's token ids + video/audio media that
never pass through the driver (no per-clip cache: ``data.cache`` auto is none here), SFT, difficulty
profile, both GRPO stages and evaluation through the transformers engine and a DeepSpeed learner,
with a tiny random thinker of the real architecture. The engine's and the learner's log-probs of
every GRPO rollout agree (both saw the same tokens and the same media).

The run dies after grpo_stage2's first step, which MLflow already holds and no checkpoint covers,
and is resumed: the step is replayed exactly and every step is in MLflow once, the KL reference
comes back from the checkpoint folder, the clips are decoded again (nothing was written to disk),
and finished stages are not repeated. (Resuming under a changed run.stages: tests/unit/test_driver_state.py.)"""

import json

import numpy as np
import pytest

from diadem_ray.cli import main
from diadem_ray.models import qwen2_5_omni as q


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    return q.build_tiny_thinker(tmp_path_factory.mktemp("thinker"))[0]


def test_train_runs_every_stage_with_qwen_media_and_resumes_after_a_crash(
    ray_local, repo_root, thinker, tmp_path, capsys, monkeypatch
):
    import mlflow

    from diadem_ray.driver import Driver

    # The first run dies right after grpo_stage2's first step (global step 4) is logged to MLflow;
    # the last checkpoint is grpo_stage1's (global step 3), so the resumed run replays step 4.
    lost: dict = {}
    replayed: dict = {}
    end_step = Driver._end_step

    def crash_once(self, stage, step, total, metrics, summary):
        end_step(self, stage, step, total, metrics, summary)
        if stage == "grpo_stage2" and step == 0:
            if lost:
                replayed.update(metrics)
            else:
                lost.update(metrics)
                raise RuntimeError("simulated preemption")

    monkeypatch.setattr(Driver, "_end_step", crash_once)
    db = tmp_path / "mlflow.db"
    argv = [
        "train",
        "--config",
        str(repo_root / "configs/demo_cpu.yaml"),
        "run.name=qwen-tiny",
        f"run.output_dir={tmp_path / 'runs'}",
        f"tracking.tracking_uri=sqlite:///{db}",
        "model.family=qwen2_5_omni",
        f"model.path={thinker}",
        "model.max_prompt_tokens=4096",
        "data.decode_workers=1",
        "model.max_pixels_per_frame=6272",
        f"data.root={tmp_path / 'data'}",
        "data.train_clips=3",
        "data.eval_clips=1",
        "data.frames_per_clip=16",
        "rollout.backend=hf",
        "rollout.samples_per_prompt=2",
        "rollout.max_new_tokens=6",
        "rollout.cpu_threads=1",
        "rollout.prompts_per_task=1",  # profile and eval then load media clip by clip
        "learner.num_ranks=1",
        "learner.micro_batch_size=2",  # 2 ranks with media: test_qwen_family.py
        "stages.sft.steps=2",
        "stages.sft.prompts_per_step=2",
        "stages.profile.quantiles=true",
        "stages.grpo_stage1.steps=1",
        "stages.grpo_stage1.prompts_per_step=2",
        "stages.grpo_stage2.steps=2",
        "stages.grpo_stage2.prompts_per_step=2",
        "stages.eval.max_new_tokens=6",
        "checkpoint.every_steps=2",
        "grpo.line_credit_weight=0.5",  # the per-line credit path through the reward pool (its maths: unit tests)
        "grpo.kl_coef=0.05",  # the KL reference moves to the SFT policy when GRPO begins
        "run.stages=[sft,profile,grpo_stage1,grpo_stage2,eval]",
    ]
    with pytest.raises(RuntimeError, match="simulated preemption"):
        main(argv)
    out = capsys.readouterr().out
    assert (
        "1 decode worker(s) for the qwen2_5_omni front-end; clips are decoded 1 step(s) ahead of use; no cache" in out
    )
    assert "KL reference anchored at the current policy (global step 2)" in out
    assert "grpo_stage1 done; recorded in the latest checkpoint" in out
    rc = main(argv[:3] + ["--resume"] + argv[3:])
    resumed = capsys.readouterr().out
    assert rc == 0, resumed
    # It starts where the checkpoint says, with the anchored reference, and does not repeat what was
    # recorded after it (grpo_stage1's evaluation and export).
    assert "resumed at global step 3, policy_version " in resumed and "resume:" not in resumed
    assert "MLflow holds steps 4-4 from the attempt that stopped after the last checkpoint" in resumed
    assert "stages done: sft, profile, grpo_stage1; next: grpo_stage2 step 1" in resumed
    assert "KL reference restored from" in resumed and "KL reference anchored" not in resumed
    assert "eval grpo_stage1" not in resumed and "policy after grpo_stage1" not in resumed
    assert "eval done; recorded in the latest checkpoint" in resumed
    run = tmp_path / "runs" / "qwen-tiny"
    rows = {line.split()[0]: line.split()[1:] for line in (run / "results.txt").read_text().splitlines()[1:]}
    assert list(rows) == ["untrained", "sft", "grpo_stage1", "grpo_stage2", "final"]
    assert rows["final"] == rows["grpo_stage2"] and "eval final: same policy_version as 'grpo_stage2'" in resumed

    # data.cache none: no per-clip media file anywhere under the run's folders.
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".npz", ".txt") and "features" in str(p)]

    # Engine and learner scored the GRPO rollouts alike, and SFT moved the loss.
    client = mlflow.tracking.MlflowClient(f"sqlite:///{db}")
    run_id = client.search_runs(client.get_experiment_by_name("diadem-ray").experiment_id)[0].info.run_id
    assert len(client.search_runs(client.get_experiment_by_name("diadem-ray").experiment_id)) == 1
    diffs = [m.value for m in client.get_metric_history(run_id, "learner/rollout_logprob_abs_diff")]
    assert len(diffs) == 3 and max(diffs) < 1e-3, diffs
    assert np.isfinite([m.value for m in client.get_metric_history(run_id, "learner/sft_loss")]).all()
    unmapped = [m.value for m in client.get_metric_history(run_id, "grpo/line_credit_unmapped")]
    assert unmapped == [0.0, 0.0, 0.0]  # every rollout's tokens decode to the text that was scored
    # Every step once in MLflow, logged as it ended; the lost one replayed as it ran: same clips,
    # rollouts and rewards, and the same KL, so against the restored reference (the backbone would
    # give another).
    kl = {m.step: m.value for m in client.get_metric_history(run_id, "learner/kl")}
    assert len(client.get_metric_history(run_id, "learner/kl")) == 3 and sorted(kl) == [3, 4, 5], kl
    assert len(client.get_metric_history(run_id, "eval/grpo_stage1/ref_f1")) == 1
    same = ("reward/mean", "reward/asr_f1", "rollout/response_tokens_mean")
    assert {k: replayed[k] for k in same} == {k: lost[k] for k in same}, (replayed, lost)
    assert replayed["learner/kl"] == pytest.approx(lost["learner/kl"], rel=1e-4, abs=1e-7), (replayed, lost)
    logged = {h.key: h.value for k in same for h in client.get_metric_history(run_id, k) if h.step == 4}
    assert logged == {k: lost[k] for k in same} and kl[4] == lost["learner/kl"], (logged, lost)

    # The KL reference is the policy after SFT, not the thinker the learner loaded: the first GRPO
    # step measures 0 against it; a resumed run finds it in the checkpoint folder.
    assert kl[3] == pytest.approx(0.0, abs=1e-7), kl
    ckpt = run / "checkpoints"
    assert (ckpt / "kl_reference.safetensors").is_file()
    last = json.loads((ckpt / (ckpt / "latest").read_text() / "meta.json").read_text())
    assert last["driver"]["reference"] == "kl_reference.safetensors"

    # The exported policy is the thinker, with the thinker's own config.
    meta = json.loads((run / "policy" / "diadem_policy.json").read_text())
    assert meta["family"] == "qwen2_5_omni" and meta["stage"] == "grpo_stage2"
    assert json.loads((run / "policy" / "config.json").read_text())["model_type"] == "qwen2_5_omni_thinker"
    preds = (run / "eval" / "grpo_stage2" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == 1
