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


def resolve(entries: Optional[Sequence[Any]], names: Optional[Sequence[str]] = None) -> Optional[List[Any]]:
    """``entries`` with every :class:`MediaRef` replaced by its media mapping, fetched in one
    ``ray.get``. Entries that share one ref share one mapping object (a group's samples are then
    expanded once, see ``families.expand_media``). ``names`` (one per entry) label a lost object."""
    if entries is None:
        return None
    refs: Dict[Any, Any] = {}
    for e in entries:
        if isinstance(e, MediaRef):
            refs.setdefault(e.ref, None)
    if not refs:
        return list(entries)
    import ray
    from ray.exceptions import ObjectLostError, OwnerDiedError

    keys = list(refs)
    try:
        values = ray.get(keys)
    except (OwnerDiedError, ObjectLostError) as exc:
        lost = sorted({n for e, n in zip(entries, names or [""] * len(entries)) if isinstance(e, MediaRef) and n})
        raise MediaLost(f"clip media lost with the decode worker that held them ({type(exc).__name__}); "
                        f"clips: {', '.join(lost) or 'unknown'}", lost) from None
    fetched = dict(zip(keys, values))
    return [fetched[e.ref] if isinstance(e, MediaRef) else e for e in entries]


def media_nbytes(media: Dict[str, Any]) -> int:
    """The bytes of a media mapping's arrays."""
    return int(sum(getattr(v, "nbytes", 0) for v in media.values()))
