"""Fetching clip media where they are used: rollout replicas and learner ranks resolve the
:class:`~diadem_ray.types.MediaRef` records the driver passed on, straight from the object store of
the decode worker's node (the driver never fetches them).

Example:
    >>> resolve([None, {"video_frames": 0}])  # plain mappings and None pass through
    [None, {'video_frames': 0}]
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from diadem_ray.types import MediaRef


class MediaLost(RuntimeError):
    """A clip's media whose owner (a decode worker) died with its node; the clips must be decoded
    again. ``clip_ids``: the prompts that carried them, when known."""

    def __init__(self, message: str, clip_ids: Sequence[str] = ()):
        super().__init__(message)
        self.clip_ids = list(clip_ids)

    def __reduce__(self):  # the clip ids survive the trip from the actor that raised it
        return MediaLost, (str(self), self.clip_ids)


def lost_clips(exc: BaseException) -> List[str]:
    """The clip ids a :class:`MediaLost` names, also when Ray wrapped it in a ``RayTaskError``."""
    for e in (exc, getattr(exc, "cause", None)):
        if isinstance(e, MediaLost) and getattr(e, "clip_ids", None):
            return list(e.clip_ids)
    return []


def resolve(entries: Optional[Sequence[Any]]) -> Optional[List[Any]]:
    """``entries`` with every :class:`MediaRef` replaced by its media mapping, fetched in one
    ``ray.get``. Entries that share one ref share one mapping object (a group's samples are then
    expanded once, see ``families.expand_media``). Raises :class:`MediaLost` naming the clips of
    every reference whose owner is gone."""
    if entries is None:
        return None
    refs = dict.fromkeys(e.ref for e in entries if isinstance(e, MediaRef))  # distinct, in order
    if not refs:
        return list(entries)
    import ray
    from ray.exceptions import ObjectLostError, OwnerDiedError

    clip_of = {e.ref: e.clip_id for e in entries if isinstance(e, MediaRef)}
    fetched: Dict[Any, Any] = {}
    lost: List[str] = []
    try:
        fetched = dict(zip(refs, ray.get(list(refs))))
    except (OwnerDiedError, ObjectLostError):
        for key in refs:
            try:
                fetched[key] = ray.get(key)
            except (OwnerDiedError, ObjectLostError):
                lost.append(clip_of.get(key) or "?")
    if lost:
        raise MediaLost(f"media of clip(s) {', '.join(sorted(lost))} lost with the decode worker that held them", sorted(lost))
    return [fetched[e.ref] if isinstance(e, MediaRef) else e for e in entries]


def media_nbytes(media: Dict[str, Any]) -> int:
    """The bytes of a media mapping's arrays."""
    return int(sum(getattr(v, "nbytes", 0) for v in media.values()))
