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

_CORPUS = [
    'The man in the grey coat said: "Where were you last night?"',
    'The woman with glasses replied: "At the office, I told you."',
    "Yes No Yes No yes no. Speaker pairs refer to the same person.",
    'A tall boy asks, "Can we go now?" His mother answers, "Not yet."',
    '0:01 - 0:03, the old man said: "Hello there."',
]
_SPECIALS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(out_dir: str | Path, *, vocab_size: int = 400):
    """A byte-level BPE trained offline on a few dialogue lines, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _CORPUS * 20,
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_lm(
    out_dir: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    head_dim: int = 32,
    tie_word_embeddings: bool = True,
    seed: int = 0,
    with_tokenizer: bool = False,
) -> Path:
    """Save a randomly initialised ``Qwen2ForCausalLM`` (about 0.1 M parameters) to ``out_dir``,
    optionally with a tiny tokenizer (then token ids 0–3 are its special tokens)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(  # type: ignore[call-arg]  # transformers' signature omits head_dim, which it accepts
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=head_dim,
        tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if with_tokenizer:
        tok = build_tiny_tokenizer(out, vocab_size=min(400, vocab_size))
        cfg.eos_token_id = tok.eos_token_id
        cfg.pad_token_id = tok.pad_token_id
        cfg.bos_token_id = None
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.save_pretrained(out)
    return out
