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


def _tiny_clip_inputs(tok, fe, seed, seconds=2, fps=2.0):
    """One synthetic clip (8 random frames of 56 x 84, a sine tone) as a tiny Qwen2.5-Omni
    thinker's ``(prompt ids, media)``; ``seconds=4, fps=1.0`` interleaves video and audio in two
    chunks."""
    import numpy as np

    from diadem_ray.models import qwen2_5_omni as q

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (8, 56, 84, 3), dtype=np.uint8)
    times = np.arange(8) * seconds / 8
    audio = (0.1 * np.sin(np.arange(16_000 * seconds) * 2 * np.pi * (180 + 40 * seed) / 16_000)).astype(np.float32)
    s = q.Settings(max_pixels=16 * 28 * 28, min_pixels=4 * 28 * 28, fps=fps)
    return q.split_inputs(
        q.build_inputs(frames, times, audio, "Who says what?", tokenizer=tok, feature_extractor=fe, s=s)
    )


@pytest.fixture(scope="session")
def tiny_clip_inputs():
    """``(tokenizer, feature_extractor, seed, seconds=2, fps=2.0) -> (prompt ids, media)`` of a
    synthetic clip for the tiny thinker of ``qwen2_5_omni.build_tiny_thinker``."""
    return _tiny_clip_inputs
