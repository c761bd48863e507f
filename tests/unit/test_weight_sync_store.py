"""The object store must hold two weight pushes (the engines' version, kept for a restarted
replica, and the next): otherwise every push spills the previous weights to disk first. The
warning names the setting and a size that fits; the shipped CPU configs fit SmolLM2-135M."""

from __future__ import annotations

from pathlib import Path

import pytest

from diadem_ray.cluster.weight_sync import store_too_small
from diadem_ray.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2_PUSH_BYTES = 651_306_240  # SmolLM2-135M in float32, as a push carries it (sync/bytes)


def test_a_store_below_two_pushes_is_named_with_a_size_that_fits():
    msg = store_too_small(SMOLLM2_PUSH_BYTES, 600_000_000)
    assert msg is not None and "cluster.object_store_memory_bytes" in msg and "600 MB" in msg
    wanted = int(msg.split("at least ")[1].split()[0])
    assert store_too_small(SMOLLM2_PUSH_BYTES, wanted) is None
    assert store_too_small(SMOLLM2_PUSH_BYTES, 2 * SMOLLM2_PUSH_BYTES) is None
    assert store_too_small(SMOLLM2_PUSH_BYTES, 0) is None  # Ray reports no store: nothing to say


@pytest.mark.parametrize("config", ["demo_cpu.yaml", "bench_tiny_av.yaml"])
def test_the_cpu_configs_hold_two_pushes_of_their_policy(config):
    cfg = load_config(str(ROOT / "configs" / config), [])
    assert cfg.model.family == "tiny_av" and cfg.cluster.object_store_memory_bytes
    assert store_too_small(SMOLLM2_PUSH_BYTES, cfg.cluster.object_store_memory_bytes) is None
