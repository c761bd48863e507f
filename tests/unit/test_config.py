from pathlib import Path

import pytest

from diadem_ray.config import (
    ConfigError,
    TrainConfig,
    load_config,
    load_reward_spec,
    save_resolved,
    weight_transfer_mode,
)
from diadem_ray.rewards.compose import check_spec

ROOT = Path(__file__).resolve().parents[2]
MAIN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))
REWARD_CONFIGS = sorted((ROOT / "configs" / "rewards").glob("*.yaml"))


def test_configs_exist():
    names = {p.name for p in MAIN_CONFIGS}
    assert {"base.yaml", "demo_cpu.yaml", "qwen2_5_omni_7b.yaml"} <= names
    assert len(REWARD_CONFIGS) >= 3


@pytest.mark.parametrize("path", MAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    cfg = load_config(path)
    for stage in ("profile", "grpo_stage1", "grpo_stage2", "eval"):
        spec = load_reward_spec(cfg.stages[stage].reward, [ROOT / "configs" / "rewards"])
        assert check_spec(spec) == []


@pytest.mark.parametrize("path", REWARD_CONFIGS, ids=lambda p: p.name)
def test_every_reward_config_checks(path):
    spec = load_reward_spec(str(path))
    assert spec.name == path.stem
    assert check_spec(spec) == []


def test_overlay_applies_over_base():
    cfg = load_config(ROOT / "configs" / "demo_cpu.yaml")
    assert cfg.run.name == "demo-cpu"  # overlay
    assert cfg.grpo.clip_eps_high == 0.28  # from base
    assert cfg.stages.grpo_stage2.buckets == {"easy": 1.0, "medium": 1.0, "hard": 1.0}  # a YAML mapping replaces


def test_bad_value_and_misspelt_key_reported_together():
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs" / "base.yaml", ["learner.zero_stage=7", "rollout.samples_per_promt=4"])
    msg = str(err.value)
    assert "learner.zero_stage: 7 is not one of 0, 1, 2, 3" in msg
    assert "rollout.samples_per_promt" in msg and "did you mean 'rollout.samples_per_prompt'" in msg
    assert len(err.value.problems) == 2


def test_type_error_and_cross_field_errors_all_reported():
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            [
                "learner.lr=fast",
                "rollout.samples_per_prompt=1",
                "grpo.dual_clip_c=0.5",
                "run.stages=[eval,sft]",
                "tracking.tracking_uri=file:///tmp/mlruns",
                "oops",
            ],
        )
    problems = err.value.problems
    assert any(p.startswith("learner.lr") and "'fast'" in p for p in problems)
    assert any("samples_per_prompt" in p and "at least 2" in p for p in problems)
    assert any("dual_clip_c" in p for p in problems)
    assert any("out of order" in p for p in problems)
    assert any("file store" in p for p in problems)
    assert any("override 'oops'" in p for p in problems)


def test_grpo_knobs_that_would_do_nothing_or_harm_are_refused():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["grpo.kl_in_reward=true", "grpo.kl_coef=0.1", "grpo.line_credit_weight=-0.5"])
    problems = err.value.problems
    assert any(p.startswith("grpo.kl_in_reward") and "not supported" in p for p in problems)
    assert any(p.startswith("grpo.line_credit_weight") for p in problems)
    assert len(problems) == 2
    assert load_config(None, ["grpo.line_credit_weight=0.5"]).grpo.line_credit_weight == 0.5


def test_nucleus_sampling_is_refused_for_grpo_rollouts_only():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["rollout.top_p=0.9"])
    assert [p for p in err.value.problems if p.startswith("rollout.top_p")] == [
        "rollout.top_p: 0.9 samples GRPO rollouts from a renormalised nucleus that the learner does not score "
        "(biased updates); set rollout.top_p: 1.0 and use rollout.temperature to sharpen sampling"
    ]
    assert load_config(None, ["rollout.top_p=0.9", "run.stages=[sft,profile,eval]"]).rollout.top_p == 0.9
    assert load_config(None, ["rollout.temperature=0.7"]).rollout.temperature == 0.7


def test_kl_after_sft_with_lora_under_zero3_is_refused_before_anything_runs():
    lora_kl = ["learner.lora.enabled=true", "learner.zero_stage=3", "grpo.kl_coef=0.01"]
    with pytest.raises(ConfigError) as err:
        load_config(None, lora_kl)
    assert [p for p in err.value.problems if p.startswith("grpo.kl_coef")] == [
        "grpo.kl_coef: a KL term after SFT in the same run anchors the reference at the SFT adapter, which LoRA under "
        "ZeRO-3 cannot do; use learner.zero_stage <= 2, grpo.kl_coef=0, or run SFT as its own job and start GRPO from "
        "its exported policy (model.path)"
    ]
    assert load_config(None, lora_kl + ["run.stages=[profile,grpo_stage1,eval]"]).grpo.kl_coef == 0.01
    assert load_config(None, lora_kl[:1] + lora_kl[2:]).learner.zero_stage == 2


def test_unknown_key_in_yaml_names_file(tmp_path):
    (tmp_path / "x.yaml").write_text("learner:\n  zero_stag: 3\nrolout: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "x.yaml")
    msg = str(err.value)
    assert "learner.zero_stag (in " in msg and "did you mean 'learner.zero_stage'" in msg
    assert "rolout" in msg and "did you mean 'rollout'" in msg


def test_invalid_yaml_reported(tmp_path):
    (tmp_path / "bad.yaml").write_text("learner: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_dotlist_sets_single_mapping_key_yaml_replaces(tmp_path):
    cfg = load_config(None, ["stages.grpo_stage1.buckets.hard=2"])
    assert dict(cfg.stages.grpo_stage1.buckets) == {"medium": 1.0, "hard": 2.0}
    (tmp_path / "o.yaml").write_text("stages:\n  grpo_stage1:\n    buckets: {hard: 1.0}\n")
    cfg = load_config(tmp_path / "o.yaml")
    assert dict(cfg.stages.grpo_stage1.buckets) == {"hard": 1.0}


def test_a_bucket_weight_of_zero_leaves_the_bucket_out_but_not_every_bucket(capsys):
    # how an overlay drops a bucket of the base config's mapping
    cfg = load_config(None, ["stages.grpo_stage1.buckets.hard=1", "stages.grpo_stage1.buckets.medium=0"])
    assert dict(cfg.stages.grpo_stage1.buckets) == {"medium": 0.0, "hard": 1.0}
    with pytest.raises(ConfigError, match="grpo_stage1.buckets: every weight is 0"):
        load_config(None, ["stages.grpo_stage1.buckets={medium: 0, hard: 0}"])
    with pytest.raises(ConfigError, match=r"buckets.hard: must be >= 0, got -1"):
        load_config(None, ["stages.grpo_stage1.buckets.hard=-1"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs" / "demo_cpu.yaml", ["learner.zero_stage=3"])
    out = save_resolved(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(out)
    assert again == cfg
    assert isinstance(again, type(cfg)) or hasattr(again, "learner")
    assert TrainConfig  # schema importable


def test_reward_spec_errors():
    with pytest.raises(ConfigError, match="no reward YAML found"):
        load_reward_spec("does_not_exist", [ROOT / "configs" / "rewards"])


def test_reward_spec_unknown_component_and_param(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "name: r\ncomponents:\n  - {name: asr_f11}\n  - {name: length_penalty, params: {max_tokenz: 3}}\n"
        "  - {name: wer, enable_step: 5, disable_step: 2}\n"
    )
    problems = check_spec(load_reward_spec(str(tmp_path / "r.yaml")))
    assert any("did you mean 'asr_f1'" in p for p in problems)
    assert any("max_tokenz" in p for p in problems)
    assert any("disable_step" in p for p in problems)


def test_weight_transfer_mode_resolution(repo_root):
    gpu = ["rollout.num_gpus_per_replica=1", "learner.num_gpus_per_rank=1"]
    base = str(repo_root / "configs/base.yaml")
    assert weight_transfer_mode(load_config(base)) == "object_store"  # CPU
    assert weight_transfer_mode(load_config(base, gpu)) == "nccl"
    assert weight_transfer_mode(load_config(base, gpu + ["cluster.layout=colocated"])) == "object_store"
    with pytest.raises(ConfigError, match="cannot link a learner and an engine that share a GPU"):
        load_config(base, gpu + ["cluster.layout=colocated", "rollout.weight_transfer=nccl"])
    with pytest.raises(ConfigError, match="'nccl' needs GPUs on both sides"):
        load_config(base, ["rollout.weight_transfer=nccl"])


def test_qwen_family_needs_a_checkpoint_and_a_pixel_budget():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.family=qwen2_5_omni", "model.max_pixels_per_frame=100"])
    problems = err.value.problems
    assert any(p.startswith("model.path") for p in problems)
    assert any(p.startswith("model.max_pixels_per_frame") for p in problems)
    assert not any(
        p.startswith("rollout.backend") for p in problems
    )  # vLLM and transformers engines both take its media
    for backend in ("vllm", "hf"):
        cfg = load_config(None, ["model.family=qwen2_5_omni", f"rollout.backend={backend}", "model.path=/models/omni"])
        assert cfg.model.max_pixels_per_frame == 512 * 28 * 28 and cfg.model.video_fps == 2.0


def test_a_local_cluster_must_hold_every_actor_of_the_run(repo_root, capsys):
    from diadem_ray.cli import main
    from diadem_ray.config import load_config, local_cpu_problems

    def problems(name, overrides=()):
        return local_cpu_problems(load_config(repo_root / "configs" / f"{name}.yaml", list(overrides)))

    for name in ("demo_cpu", "bench_tiny_av"):
        assert problems(name) == []  # each fits its 2 CPUs, with a second reward pool
    one_pool = ["stages.grpo_stage1.reward=diadem_f1", "stages.grpo_stage2.reward=diadem_f1"]
    assert problems("demo_cpu", one_pool) == []
    (problem,) = problems("demo_cpu", ["reward.num_cpus_per_worker=0.5"])
    assert "ask for 2.75 CPUs" in problem and "reward pools (ref_focus, diadem_f1) 1" in problem
    (problem,) = problems("demo_cpu", ["reward.num_cpus_per_worker=0.5", *one_pool])
    assert "ask for 2.25 CPUs" in problem and "reward pools (diadem_f1) 0.5" in problem
    assert problems("demo_cpu", ["reward.num_cpus_per_worker=0.5", "cluster.local_num_cpus=3"]) == []
    # train and config check refuse it; commands that start none of these actors (annotate) load it
    demo = str(repo_root / "configs/demo_cpu.yaml")
    assert main(["train", "--config", demo, "reward.num_cpus_per_worker=0.5"]) == 1
    assert main(["config", "check", demo, "reward.num_cpus_per_worker=0.5"]) == 1
    assert capsys.readouterr().err.count("ask for 2.75 CPUs") == 2
    load_config(repo_root / "configs/base.yaml", ["cluster.local_num_cpus=2"])


ABLATION_ARMS = sorted((ROOT / "configs" / "ablations").glob("*.yaml"))


@pytest.mark.parametrize("base_config", ["bench_tiny_av.yaml", "demo_cpu.yaml"])
@pytest.mark.parametrize("path", ABLATION_ARMS, ids=lambda p: p.name)
def test_every_ablation_arm_is_a_valid_overlay_of_the_bench_and_demo_configs(path, base_config):
    import importlib.util

    from diadem_ray.config import local_cpu_problems

    spec = importlib.util.spec_from_file_location("ablation", ROOT / "bench" / "ablation.py")
    assert spec is not None and spec.loader is not None
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    overrides = ablation.overlay(path) + ["stages.profile.held_out=true"]
    cfg = load_config(ROOT / "configs" / base_config, overrides)
    assert local_cpu_problems(cfg) == []
    assert cfg.run.stages[:2] == ["sft", "profile"] and cfg.run.stages[-1] == "eval"
    base = load_config(ROOT / "configs" / base_config)

    grpo = ("grpo_stage1", "grpo_stage2")

    def schedule(c):
        return [(c.stages[s].steps, c.stages[s].prompts_per_step, c.stages[s].lr, c.stages[s].reward) for s in grpo]

    if path.stem == "sft_only":
        assert not any(s.startswith("grpo") for s in cfg.run.stages)
    else:  # the GRPO arms differ from the recipe only in which buckets each stage draws from
        assert [s for s in cfg.run.stages if s.startswith("grpo")] == list(grpo)
        assert schedule(cfg) == schedule(base) and cfg.grpo == base.grpo
        # each arm draws the same buckets whatever the base config says
        order = {"two_stage": ("medium", "hard"), "reversed": ("hard", "medium"), "one_stage": (None, None)}[path.stem]
        for stage, main_bucket in zip(grpo, order):
            buckets = cfg.stages[stage].buckets
            if main_bucket is None:
                assert buckets == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
            else:
                assert buckets[main_bucket] == 1.0 and max(buckets, key=lambda b: buckets[b]) == main_bucket
                assert buckets.get("easy", 0.0) == 0.0  # a zero weight leaves the bucket out


def test_the_ablation_runner_tells_finished_runs_and_drops_only_their_checkpoints(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablation", ROOT / "bench" / "ablation.py")
    assert spec is not None and spec.loader is not None
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    run = tmp_path / "abl-s0-two_stage"
    (run / "checkpoints" / "step_50").mkdir(parents=True)
    (run / "policy").mkdir()
    assert not ablation.finished(run)  # a branch that has not ended has no table of its own
    (run / "results.txt").write_text("policy REF ASR\nsft 20.0 90.0\n")
    assert not ablation.finished(run)
    (run / "results.txt").write_text("policy REF ASR\nsft 20.0 90.0\nfinal 25.0 90.0 +5.0 / +0.0\n")
    assert ablation.finished(run)
    ablation.drop_checkpoints(run)
    assert not (run / "checkpoints").exists() and (run / "policy").is_dir() and (run / "results.txt").is_file()
