"""Environment variables for CPU worker processes (rollout replicas and learner ranks).

glibc serves every allocation above its mmap threshold (at most 32 MB when it adjusts it itself)
with a fresh ``mmap`` and returns it to the kernel on ``free``. A CPU engine that loads new
weights, or a learner that exports them or allocates a step's activations, therefore touches
hundreds of MB of new pages each time, one page fault per 4 KiB: on a 2-core box that is about
half of vLLM-CPU's in-place weight load (``bench/vllm_reload.py``). A threshold above any single
allocation keeps large blocks on the heap, where a freed block is reused by the next allocation
of its size (the previous push's weights become the next push's). The variable must be in the
environment when the process starts, so it travels in the actor's ``runtime_env``.

Example:
    >>> cpu_worker_env(True)
    {'MALLOC_MMAP_THRESHOLD_': '4294967296'}
    >>> cpu_worker_env(False)
    {}
"""

from __future__ import annotations

import os
from typing import Dict

MMAP_THRESHOLD_VAR = "MALLOC_MMAP_THRESHOLD_"
MMAP_THRESHOLD_BYTES = 4 << 30  # 4 GiB: above any one weight, activation or KV-cache block of these runs


def cpu_worker_env(reuse_freed_memory: bool) -> Dict[str, str]:
    """Variables a CPU worker process starts with. ``reuse_freed_memory``: large freed blocks stay
    in the process for reuse (``cluster.reuse_freed_memory``); a value already in the driver's
    environment wins, so a user can set their own threshold."""
    if not reuse_freed_memory:
        return {}
    return {MMAP_THRESHOLD_VAR: os.environ.get(MMAP_THRESHOLD_VAR, str(MMAP_THRESHOLD_BYTES))}
