"""The interface of a decode worker's clip encoder (one implementation per model family, made by
:meth:`diadem_ray.models.families.ModelFamily.clip_encoder`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Tuple

from diadem_ray.types import EncodedClip


class ClipEncoder(ABC):
    """Turns one decoded clip into an :class:`~diadem_ray.types.EncodedClip` with inline media, and
    reads/writes it as one cache file. A decode worker owns one."""

    @abstractmethod
    def encode(
        self, clip_id: str, frames: Any, times_s: Any, audio: Any, sample_rate_hz: int
    ) -> Tuple[EncodedClip, Any]:
        """(encoded clip without media, inline media or ``None``)."""

    @abstractmethod
    def write(self, path: Path, enc: EncodedClip, media: Any) -> None:
        """Write what :meth:`read` reads back into ``path`` exactly."""

    @abstractmethod
    def read(self, clip_id: str, path: Path) -> Tuple[EncodedClip, Any]:
        """(encoded clip, inline media or ``None``) from a cache file."""
