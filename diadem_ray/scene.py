"""The vocabulary of the synthetic audiovisual world, declared once.

The synthesiser (:mod:`diadem_ray.data.synth`, :mod:`diadem_ray.data.render`) draws people and
names them from this spec; ``tiny_av``'s perception front-end
(:mod:`diadem_ray.models.tiny_av_frontend`) reads the same colours back from decoded pixels. The
front-end is therefore a perception *for this world*: it recognises these colours and shapes and
nothing else. A model family for real footage (Qwen2.5-Omni) never reads this module.

Colours are RGB ``uint8`` triples; pitch factors are resampling ratios of a Piper voice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

RGB = Tuple[int, int, int]


@dataclass(frozen=True)
class Kind:
    """One kind of person: ``sex`` (Piper voice), ``hair`` (``short``, ``long``, ``grey-short``,
    ``grey-long``) and the pitch factor around which the speaker's voice is drawn."""

    sex: str
    hair: str
    pitch: float


@dataclass(frozen=True)
class SceneVocabulary:
    """Shirt colours (a person's identity within a clip: unique per clip), skin, mouth, hair, eye and
    wall colours, and the kinds of people. Wall colours are far (L1 > 110) from skin and grey hair,
    so the front-end never mistakes a wall for a head."""

    shirts: Dict[str, RGB] = field(
        default_factory=lambda: {
            "red": (205, 40, 40),
            "blue": (40, 70, 210),
            "green": (40, 165, 60),
            "yellow": (225, 205, 40),
            "purple": (135, 50, 170),
            "orange": (245, 135, 30),
            "white": (240, 240, 240),
            "pink": (245, 140, 185),
        }
    )
    skin: RGB = (226, 180, 140)
    mouth: RGB = (110, 10, 30)
    hair_dark: RGB = (45, 32, 25)
    hair_grey: RGB = (230, 230, 230)
    eye: RGB = (20, 20, 20)
    walls: Tuple[RGB, ...] = (
        (140, 200, 200),
        (150, 185, 215),
        (180, 210, 160),
        (200, 160, 220),
        (175, 165, 215),
        (150, 170, 130),
    )
    kinds: Dict[str, Kind] = field(
        default_factory=lambda: {
            "man": Kind("male", "short", 1.0),
            "old man": Kind("male", "grey-short", 0.87),
            "woman": Kind("female", "long", 1.35),
            "old woman": Kind("female", "grey-long", 1.2),
        }
    )

    def description(self, kind: str, shirt: str, on_screen: bool) -> str:
        """How a reference dialogue names a speaker: ``the old man in blue``, ``a woman off screen``."""
        return f"the {kind} in {shirt}" if on_screen else f"a {kind.split()[-1]} off screen"


SCENE = SceneVocabulary()
