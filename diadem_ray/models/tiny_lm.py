"""A tiny random Qwen2 causal LM built offline, for tests and benchmarks of the learner and the
rollout engines (vLLM's CPU attention needs ``head_dim`` ≥ 32, so 32 it is).

Example:
    >>> import tempfile
    >>> path = build_tiny_lm(tempfile.mkdtemp())
    >>> sorted(p.name for p in path.iterdir())[:1]
    ['config.json']
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_lm(out_dir: str | Path, *, vocab_size: int = 512, hidden_size: int = 64, num_layers: int = 2,
                  num_heads: int = 2, num_kv_heads: int = 1, head_dim: int = 32, tie_word_embeddings: bool = True,
                  seed: int = 0) -> Path:
    """Save a randomly initialised ``Qwen2ForCausalLM`` (about 0.1 M parameters) to ``out_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                      head_dim=head_dim, tie_word_embeddings=tie_word_embeddings, max_position_embeddings=1024,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = Qwen2ForCausalLM(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out
