"""DiaDemBench-style evaluation of prediction files: input checking, scoring, breakdown tables.

Inputs are JSON Lines. Annotations: ``video_id`` (string), ``gt_dialogues`` (list of
``"speaker: utterance"``), ``speaker_num`` (0 = overlap), ``people_num_in_screen``,
``is_single_shot``, ``has_off_screen_speaker``, ``has_same_sex_speakers``,
``only_opposite_sex_speakers``. Predictions: ``video_id`` plus ``pred`` (a caption, run through
the extractor) or ``pred_dialogues`` (lines, used as given).

Bad input never stops the run: a bad line becomes an input problem naming the file and line, a
clip that cannot be scored becomes a per-sample ``error``; both are counted and reported.

Example:
    >>> ann = [{"video_id": "v1", "gt_dialogues": ["A: hi there"], "speaker_num": 1,
    ...         "people_num_in_screen": 1, "is_single_shot": 1, "has_off_screen_speaker": 0,
    ...         "has_same_sex_speakers": 0, "only_opposite_sex_speakers": 0}]
    >>> res = evaluate(ann, [{"video_id": "v1", "pred_dialogues": ["A: hi there"]}])
    >>> res.overall.table_cell()
    '100.0 / 100.0'
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from diadem_ray.rewards.extract import turns_to_lines
from diadem_ray.rewards.metrics import ClipScore, SpeakerJudge, Totals, score_dialogue
from diadem_ray.types import Turn

ANNOTATION_FIELDS: Dict[str, Tuple[type, ...]] = {
    "video_id": (str,),
    "gt_dialogues": (list,),
    "speaker_num": (int,),
    "people_num_in_screen": (int,),
    "is_single_shot": (int, bool),
    "has_off_screen_speaker": (int, bool),
    "has_same_sex_speakers": (int, bool),
    "only_opposite_sex_speakers": (int, bool),
}

#: (title, category key, buckets) in DiaDemBench's print order
TABLES: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ("Speaker Num", "speaker_num", ("All", "N=1", "N=2", "N>=3", "Overlap")),
    ("People Num", "people_num", ("All", "N=1", "N=2", "N>=3")),
    ("Off-screen Spk", "has_off_screen_speaker", ("All", "Yes", "No")),
    ("Have Same Sex Spk", "has_same_sex_speakers", ("All", "Yes", "No")),
    ("Only Opposite Sex Spk", "only_opposite_sex_speakers", ("All", "Yes", "No")),
)


@dataclass
class EvalResult:
    """Per-sample rows, totals per (shot, category, bucket), and every problem met."""

    rows: List[Dict[str, Any]] = field(default_factory=list)
    overall: Totals = field(default_factory=Totals)
    cells: Dict[Tuple[str, str, str], Totals] = field(default_factory=dict)
    input_problems: List[str] = field(default_factory=list)

    @property
    def skipped(self) -> List[Dict[str, Any]]:
        return [r for r in self.rows if r["error"]]


def read_jsonl(path: str | Path, label: str, problems: List[str]) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yield (line number, object); bad lines (invalid UTF-8, JSON, non-objects) become problems."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{label} {path}:{lineno}: not valid UTF-8 (byte {exc.start}); line skipped")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(
                    f"{label} {path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); line skipped"
                )
                continue
            except (ValueError, RecursionError) as exc:  # an integer of thousands of digits; nesting too deep
                why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
                problems.append(f"{label} {path}:{lineno}: not usable JSON ({why}); line skipped")
                continue
            if not isinstance(obj, dict):
                problems.append(
                    f"{label} {path}:{lineno}: expected a JSON object, got {type(obj).__name__}; line skipped"
                )
                continue
            yield lineno, obj


def check_annotation(obj: Dict[str, Any]) -> List[str]:
    """Problems of one annotation object (missing or mistyped fields)."""
    out = []
    for key, types in ANNOTATION_FIELDS.items():
        if key not in obj:
            out.append(f"missing field '{key}'")
        elif not isinstance(obj[key], types) or (types == (int,) and isinstance(obj[key], bool)):
            out.append(
                f"field '{key}' should be {' or '.join(t.__name__ for t in types)}, got {type(obj[key]).__name__}"
            )
    if isinstance(obj.get("gt_dialogues"), list) and not all(isinstance(x, str) for x in obj["gt_dialogues"]):
        out.append("field 'gt_dialogues' must be a list of strings")
    return out


def _index(
    items: Sequence[Tuple[str, int, Dict[str, Any]]], label: str, problems: List[str]
) -> Dict[str, Tuple[int, Dict[str, Any]]]:
    out: Dict[str, Tuple[int, Dict[str, Any]]] = {}
    for where, lineno, obj in items:
        vid = obj["video_id"]
        if vid in out:
            problems.append(
                f"{label} {where}:{lineno}: duplicate video_id {vid!r} (first at line {out[vid][0]}); later line "
                "ignored"
            )
            continue
        out[vid] = (lineno, obj)
    return out


def load_annotations(path: str | Path, problems: List[str]) -> Dict[str, Dict[str, Any]]:
    good = []
    for lineno, obj in read_jsonl(path, "annotations", problems):
        bad = check_annotation(obj)
        if bad:
            problems.append(f"annotations {path}:{lineno}: {'; '.join(bad)}; line skipped")
            continue
        good.append((str(path), lineno, obj))
    return {k: v for k, (_, v) in _index(good, "annotations", problems).items()}


def load_predictions(path: str | Path, problems: List[str]) -> Dict[str, Dict[str, Any]]:
    good = []
    for lineno, obj in read_jsonl(path, "predictions", problems):
        vid = obj.get("video_id")
        if not isinstance(vid, str):
            problems.append(
                f"predictions {path}:{lineno}: 'video_id' must be a string, got {type(vid).__name__}; line skipped"
            )
            continue
        has_pred, has_lines = "pred" in obj, "pred_dialogues" in obj
        if has_pred == has_lines:
            problems.append(
                f"predictions {path}:{lineno}: give exactly one of 'pred' (caption) or 'pred_dialogues' (lines); "
                "line skipped"
            )
            continue
        if has_pred and not isinstance(obj["pred"], str):
            problems.append(
                f"predictions {path}:{lineno}: 'pred' must be a string, got {type(obj['pred']).__name__}; line skipped"
            )
            continue
        if has_lines and not (
            isinstance(obj["pred_dialogues"], list) and all(isinstance(x, str) for x in obj["pred_dialogues"])
        ):
            problems.append(f"predictions {path}:{lineno}: 'pred_dialogues' must be a list of strings; line skipped")
            continue
        good.append((str(path), lineno, obj))
    return {k: v for k, (_, v) in _index(good, "predictions", problems).items()}


def _buckets(ann: Dict[str, Any]) -> Dict[str, str]:
    spk, ppl = ann["speaker_num"], ann["people_num_in_screen"]
    out = {
        "speaker_num": "Overlap" if spk == 0 else "N=1" if spk == 1 else "N=2" if spk == 2 else "N>=3",
        "people_num": "N=1" if ppl == 1 else "N=2" if ppl == 2 else "N>=3",
    }
    for key in ("has_off_screen_speaker", "has_same_sex_speakers", "only_opposite_sex_speakers"):
        out[key] = "Yes" if ann[key] == 1 else "No"
    return out


def _row(vid: str, score: Optional[ClipScore], error: Optional[str]) -> Dict[str, Any]:
    if score is None:
        return {
            "video_id": vid,
            "clean_dt": None,
            "clean_gt": None,
            "groups": None,
            "dt_num": None,
            "gt_num": None,
            "asr_recall": None,
            "asr_precision": None,
            "ref_recall": None,
            "ref_precision": None,
            "error": error,
        }
    return {
        "video_id": vid,
        "clean_dt": [list(x) for x in score.clean_dt],
        "clean_gt": [list(x) for x in score.clean_gt],
        "groups": [
            {"dt_indices": list(g.dt_indices), "gt_indices": list(g.gt_indices), "score": g.score} for g in score.groups
        ],
        "dt_num": score.dt_num,
        "gt_num": score.gt_num,
        "asr_recall": score.asr_recall,
        "asr_precision": score.asr_precision,
        "ref_recall": score.ref_recall,
        "ref_precision": score.ref_precision,
        "error": None,
    }


def row_of(score: ClipScore) -> Dict[str, Any]:
    """The per-sample fields of one scored clip (the eval --per-sample line, less the id)."""
    return _row("", score, None)


class OverLimit(ValueError):
    """A prediction over one of :func:`score_prediction`'s limits; ``limit`` names the argument
    (``max_caption_chars`` or ``max_lines``) so each front end can name its own option."""

    def __init__(self, message: str, limit: str):
        super().__init__(message)
        self.limit = limit


def score_prediction(
    pred: Dict[str, Any],
    ann: Dict[str, Any],
    *,
    extract: Callable[[str], List[Turn]],
    judge: Optional[SpeakerJudge],
    max_caption_chars: int,
    max_lines: int,
    max_align_work: Optional[int] = None,
) -> ClipScore:
    """Score one prediction against its annotation; raises ``ValueError`` with the reason
    (:class:`OverLimit` past ``max_caption_chars`` / ``max_lines``,
    :class:`~diadem_ray.rewards.align.AlignmentTooLarge` past ``max_align_work``)."""
    if "pred" in pred:
        caption = pred["pred"]
        if len(caption) > max_caption_chars:
            raise OverLimit(
                f"caption has {len(caption):,} characters; the limit is {max_caption_chars:,}", "max_caption_chars"
            )
        lines = turns_to_lines(extract(caption))
    else:
        lines = pred["pred_dialogues"]
    if len(lines) > max_lines or len(ann["gt_dialogues"]) > max_lines:
        raise OverLimit(
            f"more than {max_lines} dialogue lines (the caption gave {len(lines)}, the reference has "
            f"{len(ann['gt_dialogues'])})",
            "max_lines",
        )
    return score_dialogue(lines, ann["gt_dialogues"], judge=judge, max_work=max_align_work)


def evaluate(
    annotations: Sequence[Dict[str, Any]] | Dict[str, Dict[str, Any]],
    predictions: Sequence[Dict[str, Any]] | Dict[str, Dict[str, Any]],
    *,
    extract: Optional[Callable[[str], List[Turn]]] = None,
    judge: Optional[SpeakerJudge] = None,
    max_caption_chars: int = 200_000,
    max_lines: int = 2_000,
    input_problems: Optional[List[str]] = None,
) -> EvalResult:
    """Score predictions against annotations (lists, or dicts keyed by video_id)."""
    from diadem_ray.rewards.extract import extract_structured

    ann = annotations if isinstance(annotations, dict) else {a["video_id"]: a for a in annotations}
    preds = predictions if isinstance(predictions, dict) else {p["video_id"]: p for p in predictions}
    extract = extract or extract_structured
    res = EvalResult(input_problems=list(input_problems or []))
    for vid in sorted(set(preds) - set(ann)):
        res.input_problems.append(f"prediction for {vid!r} has no annotation; not scored")
    for vid, a in ann.items():
        if vid not in preds:
            res.rows.append(_row(vid, None, "no prediction for this video_id"))
            continue
        try:
            score = score_prediction(
                preds[vid], a, extract=extract, judge=judge, max_caption_chars=max_caption_chars, max_lines=max_lines
            )
        except OverLimit as exc:
            flag = "--max-lines" if exc.limit == "max_lines" else "--max-caption-chars"
            res.rows.append(_row(vid, None, f"OverLimit: {exc} ({flag})"))
            continue
        except Exception as exc:  # one clip's failure is data, not a crash
            res.rows.append(_row(vid, None, f"{type(exc).__name__}: {exc}"))
            continue
        res.rows.append(_row(vid, score, None))
        t = score.totals()
        res.overall = res.overall + t
        shot = "singleshot" if a["is_single_shot"] == 1 else "multishot"
        for category, bucket in _buckets(a).items():
            for b in (bucket, "All"):
                res.cells[(shot, category, b)] = res.cells.get((shot, category, b), Totals()) + t
    return res


def format_table(res: EvalResult, title: str, category: str, buckets: Sequence[str]) -> str:
    """One breakdown table in DiaDemBench's layout (13-wide cells, 18-wide overall)."""
    cell_w = 13
    span = len(buckets) * cell_w + (len(buckets) - 1) * 3
    top = f"| {'Overall':^18} | {'Single-shot (REF / ASR)':^{span}} | {'Multi-shot (REF / ASR)':^{span}} | "
    sub = "".join(" " + " | ".join(f"{b:^{cell_w}}" for b in buckets) + " |" for _ in range(2))
    bottom = f"| {'(REF / ASR)':^18} |" + sub
    rule = "-" * len(bottom)
    data = f"| {res.overall.table_cell():^18} |"
    for shot in ("singleshot", "multishot"):
        for b in buckets:
            data += f" {res.cells.get((shot, category, b), Totals()).table_cell():^{cell_w}} |"
    return "\n".join(["", f"=== {title} Table ===", rule, top, rule, bottom, rule, data, rule])


def format_report(res: EvalResult) -> str:
    """Headline, every breakdown table, skipped clips with reasons, and input problems."""
    lines = [
        f"REF / ASR (F1 x100): {res.overall.table_cell()}   [{res.overall.clips} clips scored, {len(res.skipped)} "
        "skipped]"
    ]
    lines += [format_table(res, *t) for t in TABLES]
    if res.skipped:
        reasons = Counter(r["error"].split(":")[0] for r in res.skipped)
        lines.append(f"\nSkipped clips: {len(res.skipped)}")
        lines += [f"  {n:5d}  {reason}" for reason, n in reasons.most_common()]
        lines += [f"  - {r['video_id']}: {r['error']}" for r in res.skipped[:20]]
        if len(res.skipped) > 20:
            lines.append(f"  … and {len(res.skipped) - 20} more (see --per-sample)")
    if res.input_problems:
        lines.append(f"\nInput problems: {len(res.input_problems)}")
        lines += [f"  - {p}" for p in res.input_problems[:50]]
        if len(res.input_problems) > 50:
            lines.append(f"  … and {len(res.input_problems) - 50} more")
    return "\n".join(lines)
