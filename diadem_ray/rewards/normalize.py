"""DiaDemBench text cleaning and utterance similarity (docs/metrics.md §1.1–1.2).

Written by hand because no library implements DiaDemBench's cleaning; OpenCC does the
Traditional→Simplified conversion and rapidfuzz the (C-backed) Levenshtein distance.

Example:
    >>> clean_line('  The man: “Really?”  ')
    ('The man', 'really')
    >>> clean_line('no colon here') is None
    True
    >>> similarity('abc d', 'abcd')
    1.0
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable, List, Optional, Tuple

from rapidfuzz.distance import Levenshtein

SPEAKER_MAX_CHARS = 100
CONTENT_MAX_CHARS = 1000

_TRAILING = frozenset("。.?？!！")
_NON_WORD = re.compile(r"[^\w\s\u4e00-\u9fff]")
_KANA = re.compile(r"[\u3040-\u30ff]")

CleanItem = Tuple[str, str]  # (speaker, content)


@lru_cache(maxsize=1)
def _t2s() -> Any:
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=65536)
def to_simplified(text: str) -> str:
    """OpenCC ``t2s``; ASCII text is returned as is (t2s maps only CJK characters)."""
    if text.isascii():
        return text
    return str(_t2s().convert(text))


@lru_cache(maxsize=1 << 16)  # references repeat for every sample of a group and every step
def clean_line(line: str) -> Optional[CleanItem]:
    """Clean one ``"<speaker>: <utterance>"`` line exactly as DiaDemBench does.

    Returns ``(speaker, content)``, or ``None`` when the line has no ASCII colon (dropped).
    """
    s = line.strip()
    # Three guarded replace() calls are ~3x faster than str.translate on short lines.
    if '"' in s:
        s = s.replace('"', "")
    if "“" in s:
        s = s.replace("“", "")
    if "”" in s:
        s = s.replace("”", "")
    if s and s[-1] in _TRAILING:
        s = s[:-1]
    idx = s.find(":")
    if idx < 0:
        return None
    speaker = s[:idx].strip()
    content = _NON_WORD.sub("", s[idx + 1 :].strip()).lower()
    if not content.isascii() and not _KANA.search(content):
        content = to_simplified(content)
    return speaker[:SPEAKER_MAX_CHARS], content[:CONTENT_MAX_CHARS]


def clean_dialogue(lines: Iterable[str]) -> List[CleanItem]:
    """Clean every line, dropping those without a colon; order is kept."""
    out = []
    for line in lines:
        item = clean_line(line)
        if item is not None:
            out.append(item)
    return out


def squeeze(text: str) -> str:
    """Remove all whitespace (the form the similarity compares)."""
    return "".join(text.split())


def similarity_of_squeezed(a: str, b: str) -> float:
    """``1 − levenshtein(a, b) / max(len a, len b)`` on whitespace-free strings.

    Both empty: DiaDemBench divides by zero there; we define the similarity of two empty
    strings as 1.0 (they are identical), which keeps "identical dialogues score 1" true.
    """
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - Levenshtein.distance(a, b) / longest


def similarity(a: str, b: str) -> float:
    """Character-level normalised edit similarity after removing all whitespace, in [0, 1]."""
    return similarity_of_squeezed(squeeze(a), squeeze(b))
