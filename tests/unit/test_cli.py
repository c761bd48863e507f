import subprocess
import sys

from diadem_ray.cli import COMMANDS, main


def test_help_lists_every_subcommand_with_purpose():
    out = subprocess.run(
        [sys.executable, "-m", "diadem_ray.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name, purpose in COMMANDS.items():
        assert name in out
        assert purpose.split(":")[0][:30] in out.replace("\n", " ").replace("  ", " ") or purpose[:20] in out


def test_profile_and_serve_refuse_a_checkpoint_that_is_no_policy(repo_root, tmp_path, capsys):
    (tmp_path / "checkpoints" / "step_2").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest").write_text("step_2")
    cfg = str(repo_root / "configs/demo_cpu.yaml")
    assert main(["profile", "--config", cfg, "--checkpoint", str(tmp_path / "checkpoints")]) == 1
    assert "DeepSpeed training checkpoint (for --resume), not a servable policy" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path / "nope")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_config_check_cli(repo_root, capsys):
    rc = main(
        ["config", "check", str(repo_root / "configs/base.yaml"), "learner.zero_stage=7", "rollout.samples_per_promt=4"]
    )
    err = capsys.readouterr().err
    assert rc != 0
    assert "learner.zero_stage: 7" in err and "did you mean 'rollout.samples_per_prompt'" in err
    assert main(["config", "check", str(repo_root / "configs/demo_cpu.yaml")]) == 0


def test_config_check_refuses_line_credit_with_a_prose_reward(repo_root, tmp_path, capsys):
    prose = tmp_path / "prose_f1.yaml"
    prose.write_text("name: prose_f1\nextractor: prose\ncomponents:\n  - {name: ref_f1, weight: 1.0}\n")
    demo = str(repo_root / "configs/demo_cpu.yaml")
    args = ["config", "check", demo, f"stages.grpo_stage1.reward={prose}", f"stages.grpo_stage2.reward={prose}"]
    assert main(args + ["grpo.line_credit_weight=0"]) == 0
    capsys.readouterr()
    assert main(args + ["grpo.line_credit_weight=0.5"]) == 1
    err = capsys.readouterr().err
    assert "reward 'prose_f1'.extractor: grpo.line_credit_weight > 0 needs extractor: structured" in err
