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
    return [turn for turn, _ in extract_structured_spans(caption)]


def extract_structured_spans(caption: str) -> List[Tuple[Turn, Tuple[int, int]]]:
    """:func:`extract_structured` with where each turn's speaker phrase is: ``(turn, (start, end))``,
    character offsets into ``caption`` (``caption[start:end]`` is the raw phrase). Used to give a
    line's speaker tokens their own credit in GRPO."""
    out: List[Tuple[Turn, Tuple[int, int]]] = []
    pos = 0
    for raw in caption.splitlines(keepends=True):
        line = (raw.splitlines() or [""])[0]  # without its line break, as splitlines() gives it
        at, pos = pos, pos + len(raw)
        m = _STRUCTURED_TIMED.match(line)
        if m:
            start, end = _seconds(m["start"]), _seconds(m["end"])
            span = (at + m.start("speaker"), at + m.end("speaker"))
            out.append((Turn(_speaker(m["speaker"]), _unquote(m["text"]), start, max(start, end)), span))
            continue
        m = _STRUCTURED_PLAIN.match(line)
        if m and m["speaker"].strip().lower() not in ("none", "note", "summary", "dialogue"):
            out.append((Turn(_speaker(m["speaker"]), _unquote(m["text"])), (at + m.start("speaker"), at + m.end("speaker"))))
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
_QUOTE_RE = re.compile(r"“([^”]*)”|\"([^\"]*)\"")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")
_PRONOUNS = {"he": "m", "him": "m", "she": "f", "her": "f", "they": None, "i": None, "we": None}
_MALE = re.compile(r"\b(man|men|boy|guy|gentleman|father|dad|son|brother|husband|king|prince|sir|mr|male|grandfather|grandpa|uncle|soldier|monk|priest)\b", re.I)
_FEMALE = re.compile(r"\b(woman|women|girl|lady|mother|mom|daughter|sister|wife|queen|princess|madam|mrs|ms|female|grandmother|grandma|aunt|nun)\b", re.I)
_GENDERED_NP = re.compile(
    r"\b(?:the|a|an|his|her|their|my|your)\s+(?:[\w'-]+\s+){0,3}?(?:" + _MALE.pattern[5:-3] + "|" + _FEMALE.pattern[5:-3] + r")\b",
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
        t.strip(",;:").lower() in _VERB_FORMS or (i and _looks_like_verb(t, tokens[i - 1], tokens[i + 1] if i + 1 < len(tokens) else None))
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


class _Mentions:
    """Earlier people mentions (position, phrase, gender) for pronoun resolution."""

    def __init__(self) -> None:
        self.items: List[Tuple[int, str, Optional[str]]] = []

    def add_text(self, text: str, offset: int) -> None:
        start = 0
        for m in _SENTENCE_END.finditer(text + "."):
            part = text[start:m.start()]
            lead = len(part) - len(part.lstrip())
            np_ = _noun_phrase(part) if _has_verb(part) else None
            if np_ and np_.lower() not in _PRONOUNS:
                self.items.append((offset + start + lead, np_, _gender(np_)))
            start = m.end()
        for m in _GENDERED_NP.finditer(text):
            self.items.append((offset + m.start(), m.group(0), _gender(m.group(0))))
        # At one position the longer phrase wins ('The man in the hard hat' over 'The man').
        self.items.sort(key=lambda x: (x[0], len(x[1])))

    def resolve(self, phrase: str, before: int) -> str:
        key = phrase.lower()
        if key not in _PRONOUNS:
            return phrase
        want = _PRONOUNS[key]
        earlier = [(name, gender) for pos, name, gender in self.items if pos < before]
        for name, gender in reversed(earlier):
            if want is None or gender == want:
                return name
        # No gendered antecedent: the latest person whose description carries no gender.
        for name, gender in reversed(earlier):
            if gender is None:
                return name
        return UNKNOWN_SPEAKER


def extract_prose(caption: str) -> List[Turn]:
    """Attribute each quoted utterance of a narrative caption to its speaker phrase."""
    quotes = [q for q in _QUOTE_RE.finditer(caption)]
    mentions = _Mentions()
    prev_end = 0
    for q in quotes:
        mentions.add_text(caption[prev_end:q.start()], prev_end)
        prev_end = q.end()
    mentions.add_text(caption[prev_end:], prev_end)

    turns: List[Turn] = []
    prev_end = 0
    for idx, q in enumerate(quotes):
        text = (q.group(1) if q.group(1) is not None else q.group(2)).strip()
        before = caption[prev_end:q.start()]
        prev_end = q.end()
        if not text:
            continue
        next_start = quotes[idx + 1].start() if idx + 1 < len(quotes) else len(caption)
        fragments = _SENTENCE_END.split(before)
        lead = fragments[-1] if fragments else ""
        phrase = _noun_phrase(lead) if lead.strip() and lead.rstrip().endswith((",", ":")) or _has_verb(lead) else None
        if phrase is None:
            phrase = _after_phrase(caption[q.end():next_start])
        if phrase is None:
            earlier = [f for f in fragments[:-1] if f.strip()]
            phrase = _noun_phrase(earlier[-1]) if earlier and _has_verb(earlier[-1]) else None
        if phrase is None:
            phrase = turns[-1].speaker if turns else UNKNOWN_SPEAKER
        turns.append(Turn(_speaker(mentions.resolve(phrase, q.start())), text))
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


def make_extractor(name: str, *, generate: Optional[Callable] = None, prompt: str = "") -> Callable[[str], List[Turn]]:
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
