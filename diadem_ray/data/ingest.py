"""``diadem-ray ingest``: existing annotations + videos → validated clips → shards.

Two annotation formats, JSONL (one object per line) or one JSON array:

* ``diadembench`` — DiaDemBench rows: ``video_id``, ``gt_dialogues`` (``"speaker: utterance"``
  lines), and the scenario attributes ``speaker_num`` (0 = overlap), ``people_num_in_screen``,
  ``is_single_shot``, ``has_off_screen_speaker``, ``has_same_sex_speakers``,
  ``only_opposite_sex_speakers``; optional ``video`` / ``video_path``, ``characters``, ``language``,
  ``prompt``. No utterance times.
* ``dvdbench`` — DVD-Bench rows: ``video``, ``character`` (descriptions of the people),
  ``dialogue`` (``[{speaker, content, time: ["MM:SS", "MM:SS"]}]``). DiaDemBench attributes it
  does not carry are derived where the rows allow (speaker count, overlap, same/opposite sex from
  the descriptions' wording) and otherwise left at a neutral value (people on screen = number of
  characters, single shot and off-screen speaker unknown → false).

A video is found from the row's own path (absolute or a URI as given, else relative to
``videos``), or for DiaDemBench rows without one as ``<videos>/<video_id>.{mp4,mkv,webm,mov,avi}``.
Its duration is read from the container (PyAV). A row that cannot be used is reported with its
line number and the reason, and skipped; every other row is kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from diadem_ray.types import Clip, Turn

FORMATS = ("diadembench", "dvdbench")
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
DEFAULT_PROMPT = "Describe the dialogue in this video: who says what, word for word."
_MALE = re.compile(r"\b(man|men|boy|male|gentleman|husband|father|dad|son|brother|he|his|him|guy|king)\b", re.I)
_FEMALE = re.compile(r"\b(woman|women|girl|female|lady|wife|mother|mom|daughter|sister|she|her|queen)\b", re.I)


@dataclass
class IngestReport:
    clips: List[Clip] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)  # "<file>:<line>: reason"


def read_rows(path: str | Path) -> List[Tuple[int, Any]]:
    """(line number, parsed object) per row of a JSONL file or a JSON array (numbered from 1).
    A file that is not UTF-8 text, or a line that is not JSON (nested too deeply, an integer of
    thousands of digits), raises ``ValueError`` naming the file and line."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{at}: not UTF-8 text (byte {exc.start}); give a JSONL or JSON annotation file") from None
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text), start=1))
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: not a valid JSON array ({_json_problem(exc)})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((n, json.loads(line)))
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({_json_problem(exc)}); one annotation object per line") from None
    return rows


def _json_problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    return str(exc).split(";")[0]


def mmss(value: Any) -> float:
    """``"MM:SS"``, ``"H:MM:SS"``, ``"SS.s"`` or a number → seconds; ``ValueError`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    parts = str(value).strip().split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"time {value!r} is not MM:SS") from None
    if not 1 <= len(nums) <= 3 or any(x < 0 for x in nums):
        raise ValueError(f"time {value!r} is not MM:SS")
    seconds = 0.0
    for x in nums:
        seconds = seconds * 60 + x
    return seconds


def _flag(row: Dict[str, Any], key: str) -> bool:
    v = row.get(key, 0)
    if v in (0, 1, True, False, "0", "1"):
        return bool(int(v))
    raise ValueError(f"{key} must be 0/1 or true/false, got {v!r}")


def _sex(description: str) -> Optional[str]:
    m, f = bool(_MALE.search(description)), bool(_FEMALE.search(description))
    return "m" if m and not f else "f" if f and not m else None


def _find_video(row: Dict[str, Any], videos: str, key_names: Sequence[str], video_id: str, exists: Callable[[str], bool]) -> str:
    given = next((row[k] for k in key_names if isinstance(row.get(k), str) and row[k].strip()), None)
    if given is not None:
        if "://" in given or Path(given).is_absolute():
            return given
        return f"{videos.rstrip('/')}/{given}" if "://" in videos else str(Path(videos) / given)
    if "://" in videos:
        return f"{videos.rstrip('/')}/{video_id}.mp4"
    for ext in VIDEO_EXTS:
        candidate = Path(videos) / f"{video_id}{ext}"
        if exists(str(candidate)):
            return str(candidate)
    raise ValueError(f"no video {video_id}{{{','.join(VIDEO_EXTS)}}} under {videos}; give the row a 'video' path or fix --videos")


def _from_diadembench(row: Dict[str, Any], videos: str, exists, duration_of, language: str) -> Clip:
    vid = row.get("video_id")
    if not isinstance(vid, str) or not vid:
        raise ValueError("video_id is missing or not a string")
    lines = row.get("gt_dialogues")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise ValueError("gt_dialogues must be a list of 'speaker: utterance' strings")
    turns = []
    for i, line in enumerate(lines):
        speaker, sep, text = line.partition(":")
        if not sep or not speaker.strip() or not text.strip():
            raise ValueError(f"gt_dialogues[{i}] {line[:60]!r} is not 'speaker: utterance'")
        turns.append(Turn(speaker.strip(), text.strip()))
    uri = _find_video(row, videos, ("video", "video_path"), vid, exists)
    return Clip(clip_id=vid, video_uri=uri, duration_s=duration_of(uri), language=str(row.get("language") or language),
                prompt=str(row.get("prompt") or DEFAULT_PROMPT), characters=tuple(str(c) for c in row.get("characters") or ()),
                dialogue=tuple(turns), speaker_num=int(row.get("speaker_num", len({t.speaker for t in turns}))),
                people_on_screen=int(row.get("people_num_in_screen", 0)), is_single_shot=_flag(row, "is_single_shot"),
                has_off_screen_speaker=_flag(row, "has_off_screen_speaker"),
                has_same_sex_speakers=_flag(row, "has_same_sex_speakers"),
                only_opposite_sex_speakers=_flag(row, "only_opposite_sex_speakers"), bucket="", pass_rate=None)


def _from_dvdbench(row: Dict[str, Any], videos: str, exists, duration_of, language: str) -> Clip:
    video = row.get("video")
    if not isinstance(video, str) or not video.strip():
        raise ValueError("video is missing or not a string")
    characters = row.get("character") or []
    if not isinstance(characters, list) or not all(isinstance(c, str) for c in characters):
        raise ValueError("character must be a list of descriptions")
    dialogue = row.get("dialogue")
    if not isinstance(dialogue, list) or not dialogue:
        raise ValueError("dialogue must be a non-empty list of {speaker, content, time}")
    turns = []
    for i, d in enumerate(dialogue):
        if not isinstance(d, dict) or not str(d.get("speaker", "")).strip() or not str(d.get("content", "")).strip():
            raise ValueError(f"dialogue[{i}] needs a speaker and a content")
        start = end = None
        time = d.get("time")
        if isinstance(time, list) and len(time) == 2 and "Unknown" not in time:
            start, end = mmss(time[0]), mmss(time[1])
            if end < start:
                raise ValueError(f"dialogue[{i}] time {time} ends before it starts")
        turns.append(Turn(str(d["speaker"]).strip(), str(d["content"]).strip(), start, end))
    uri = _find_video(row, videos, ("video",), Path(video).stem, exists)
    duration = duration_of(uri)
    timed = [(t.start_s, t.end_s) for t in turns if t.start_s is not None and t.end_s is not None]
    overlap = any(b[0] < a[1] for a, b in zip(timed, timed[1:]))
    speakers = sorted({t.speaker for t in turns})
    sexes = [_sex(s) for s in speakers]
    known = None not in sexes and len(speakers) > 1
    clip_id = row.get("video_id") or Path(video).stem
    return Clip(clip_id=str(clip_id), video_uri=uri, duration_s=duration, language=str(row.get("language") or language),
                prompt=str(row.get("prompt") or DEFAULT_PROMPT), characters=tuple(characters), dialogue=tuple(turns),
                speaker_num=0 if overlap else len(speakers), people_on_screen=len(characters), is_single_shot=False,
                has_off_screen_speaker=False, has_same_sex_speakers=known and len(set(sexes)) < len(sexes),
                only_opposite_sex_speakers=known and len(set(sexes)) == 2 and len(speakers) == 2, bucket="", pass_rate=None)


def ingest(annotations: str | Path, videos: str, *, fmt: str, language: str = "en",
           duration_of: Optional[Callable[[str], float]] = None, exists: Optional[Callable[[str], bool]] = None) -> IngestReport:
    """Clips from an annotation file (see the module docstring); problems collected per row.
    ``duration_of`` defaults to the container's duration (PyAV), ``exists`` to a local file check."""
    from diadem_ray.data.schema import validate_clip

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if duration_of is None:
        from diadem_ray.data.decode import probe

        def duration_of(uri: str) -> float:
            # Only regular files are opened: a FIFO or device would block the reader, a folder fails late.
            if "://" not in uri or uri.startswith("file://"):
                local = Path(uri.removeprefix("file://"))
                if not local.is_file():
                    raise ValueError(f"video {uri}: {'no such file' if not local.exists() else 'not a regular file'}")
            return probe(uri)
    exists = exists or (lambda p: Path(p).is_file())
    convert = _from_diadembench if fmt == "diadembench" else _from_dvdbench
    report = IngestReport()
    seen: Dict[str, int] = {}
    for n, row in read_rows(annotations):
        at = f"{annotations}:{n}"
        try:
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            clip = convert(row, videos, exists, duration_of, language)
        except Exception as exc:  # a row's problem is reported and the row skipped: nothing else is lost
            report.problems.append(f"{at}: {exc}")
            continue
        problems = validate_clip(clip)
        if clip.clip_id in seen:
            problems.append(f"clip {clip.clip_id!r}: duplicate of line {seen[clip.clip_id]}")
        if problems:
            report.problems += [f"{at}: {p}" for p in problems]
            continue
        seen[clip.clip_id] = n
        report.clips.append(clip)
    return report
