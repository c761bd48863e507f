"""From a caption to dialogue turns (docs/metrics.md §3).

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

import bisect
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from diadem_ray.types import Turn

UNKNOWN_SPEAKER = "unknown speaker"

_TIME = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:\.\d+)?"
# The head of a timed line, up to where its speaker phrase starts. Matched on its own it does linear
# work: every part is optional or bounded, so a failure never sends the engine back over a run.
_TIMED_HEAD = re.compile(
    rf"\s*(?:[-*•]\s*)?\[?(?P<start>{_TIME})\s*[-–~to]+\s*(?P<end>{_TIME})\]?\s*[,:]?\s*", re.IGNORECASE
)
_VERB_END = re.compile(r"(?:said|says|asks|asked)\Z", re.IGNORECASE)
# A timed line whose speaker phrase is empty at the head's greedy end may still parse with a head
# character lent to the speaker ('[0:01-0:02] said: …' → speaker ']'). That one case is decided by
# the full pattern below, run only on a line start this short (its cost is then bounded).
_TIMED_FULL = re.compile(
    rf"\s*(?:[-*•]\s*)?\[?(?P<start>{_TIME})\s*[-–~to]+\s*(?P<end>{_TIME})\]?\s*[,:]?\s*"
    r"(?P<speaker>[^:\n]+?)\s+(?:said|says|asks|asked)\s*:",
    re.IGNORECASE,
)
_TIMED_FULL_MAX_CHARS = 512
_SPEAKER_MAX_CHARS = 200
_BULLETS = "-*•"
_QUOTES = '"“”'
_OPEN_QUOTES = '"“'


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


def _lead_ws(text: str, at: int) -> int:
    """Index of the first non-whitespace character of ``text`` at or after ``at``."""
    n = len(text)
    while at < n and text[at].isspace():
        at += 1
    return at


def _timed(line: str) -> Optional[Tuple[Turn, Tuple[int, int]]]:
    """``0:01 - 0:05, <speaker> said: <text>`` (also says / asks / asked, any case); linear time."""
    head = _TIMED_HEAD.match(line)
    if head is None:
        return None
    s = head.end()
    colon = line.find(":", s)  # the speaker phrase and the verb hold no colon: this one ends them
    if colon < 0 or colon == len(line) - 1:
        return None
    said = line[s:colon].rstrip()
    verb = _VERB_END.search(said[-5:])
    if verb is None:
        return None
    v = len(said) - len(verb.group(0))
    who = said[:v].rstrip()
    ws = v - len(who)  # whitespace between the speaker phrase and the verb
    start_s, end_s = head["start"], head["end"]
    if ws >= 1 and len(who) >= 1:
        span = (s, s + len(who))
    elif ws >= 1 and len(who) == 0 and ws >= 2:
        span = (s, s + 1)  # the phrase is one whitespace character (the pattern's shortest speaker)
    elif len(who) == 0 and colon < _TIMED_FULL_MAX_CHARS:
        full = _TIMED_FULL.match(line[: colon + 1])
        if full is None:
            return None
        span, start_s, end_s = full.span("speaker"), full["start"], full["end"]
    else:
        return None
    rest = line[colon + 1 :]
    text = rest.strip() or rest[-1:]
    start, end = _seconds(start_s), _seconds(end_s)
    return Turn(_speaker(line[span[0] : span[1]]), _unquote(text), start, max(start, end)), span


def _plain(line: str) -> Optional[Tuple[Turn, Tuple[int, int]]]:
    """``<speaker>: "<text>"`` with a speaker phrase of at most 200 characters; linear time."""
    colon = line.find(":")
    if colon < 0:
        return None
    quote = _lead_ws(line, colon + 1)
    if quote >= len(line) or line[quote] not in _OPEN_QUOTES:
        return None
    head = line[:colon]
    if '"' in head or "“" in head:
        return None
    # The phrase starts after leading whitespace, an optional bullet and its whitespace; when
    # nothing is left for it there, it takes the last character given up (a space or the bullet).
    q0 = _lead_ws(head, 0)
    q = q0
    bullet = q0 < colon and head[q0] in _BULLETS
    if bullet:
        q = _lead_ws(head, q0 + 1)
    if q == colon:
        if bullet and q > q0 + 1:
            q -= 1
        elif bullet:
            q = q0
        elif q0 > 0:
            q -= 1
        else:
            return None
    length = max(1, len(head[q:].rstrip()))
    if length > _SPEAKER_MAX_CHARS:
        return None
    text = line[quote:].rstrip()
    if len(text) < 2:
        if len(line) - quote < 2:
            return None
        text = line[quote : quote + 2]
    return Turn(_speaker(line[q : q + length]), _unquote(text)), (q, q + length)


def extract_structured(caption: str) -> List[Turn]:
    """Parse one turn per line in either structured form; other lines are ignored."""
    return [turn for turn, _ in extract_structured_spans(caption)]


def extract_structured_spans(caption: str) -> List[Tuple[Turn, Tuple[int, int]]]:
    """:func:`extract_structured` with where each turn's speaker phrase is: ``(turn, (start, end))``,
    character offsets into ``caption`` (``caption[start:end]`` is the raw phrase). Used to give a
    line's speaker tokens their own credit in GRPO. Linear in the caption's length: no pattern here
    backtracks over a run of characters."""
    out: List[Tuple[Turn, Tuple[int, int]]] = []
    pos = 0
    for raw in caption.splitlines(keepends=True):
        line = (raw.splitlines() or [""])[0]  # without its line break, as splitlines() gives it
        at, pos = pos, pos + len(raw)
        found = _timed(line)
        if found is None:
            found = _plain(line)
            if found is not None and line[found[1][0] : found[1][1]].strip().lower() in (
                "none",
                "note",
                "summary",
                "dialogue",
            ):
                found = None
        if found is not None:
            turn, (start, end) = found
            out.append((turn, (at + start, at + end)))
    return out


# --- prose ------------------------------------------------------------------------------------
# A quote is attributed, in order of preference, to: the subject of the clause that introduces it
# ('The man in scrubs then speaks slowly, "…"'), the phrase after it ('"…," says the man' /
# '"…," she answers'), or the subject of the sentence just before it. Pronouns resolve to the
# latest earlier mention of matching gender. Verbs are recognised from a word list (no tagger).

_SPEECH = (
    "say ask reply answer respond exclaim shout yell whisper mutter add continue interject remark tell call "
    "speak state declare explain announce insist cry begin start chime murmur counter retort greet agree protest "
    "plead warn suggest note inquire scream sing comment concede interrupt mumble stammer stutter repeat "
    "read recite order demand beg admit confirm observe joke tease"
).split()
_ACTION = (
    "smile look lean run stand sit check laugh raise write taste enter hold grab walk fix kick shake hesitate "
    "hug blow groan rise slam study point frown nod type sigh gasp growl apologize apologise turn step pause glance "
    "shrug wave open close put take give hand pick drop reach move jump climb wipe cross fold pull push tap knock "
    "sip drink eat cook pour lift carry watch stare gaze smirk grin wink sob snap hiss bark roar appear come go "
    "exit leave return arrive approach follow hurry rush storm burst hum play dance hear listen notice realize "
    "gesture motion signal adjust rub scratch touch kneel crouch bend lie rest wait stop try seem remain stay keep "
    "pace wander kiss squeeze clap cheer face shift peer squint blink chuckle giggle snort scoff sneer beam pout "
    "huff breathe exhale swallow cough yawn stretch get make show leap dash glare tilt fidget sniff whimper wail "
    "nudge hold pat lower spin stumble trip sway roll"
).split()
_IRREGULAR = (
    "said told spoke ran sat stood held took gave came went rose shook began sang wrote blew ate drank caught threw "
    "left knelt lay got made leapt hears is was are were has had"
).split()


def _forms(base: str) -> List[str]:
    if base.endswith("y") and base[-2] not in "aeiou":
        return [base, base[:-1] + "ies", base[:-1] + "ied"]
    if base.endswith("e"):
        return [base, base + "s", base + "d"]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return [base, base + "es", base + "ed"]
    return [base, base + "s", base + "ed", base + base[-1] + "ed"]


_SPEECH_FORMS = frozenset(f for b in _SPEECH for f in _forms(b)) | {"said", "told", "spoke", "began", "sang"}
_VERB_FORMS = _SPEECH_FORMS | frozenset(f for b in _ACTION for f in _forms(b)) | frozenset(_IRREGULAR)
_ADVERBS = frozenset(
    "then also again finally suddenly quickly slowly softly loudly quietly calmly angrily immediately gently firmly "
    "nervously excitedly happily sadly simply just still now together abruptly sharply warmly coldly flatly".split()
)
_FRONTED = re.compile(
    r"^(?:(?:then|finally|next|now|suddenly|meanwhile|later|again|also|first|afterwards|at last)\b,?\s*"
    r"|(?:in|on|at|inside|outside|after|before|during|from|across|behind|beside|near|under|with|when|while|as|back)\b[^,]{0,60},\s*)",
    re.IGNORECASE,
)
# A run of sentence marks is only tried from its first mark: a run that is not followed by
# whitespace would otherwise be rescanned from each of its marks (quadratic in its length).
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]+(?:\s+|$)")
_PRONOUNS = {"he": "m", "him": "m", "she": "f", "her": "f", "they": None, "i": None, "we": None}
_MALE = re.compile(
    r"\b(man|men|boy|guy|gentleman|father|dad|son|brother|husband|king|prince|sir|mr|male|grandfather|grandpa|uncle|soldier|monk|priest)\b",
    re.I,
)
_FEMALE = re.compile(
    r"\b(woman|women|girl|lady|mother|mom|daughter|sister|wife|queen|princess|madam|mrs|ms|female|grandmother|grandma|aunt|nun)\b",
    re.I,
)
_GENDERED_NP = re.compile(
    r"\b(?:the|a|an|his|her|their|my|your)\s+(?:[\w'-]+\s+){0,3}?(?:"
    + _MALE.pattern[5:-3]
    + "|"
    + _FEMALE.pattern[5:-3]
    + r")\b",
    re.IGNORECASE,
)


def _gender(phrase: str) -> Optional[str]:
    m, f = bool(_MALE.search(phrase)), bool(_FEMALE.search(phrase))
    return "m" if m and not f else "f" if f and not m else None


def _noun_phrase(clause: str) -> Optional[str]:
    """The leading noun phrase of a clause: fronted adverbials dropped, cut at the first verb,
    adverb, comma, or relative word. ``None`` when nothing noun-like is left."""
    text = clause.strip()
    for _ in range(3):
        text = _FRONTED.sub("", text, count=1).strip()
    words: List[str] = []
    tokens = text.split()
    for i, raw in enumerate(tokens):
        word = raw.strip(",;:").lower()
        if word in _VERB_FORMS or word in _ADVERBS or word in ("who", "which", "that", "and", "but", "as", "while"):
            break
        if i and _looks_like_verb(raw, tokens[i - 1], tokens[i + 1] if i + 1 < len(tokens) else None):
            break
        words.append(raw.rstrip(",;:"))
        if raw.endswith((",", ";", ":")):
            break
    if not words or len(words) > 12:
        return None
    return " ".join(words)


_PREPOSITIONS = frozenset(
    "at in on over under to toward towards into onto from with by up down out off back around across through "
    "behind beside near for of about along against past".split()
)
_DETERMINERS = frozenset("the a an his her their its my your our this that these those".split())
_THIRD_PERSON = re.compile(r"[a-z]{2,}[^s'u]s|[a-z]{2,}(?:ches|shes|sses|xes)")


def _looks_like_verb(raw: str, prev: str, nxt: Optional[str]) -> bool:
    """An unlisted third-person verb: '-s' word after a noun, before a preposition, determiner,
    pronoun, adverb, 'and' or a clause-ending comma ('peeks over', 'reports,')."""
    word = raw.strip(",;:").lower()
    if not _THIRD_PERSON.fullmatch(word):
        return False
    if prev.lower() in _PREPOSITIONS or prev.lower() in _DETERMINERS:
        return False
    if raw.endswith(",") or nxt is None:
        return True
    n = nxt.strip(",;:").lower()
    return n in _PREPOSITIONS or n in _DETERMINERS or n in _ADVERBS or n in _PRONOUNS or n == "and"


def _has_verb(text: str) -> bool:
    tokens = text.split()
    return any(
        t.strip(",;:").lower() in _VERB_FORMS
        or (i and _looks_like_verb(t, tokens[i - 1], tokens[i + 1] if i + 1 < len(tokens) else None))
        for i, t in enumerate(tokens)
    )


def _after_phrase(text: str) -> Optional[str]:
    """``," says the man in the suit.`` or ``," the friend insists.`` -> the speaker phrase."""
    head = _SENTENCE_END.split(text.lstrip(" ,.!?;:"), maxsplit=1)[0]
    words = head.split()
    if not words:
        return None
    if words[0].lower().strip(",") in _SPEECH_FORMS:  # verb first: 'says the man in the suit'
        phrase = _noun_phrase(" ".join(words[1:]))
        return phrase
    for i, w in enumerate(words[:8]):  # subject first: 'the detective announces'
        if w.lower().strip(",") in _SPEECH_FORMS:
            return _noun_phrase(" ".join(words[:i]))
    return None


class _Quote(NamedTuple):
    start: int  # offset of the opening mark
    end: int  # offset after the closing mark
    text: str  # what the marks enclose


def _quotes(caption: str) -> List[_Quote]:
    """Quoted spans left to right: ``“…”`` or ``"…"``, the nearest closing mark ending each. An
    opening mark with no closing mark after it is plain text. Linear: once a closing mark is known
    to be missing after some offset, it is not searched for again."""
    out: List[_Quote] = []
    missing = {"“": len(caption) + 1, '"': len(caption) + 1}  # no closing mark at or after this offset
    closing = {"“": "”", '"': '"'}
    i, n = 0, len(caption)
    while i < n:
        ch = caption[i]
        if ch in closing and i + 1 < missing[ch]:
            j = caption.find(closing[ch], i + 1)
            if j >= 0:
                out.append(_Quote(i, j + 1, caption[i + 1 : j]))
                i = j + 1
                continue
            missing[ch] = i + 1
        i += 1
    return out


class _Mentions:
    """Earlier people mentions (position, phrase, gender) for pronoun resolution.

    :meth:`freeze` indexes them once, so each :meth:`resolve` is a binary search (a caption with
    many quotes and pronouns costs O(q log q), not O(q²))."""

    def __init__(self) -> None:
        self.items: List[Tuple[int, str, Optional[str]]] = []
        self._positions: List[int] = []
        self._latest: List[Dict[Any, int]] = []

    def add_text(self, text: str, offset: int) -> None:
        start = 0
        for m in _SENTENCE_END.finditer(text + "."):
            part = text[start : m.start()]
            lead = len(part) - len(part.lstrip())
            np_ = _noun_phrase(part) if _has_verb(part) else None
            if np_ and np_.lower() not in _PRONOUNS:
                self.items.append((offset + start + lead, np_, _gender(np_)))
            start = m.end()
        for m in _GENDERED_NP.finditer(text):
            self.items.append((offset + m.start(), m.group(0), _gender(m.group(0))))

    def freeze(self) -> None:
        """Sort the mentions (at one position the longer phrase wins: 'The man in the hard hat'
        over 'The man') and record, after each, the latest mention of every gender."""
        self.items.sort(key=lambda x: (x[0], len(x[1])))
        self._positions = [pos for pos, _, _ in self.items]
        latest: Dict[Any, int] = {}
        self._latest = []
        for k, (_, _, gender) in enumerate(self.items):
            latest = dict(latest)
            latest[gender] = k
            latest["any"] = k
            self._latest.append(latest)

    def resolve(self, phrase: str, before: int) -> str:
        key = phrase.lower()
        if key not in _PRONOUNS:
            return phrase
        k = bisect.bisect_left(self._positions, before)  # mentions [0, k) start before the quote
        if k == 0:
            return UNKNOWN_SPEAKER
        latest = self._latest[k - 1]
        want = _PRONOUNS[key]
        for choice in ("any",) if want is None else (want, None):
            # None: no gendered antecedent, so the latest person whose description carries no gender.
            if choice in latest:
                return self.items[latest[choice]][1]
        return UNKNOWN_SPEAKER


def extract_prose(caption: str) -> List[Turn]:
    """Attribute each quoted utterance of a narrative caption to its speaker phrase. Near-linear in
    the caption's length (pronouns resolve by binary search)."""
    quotes = _quotes(caption)
    mentions = _Mentions()
    prev_end = 0
    for q in quotes:
        mentions.add_text(caption[prev_end : q.start], prev_end)
        prev_end = q.end
    mentions.add_text(caption[prev_end:], prev_end)
    mentions.freeze()

    turns: List[Turn] = []
    prev_end = 0
    for idx, q in enumerate(quotes):
        text = q.text.strip()
        before = caption[prev_end : q.start]
        prev_end = q.end
        if not text:
            continue
        next_start = quotes[idx + 1].start if idx + 1 < len(quotes) else len(caption)
        fragments = _SENTENCE_END.split(before)
        lead = fragments[-1] if fragments else ""
        phrase = _noun_phrase(lead) if lead.strip() and lead.rstrip().endswith((",", ":")) or _has_verb(lead) else None
        if phrase is None:
            phrase = _after_phrase(caption[q.end : next_start])
        if phrase is None:
            earlier = [f for f in fragments[:-1] if f.strip()]
            phrase = _noun_phrase(earlier[-1]) if earlier and _has_verb(earlier[-1]) else None
        if phrase is None:
            phrase = turns[-1].speaker if turns else UNKNOWN_SPEAKER
        turns.append(Turn(_speaker(mentions.resolve(phrase, q.start)), text))
    return turns


# --- llm --------------------------------------------------------------------------------------

LLM_EXTRACT_PROMPT = (
    "Extract every line of dialogue from the caption below, in order, one per line, in the form\n"
    'Speaker description: "utterance"\n'
    "Use the speaker descriptions the caption gives; the same speaker always gets exactly the same "
    "description. If there is no dialogue, answer None.\n\nCaption:\n{caption}\n"
)


def extract_llm(
    caption: str, generate: Callable[[List[str]], List[str]], *, prompt: str = LLM_EXTRACT_PROMPT
) -> List[Turn]:
    """Ask a served LLM (greedy) to rewrite prose into lines, then parse them structurally."""
    answers = generate([prompt.format(caption=caption)])
    if len(answers) != 1:
        raise RuntimeError(f"extractor model returned {len(answers)} answers for 1 prompt")
    if answers[0].strip().rstrip(".").lower() == "none":
        return []
    return extract_structured(answers[0])


def make_extractor(
    name: str, *, generate: Optional[Callable[[List[str]], List[str]]] = None, prompt: str = ""
) -> Callable[[str], List[Turn]]:
    """``structured`` | ``prose`` | ``llm`` (needs ``generate``; ``prompt`` with ``{caption}``
    replaces the built-in one) → ``caption -> turns``."""
    if name == "structured":
        return extract_structured
    if name == "prose":
        return extract_prose
    if name == "llm":
        if generate is None:
            raise ValueError("extractor 'llm' needs a generate callable (a served LLM); none was given")
        if prompt and "{caption}" not in prompt:
            raise ValueError("the llm extractor prompt must contain '{caption}'")
        template = prompt or LLM_EXTRACT_PROMPT
        return lambda caption: extract_llm(caption, generate, prompt=template)
    raise ValueError(f"unknown extractor '{name}'; choose structured, prose or llm")


def turns_to_lines(turns: Sequence[Turn]) -> List[str]:
    """Turns as DiaDemBench ``"<speaker>: <utterance>"`` lines."""
    return [t.line() for t in turns]
