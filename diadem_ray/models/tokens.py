"""Prompt and target tokenisation with a checkpoint's own tokenizer, for every model family."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence


class Tokens:
    """Token ids of prompts and targets (the EOS ends a target)."""

    def __init__(self, model_path: str | Path):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.eos_id = int(self.tok.eos_token_id)

    def prompt(self, text: str) -> List[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def target(self, text: str) -> List[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) + [self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=True))
