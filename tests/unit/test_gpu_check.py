"""The GPU check's kit and its CPU dry run (bench/gpu_kit.py, bench/gpu_check.py): the kit fits in
what a device run carries, and without CUDA the check installs the kit, then stops at the first
CUDA question with a clear message, exit code 2 and its lines written to --out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gpu_check
import gpu_kit
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "kit"
    gpu_kit.build_kit(out)
    return out


def test_the_kit_and_the_tracked_tree_fit_in_one_device_run(kit):
    files = gpu_kit.sizes(kit)
    assert any(n.startswith("wheels/deepspeed-") for n in files) and any(
        n.startswith("wheels/transformers-5.19") for n in files
    )
    assert any(n.startswith("wheels/diadem_ray-") for n in files) and "smollm2/config.json" in files
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((ROOT / p.decode()).stat().st_size for p in tracked if p and (ROOT / p.decode()).is_file())
    assert sum(files.values()) + tree <= gpu_kit.LIMIT_BYTES, (
        f"kit {sum(files.values()) / 2**20:.1f} MiB + tree {tree / 2**20:.1f} MiB"
    )


def test_the_cpu_dry_run_installs_the_kit_and_stops_at_cuda(kit, tmp_path):
    out = tmp_path / "o" / "gpu_check.txt"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/gpu_check.py"),
            "--kit",
            str(kit),
            "--target",
            str(tmp_path / "site"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("PASS install: ") and "built for another Python left out" in lines[0]
    assert lines[1].startswith("FAIL cuda: no CUDA") and lines[2] == "1 passed, 1 failed"
    assert (tmp_path / "site" / "deepspeed").is_dir() and (tmp_path / "site" / "diadem_ray").is_dir()


def test_the_parent_reports_a_check_that_crashes_or_hangs(tmp_path, monkeypatch):
    """A check's process that dies without a result, or outlives its timeout, is one FAIL line."""
    args = type("A", (), {"device": "cpu", "work": str(tmp_path), "kit": str(tmp_path), "check_timeout_s": 60.0})()
    ok, detail, _ = gpu_check.run_check("no-such-check", args, gpu_check.child_env(None))
    assert not ok and detail.startswith("exit 1: ") and "no-such-check" in detail
    monkeypatch.setattr(gpu_check, "__file__", str(tmp_path / "sleep.py"))
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(30)\n")
    args.check_timeout_s = 1.0
    assert gpu_check.run_check("any", args, gpu_check.child_env(None))[:2] == (False, "no answer within 1 s")
