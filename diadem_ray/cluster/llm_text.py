"""A picklable ``generate(prompts) -> texts`` backed by a rollout replica actor, so reward workers
can use a vLLM-served text model for the ``llm`` speaker judge and extractor."""

from __future__ import annotations

from typing import Any, List, Sequence

import ray


class ActorTextGenerator:
    """Greedy text generation through ``RolloutWorker.generate_text`` on a Ray actor."""

    def __init__(self, replica: Any, *, max_new_tokens: int = 256, timeout_s: float = 120.0):
        self.replica = replica
        self.max_new_tokens = max_new_tokens
        self.timeout_s = timeout_s

    def __call__(self, prompts: Sequence[str]) -> List[str]:
        ref = self.replica.generate_text.remote(list(prompts), max_new_tokens=self.max_new_tokens)
        return ray.get(ref, timeout=self.timeout_s)
