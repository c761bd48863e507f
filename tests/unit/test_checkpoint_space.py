"""The driver refuses to start a checkpoint the disk cannot hold, naming what is short."""

from collections import namedtuple

import pytest

from diadem_ray.driver.state import checkpoint_space_problem

pytestmark = pytest.mark.unit

Usage = namedtuple("Usage", "total used free")


def _run_with_checkpoint(tmp_path, size: int):
    root = tmp_path / "checkpoints"
    (root / "step_40").mkdir(parents=True)
    (root / "step_40" / "model.pt").write_bytes(b"x" * size)
    (root / "latest").write_text("step_40")
    return root


def test_room_for_another_checkpoint_as_large_as_the_latest_is_no_problem(tmp_path, monkeypatch):
    root = _run_with_checkpoint(tmp_path, 1000)
    monkeypatch.setattr("shutil.disk_usage", lambda p: Usage(10**6, 0, 1100))
    assert checkpoint_space_problem(root) == ""


def test_too_little_room_names_the_folder_the_sizes_and_the_way_on(tmp_path, monkeypatch):
    root = _run_with_checkpoint(tmp_path, 2 * 10**9)
    monkeypatch.setattr("shutil.disk_usage", lambda p: Usage(10**12, 0, 10**9))
    msg = checkpoint_space_problem(root)
    assert str(root) in msg and "1.0 GB free" in msg and "(step_40) takes 2.0 GB" in msg and "--resume" in msg


def test_no_checkpoint_yet_or_a_dangling_latest_is_not_checked(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.disk_usage", lambda p: Usage(1, 1, 0))
    assert checkpoint_space_problem(tmp_path / "none") == ""
    root = _run_with_checkpoint(tmp_path, 10)
    (root / "latest").write_text("step_99")
    assert checkpoint_space_problem(root) == ""
