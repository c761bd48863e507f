"""A local text LLM as a ``generate(prompts) -> texts`` callable (greedy), for the ``llm``
extractor and speaker judge outside a training run (``diadem-ray eval --judge-model DIR``).

In training the same callables are backed by a vLLM actor group instead.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional


def local_generate(
    model_dir: str, *, max_new_tokens: int = 512, max_model_len: Optional[int] = None
) -> Callable[[List[str]], List[str]]:
    """Load ``model_dir`` into an in-process vLLM engine and return a greedy chat generator
    (``max_model_len`` None: the model's own limit)."""
    import os

    import torch
    from vllm import LLM, SamplingParams

    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    llm = LLM(
        model=model_dir,
        dtype="bfloat16" if torch.cuda.is_available() else "float32",
        enforce_eager=not torch.cuda.is_available(),
        max_model_len=max_model_len,
    )
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)

    def generate(prompts: List[str]) -> List[str]:
        chats: Any = [[{"role": "user", "content": p}] for p in prompts]
        outs = llm.chat(chats, params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    return generate
