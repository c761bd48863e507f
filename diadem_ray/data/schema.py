"""The clip table schema (pyarrow) and its validation; rows ↔ :class:`~diadem_ray.types.Clip`.

Example:
    >>> from diadem_ray.types import Clip, Turn
    >>> c = Clip("c1", "a.mp4", 3.0, "en", "Describe.", ("a man",), (Turn("a man", "Hi.", 0.2, 0.9),),
    ...          1, 1, True, False, False, False)
    >>> row_to_clip(clip_to_row(c)) == c
    True
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

import pyarrow as pa

from diadem_ray.types import Clip, Turn

TURN_TYPE = pa.struct([("speaker", pa.string()), ("text", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64())])
CLIP_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("video_uri", pa.string()),
    ("duration_s", pa.float64()),
    ("language", pa.string()),
    ("prompt", pa.string()),
    ("characters", pa.list_(pa.string())),
    ("dialogue", pa.list_(TURN_TYPE)),
    ("speaker_num", pa.int32()),  # 0 = overlapping speech (DiaDemBench)
    ("people_on_screen", pa.int32()),
    ("is_single_shot", pa.bool_()),
    ("has_off_screen_speaker", pa.bool_()),
    ("has_same_sex_speakers", pa.bool_()),
    ("only_opposite_sex_speakers", pa.bool_()),
    ("bucket", pa.string()),
    ("pass_rate", pa.float64()),
])
BUCKET_NAME = re.compile(r"^[A-Za-z0-9_-]*$")


def clip_to_row(clip: Clip) -> Dict[str, Any]:
    row = {f: getattr(clip, f) for f in CLIP_SCHEMA.names if f not in ("characters", "dialogue")}
    row["characters"] = list(clip.characters)
    row["dialogue"] = [{"speaker": t.speaker, "text": t.text, "start_s": t.start_s, "end_s": t.end_s} for t in clip.dialogue]
    return row


def row_to_clip(row: Dict[str, Any]) -> Clip:
    return Clip(
        clip_id=row["clip_id"], video_uri=row["video_uri"], duration_s=float(row["duration_s"]), language=row["language"],
        prompt=row["prompt"], characters=tuple(row["characters"] or ()),
        dialogue=tuple(Turn(t["speaker"], t["text"], t["start_s"], t["end_s"]) for t in (row["dialogue"] or ())),
        speaker_num=int(row["speaker_num"]), people_on_screen=int(row["people_on_screen"]),
        is_single_shot=bool(row["is_single_shot"]), has_off_screen_speaker=bool(row["has_off_screen_speaker"]),
        has_same_sex_speakers=bool(row["has_same_sex_speakers"]),
        only_opposite_sex_speakers=bool(row["only_opposite_sex_speakers"]), bucket=row["bucket"] or "",
        pass_rate=None if row["pass_rate"] is None else float(row["pass_rate"]),
    )


def validate_clip(clip: Clip) -> List[str]:
    """Every problem of one clip, each naming the clip and the field."""
    at = f"clip {clip.clip_id!r}"
    p: List[str] = []
    if not clip.clip_id:
        p.append("clip with an empty clip_id")
    if not clip.video_uri:
        p.append(f"{at}: video_uri is empty")
    if not clip.duration_s > 0:
        p.append(f"{at}: duration_s must be > 0, got {clip.duration_s}")
    if clip.speaker_num < 0 or clip.people_on_screen < 0:
        p.append(f"{at}: speaker_num and people_on_screen must be >= 0")
    if not BUCKET_NAME.match(clip.bucket):
        p.append(f"{at}: bucket {clip.bucket!r} may hold only letters, digits, '_' and '-' (it names a folder)")
    if clip.pass_rate is not None and not 0.0 <= clip.pass_rate <= 1.0:
        p.append(f"{at}: pass_rate must be in [0, 1], got {clip.pass_rate}")
    for i, t in enumerate(clip.dialogue):
        if not t.speaker.strip() or not t.text.strip():
            p.append(f"{at}: dialogue[{i}] needs a speaker and a text")
        if (t.start_s is None) != (t.end_s is None):
            p.append(f"{at}: dialogue[{i}] has only one of start_s/end_s")
        elif t.start_s is not None and t.end_s is not None and not 0.0 <= t.start_s <= t.end_s <= clip.duration_s + 1e-6:
            p.append(f"{at}: dialogue[{i}] span [{t.start_s}, {t.end_s}] is not inside [0, {clip.duration_s}]")
    return p


def annotation_of(clip: Clip) -> Dict[str, object]:
    """The DiaDemBench annotation object of a clip (for ``diadem-ray eval``)."""
    return {
        "video_id": clip.clip_id, "gt_dialogues": clip.gt_dialogues(), "speaker_num": clip.speaker_num,
        "people_num_in_screen": clip.people_on_screen, "is_single_shot": int(clip.is_single_shot),
        "has_off_screen_speaker": int(clip.has_off_screen_speaker),
        "has_same_sex_speakers": int(clip.has_same_sex_speakers),
        "only_opposite_sex_speakers": int(clip.only_opposite_sex_speakers),
    }
