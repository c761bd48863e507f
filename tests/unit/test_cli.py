import subprocess
import sys

import pytest

from diadem_ray.cli import COMMANDS, PENDING, main


def test_help_lists_every_subcommand_with_purpose():
    out = subprocess.run([sys.executable, "-m", "diadem_ray.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name, purpose in COMMANDS.items():
        assert name in out
        assert purpose.split(":")[0][:30] in out.replace("\n", " ").replace("  ", " ") or purpose[:20] in out


@pytest.mark.parametrize("name", sorted(PENDING))
def test_pending_commands_say_so_and_exit_2(name, capsys):
    assert main([name]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_config_check_cli(repo_root, capsys):
    rc = main(["config", "check", str(repo_root / "configs/base.yaml"), "learner.zero_stage=7", "rollout.samples_per_promt=4"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "learner.zero_stage: 7" in err and "did you mean 'rollout.samples_per_prompt'" in err
    assert main(["config", "check", str(repo_root / "configs/demo_cpu.yaml")]) == 0
