"""Test tiers: tests/unit (marker unit, no Ray), tests/ray_local (marker ray), tests/gpu (marker
gpu, skipped without CUDA). Markers are applied from the folder, so a test cannot land in the
wrong tier silently."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds the plain reference implementation the parity tests compare against.
sys.path.insert(0, str(ROOT / "bench"))

_TIERS = {"unit": "unit", "ray_local": "ray", "gpu": "gpu"}


def pytest_collection_modifyitems(config, items):
    cuda = None
    for item in items:
        tier = _TIERS.get(Path(str(item.fspath)).parent.name)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "gpu":
            if cuda is None:
                try:
                    import torch

                    cuda = torch.cuda.is_available()
                except Exception:
                    cuda = False
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture
def repo_root() -> Path:
    return ROOT
