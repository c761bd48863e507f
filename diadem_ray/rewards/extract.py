"""From a caption to dialogue turns (METRICS.md §3).

* ``structured``: deterministic parse of the D-ORCA line form ``0:01 - 0:05, <speaker> said: "…"``
  and the DiaDemBench form ``<speaker>: "…"``.
* ``prose``: DiaDem-style narration with quoted utterances; each quote is attributed to the speaker
  phrase that introduces it (or follows it: ``"…," says the man``); pronouns resolve to the latest
  speaker of matching gender. A heuristic written by hand (no library parses this); its accuracy
  on hand-labelled captions is measured in tests/unit/test_extract_prose.py.
* ``llm``: a served text model rewrites prose into ``<speaker>: "…"`` lines, parsed by
  ``structured``.

Example:
    >>> [t.line() for t in extract_structured('0:01 - 0:03, the old man said: "Hi there."')]
    ['the old man: Hi there.']
    >>> [t.line() for t in extract_prose('A tall woman smiles and says, "Good morning." The boy replies, "Hi."')]
    ['A tall woman: Good morning.', 'The boy: Hi.']
"""

from __future__ import annotations

import re
from typing import Callable, List, Optional, Sequence, Tuple

from diadem_ray.types import Turn

UNKNOWN_SPEAKER = "unknown speaker"

_TIME = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:\.\d+)?"
_STRUCTURED_TIMED = re.compile(
    rf"^\s*(?:[-*•]\s*)?\[?(?P<start>{_TIME})\s*[-–~to]+\s*(?P<end>{_TIME})\]?\s*[,:]?\s*"
    r"(?P<speaker>[^:\n]+?)\s+(?:said|says|asks|asked)\s*:\s*(?P<text>.+?)\s*$",
    re.IGNORECASE,
)
_STRUCTURED_PLAIN = re.compile(r'^\s*(?:[-*•]\s*)?(?P<speaker>[^:"“\n]{1,200}?)\s*:\s*(?P<text>["“].+?)\s*$')
_QUOTES = "\"“”"


def _seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.split(":")]
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1]
    return text.strip()


def _speaker(text: str) -> str:
    # A colon inside a speaker would move DiaDemBench's split point; keep it out.
    return " ".join(text.replace(":", " ").split()) or UNKNOWN_SPEAKER


def extract_structured(caption: str) -> List[Turn]:
    """Parse one turn per line in either structured form; other lines are ignored."""
    turns: List[Turn] = []
    for line in caption.splitlines():
        m = _STRUCTURED_TIMED.match(line)
        if m:
            start, end = _seconds(m["start"]), _seconds(m["end"])
            turns.append(Turn(_speaker(m["speaker"]), _unquote(m["text"]), start, max(start, end)))
            continue
        m = _STRUCTURED_PLAIN.match(line)
        if m and m["speaker"].strip().lower() not in ("none", "note", "summary", "dialogue"):
            turns.append(Turn(_speaker(m["speaker"]), _unquote(m["text"])))
    return turns


# --- prose ------------------------------------------------------------------------------------

_SPEECH_VERBS = (
    "say|says|said|saying|ask|asks|asked|asking|reply|replies|replied|replying|answer|answers|answered|"
    "respond|responds|responded|responding|exclaim|exclaims|exclaimed|shout|shouts|shouted|yell|yells|yelled|"
    "whisper|whispers|whispered|mutter|mutters|muttered|add|adds|added|continue|continues|continued|"
    "interject|interjects|interjected|remark|remarks|remarked|tell|tells|told|call|calls|called|"
    "speak|speaks|spoke|speaking|state|states|stated|declare|declares|declared|explain|explains|explained|"
    "announce|announces|announced|insist|insists|insisted|cry|cries|cried|laugh|laughs|laughed|"
    "begin|begins|began|start|starts|started|chime|chimes|chimed|murmur|murmurs|murmured|counter|counters|"
    "countered|retort|retorts|retorted|greet|greets|greeted|agree|agrees|agreed|protest|protests|protested|"
    "plead|pleads|pleaded|warn|warns|warned|suggest|suggests|suggested|note|notes|noted|inquire|inquires|inquired|"
    "scream|screams|screamed|sing|sings|sang|comment|comments|commented|concede|concedes|conceded"
)
_VERB_RE = re.compile(rf"\b(?:{_SPEECH_VERBS})\b", re.IGNORECASE)
_QUOTE_RE = re.compile(r"“([^”]*)”|\"([^\"]*)\"")
_CLAUSE_START = re.compile(r"(?:^|[.!?;]\s+|,\s*(?:and|then|while|as|before|after|when)\s+|\b(?:and|then|while|as|when)\s+)", re.IGNORECASE)
_PRONOUNS = {"he": "m", "she": "f", "they": None, "i": None, "we": None, "it": None}
_MALE = re.compile(r"\b(man|men|boy|guy|he|him|his|gentleman|father|dad|son|brother|husband|king|sir|mr|male|grandfather|uncle)\b", re.I)
_FEMALE = re.compile(r"\b(woman|women|girl|lady|she|her|mother|mom|daughter|sister|wife|queen|madam|mrs|ms|female|grandmother|aunt)\b", re.I)
_LEADING_NOISE = re.compile(r"^(?:then|finally|next|now|suddenly|meanwhile|later|again|also|first|after that|at this point)\b[,\s]*", re.I)
_TRAILING_NOISE = re.compile(
    r"(?:\s+(?:then|also|again|quickly|slowly|softly|loudly|calmly|angrily|quietly|finally|suddenly|immediately|continues to|begins to|starts to|goes on to|turns to|looks at|leans in and|smiles and|nods and|sighs and|laughs and|and))+$",
    re.I,
)


def _gender(phrase: str) -> Optional[str]:
    m, f = bool(_MALE.search(phrase)), bool(_FEMALE.search(phrase))
    return "m" if m and not f else "f" if f and not m else None


def _subject_before(context: str) -> Optional[str]:
    """The noun phrase before the last speech verb of ``context`` (the clause's subject)."""
    verbs = list(_VERB_RE.finditer(context))
    for verb in reversed(verbs):
        head = context[: verb.start()]
        starts = list(_CLAUSE_START.finditer(head))
        clause = head[starts[-1].end():] if starts else head
        # Drop participial/adverbial detail: "The man, visibly upset," -> "The man".
        clause = re.split(r",|\bwho\b|\bwith a\b|\bin a\b(?=\s+\w+\s+(?:voice|tone))", clause)[0]
        clause = _LEADING_NOISE.sub("", clause.strip())
        clause = _TRAILING_NOISE.sub("", clause).strip()
        clause = re.sub(r"\s+(?:\w+ly)$", "", clause).strip()
        if clause and len(clause.split()) <= 14:
            return clause
    return None


def _subject_after(context: str) -> Optional[str]:
    """``…," says the man`` / ``…," the woman replies`` → the phrase after the quote."""
    m = re.match(rf"^\s*[,.!?]?\s*(?:(?:{_SPEECH_VERBS})\s+(?P<a>[^,.;!?\"“]+)|(?P<b>[^,.;!?\"“]+?)\s+(?:{_SPEECH_VERBS})\b)", context, re.I)
    if not m:
        return None
    phrase = (m["a"] or m["b"]).strip()
    phrase = re.split(r"\s+(?:with|in|as|while|before|after|to)\s+", phrase)[0].strip()
    return phrase or None


def _resolve(phrase: str, history: List[Tuple[str, Optional[str]]]) -> str:
    key = phrase.lower()
    if key in _PRONOUNS:
        want = _PRONOUNS[key]
        for name, gender in reversed(history):
            if want is None or gender == want:
                return name
        return UNKNOWN_SPEAKER
    return phrase


def extract_prose(caption: str) -> List[Turn]:
    """Attribute each quoted utterance of a narrative caption to its speaker phrase."""
    turns: List[Turn] = []
    history: List[Tuple[str, Optional[str]]] = []
    quotes = list(_QUOTE_RE.finditer(caption))
    prev_end = 0
    for idx, q in enumerate(quotes):
        text = (q.group(1) if q.group(1) is not None else q.group(2)).strip()
        if not text:
            prev_end = q.end()
            continue
        next_start = quotes[idx + 1].start() if idx + 1 < len(quotes) else len(caption)
        before = caption[prev_end:q.start()]
        phrase = _subject_before(before)
        if phrase is None:
            phrase = _subject_after(caption[q.end():next_start])
        if phrase is None:
            phrase = history[-1][0] if history and not before.strip(" ,") else UNKNOWN_SPEAKER
        speaker = _speaker(_resolve(phrase, history))
        if speaker != UNKNOWN_SPEAKER:
            history.append((speaker, _gender(speaker)))
        turns.append(Turn(speaker, text))
        prev_end = q.end()
    return turns


# --- llm --------------------------------------------------------------------------------------

LLM_EXTRACT_PROMPT = (
    "Extract every line of dialogue from the caption below, in order, one per line, in the form\n"
    'Speaker description: "utterance"\n'
    "Use the speaker descriptions the caption gives; the same speaker always gets exactly the same "
    "description. If there is no dialogue, answer None.\n\nCaption:\n{caption}\n"
)


def extract_llm(caption: str, generate: Callable[[List[str]], List[str]], *, prompt: str = LLM_EXTRACT_PROMPT) -> List[Turn]:
    """Ask a served LLM (greedy) to rewrite prose into lines, then parse them structurally."""
    answers = generate([prompt.format(caption=caption)])
    if len(answers) != 1:
        raise RuntimeError(f"extractor model returned {len(answers)} answers for 1 prompt")
    if answers[0].strip().rstrip(".").lower() == "none":
        return []
    return extract_structured(answers[0])


def make_extractor(name: str, *, generate: Optional[Callable] = None) -> Callable[[str], List[Turn]]:
    """``structured`` | ``prose`` | ``llm`` (needs ``generate``) → ``caption -> turns``."""
    if name == "structured":
        return extract_structured
    if name == "prose":
        return extract_prose
    if name == "llm":
        if generate is None:
            raise ValueError("extractor 'llm' needs a generate callable (a served LLM); none was given")
        return lambda caption: extract_llm(caption, generate)
    raise ValueError(f"unknown extractor '{name}'; choose structured, prose or llm")


def turns_to_lines(turns: Sequence[Turn]) -> List[str]:
    """Turns as DiaDemBench ``"<speaker>: <utterance>"`` lines."""
    return [t.line() for t in turns]
