"""The caption form every model family is trained to write, and the structured extractor parses:
one attributed quote per line, ``the woman in red: "Where were you?"``."""

from __future__ import annotations

from typing import Sequence

from diadem_ray.types import Turn


def caption_of(turns: Sequence[Turn]) -> str:
    """``turns`` as a caption (also the SFT target of a clip whose reference dialogue they are)."""
    return "\n".join(f'{t.speaker}: "{t.text}"' for t in turns)
