"""Caption parsers and the alignment under hostile input: linear time, a bounded alignment, and
the same turns as the reference patterns on every line those patterns can parse in time."""

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diadem_ray.rewards.align import AlignmentTooLarge, align, alignment_lookups
from diadem_ray.rewards.extract import _seconds, _speaker, _unquote, extract_prose, extract_structured_spans
from diadem_ray.rewards.metrics import score_dialogue
from diadem_ray.rewards.normalize import clean_dialogue
from diadem_ray.types import Turn

# The two line forms as single regular expressions: the grammar the parser implements. They
# backtrack over runs of whitespace (cubic time on a timed line), so they serve only as the oracle.
_T = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:\.\d+)?"
ORACLE_TIMED = re.compile(
    rf"^\s*(?:[-*•]\s*)?\[?(?P<start>{_T})\s*[-–~to]+\s*(?P<end>{_T})\]?\s*[,:]?\s*"
    r"(?P<speaker>[^:\n]+?)\s+(?:said|says|asks|asked)\s*:\s*(?P<text>.+?)\s*$",
    re.IGNORECASE,
)
ORACLE_PLAIN = re.compile(r'^\s*(?:[-*•]\s*)?(?P<speaker>[^:"“\n]{1,200}?)\s*:\s*(?P<text>["“].+?)\s*$')


def oracle(caption):
    out, pos = [], 0
    for raw in caption.splitlines(keepends=True):
        line = (raw.splitlines() or [""])[0]
        at, pos = pos, pos + len(raw)
        m = ORACLE_TIMED.match(line)
        if m:
            start, end = _seconds(m["start"]), _seconds(m["end"])
            out.append(
                (
                    Turn(_speaker(m["speaker"]), _unquote(m["text"]), start, max(start, end)),
                    (at + m.start("speaker"), at + m.end("speaker")),
                )
            )
            continue
        m = ORACLE_PLAIN.match(line)
        if m and m["speaker"].strip().lower() not in ("none", "note", "summary", "dialogue"):
            out.append(
                (Turn(_speaker(m["speaker"]), _unquote(m["text"])), (at + m.start("speaker"), at + m.end("speaker")))
            )
    return out


PIECES = [
    " ",
    "  ",
    "\t",
    "\u00a0",
    ":",
    '"',
    "“",
    "”",
    "-",
    "*",
    "•",
    "[",
    "]",
    ",",
    "0:01",
    "1:02:03",
    "0:05.5",
    " - ",
    "to",
    "~",
    "said",
    "Says",
    "ASKED",
    "asks",
    "ſaid",
    "the man",
    "A",
    "x",
    "none",
    "\n",
]
W = st.sampled_from(["", " ", "  ", "\t"])
timed_lines = st.tuples(
    W,
    st.sampled_from(["", "-", "•"]),
    W,
    st.sampled_from(["", "["]),
    st.sampled_from(["0:01", "1:02:03"]),
    W,
    st.sampled_from(["-", "to", " - "]),
    W,
    st.sampled_from(["0:02", "0:05.5", "1:02:03"]),
    st.sampled_from(["", "]"]),
    W,
    st.sampled_from(["", ",", ":"]),
    W,
    st.lists(st.sampled_from(PIECES), max_size=4).map("".join),
    st.sampled_from(["said", "asks", "SAYS", "asked", "sayd"]),
    W,
    st.sampled_from([":", ""]),
    W,
    st.sampled_from(["", '"hi"', "x", " "]),
).map("".join)
free_lines = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


@settings(max_examples=1500, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(timed_lines, free_lines))
def test_structured_parser_agrees_with_the_grammar(caption):
    assert extract_structured_spans(caption) == oracle(caption)


def _seconds_for(fn, text):
    t0 = time.perf_counter()
    fn(text)
    return time.perf_counter() - t0


HOSTILE = {
    "timed line, spaces": lambda n: "0:01 - 0:02" + " " * n + "the man",
    "plain line, spaces inside the quote": lambda n: 'A: "x' + " " * n + "y",
    "plain line, spaces before the colon": lambda n: "A" + " " * n + ': "x"',
    "unclosed quotes": lambda n: "“" * n,
    "a run of full stops": lambda n: "." * n + "x",
    "many pronoun quotes": lambda n: 'He says "a". ' * (n // 13),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_parsers_are_linear_on_hostile_captions(name):
    """Ten times the input costs about ten times the time (a quadratic parser: a hundred), and
    the largest, 100,000 characters (the /score limit), parses in well under a second."""
    make = HOSTILE[name]
    for fn in (extract_structured_spans, extract_prose):
        small = min(_seconds_for(fn, make(10_000)) for _ in range(3))
        large = min(_seconds_for(fn, make(100_000)) for _ in range(3))
        assert large < 1.0, (name, fn.__name__, large)
        assert large < 30 * max(small, 2e-4), (name, fn.__name__, small, large)


def test_pronouns_resolve_as_before_with_many_mentions():
    turns = extract_prose('The old man smiles. The girl waves. "Hi," she says. "Hello," he replies. They say "bye".')
    assert [t.speaker for t in turns] == ["The girl", "The old man", "The girl"]


def _dialogue(m, length, seed, same_speaker=True):
    import random

    rng = random.Random(seed)
    return [
        f"{'A' if same_speaker else 'AB'[i % 2]}: " + "".join(rng.choice("abcdefghij") for _ in range(length))
        for i in range(m)
    ]


def test_alignment_budget_refuses_only_what_is_over_it():
    dt, gt = clean_dialogue(_dialogue(60, 1000, 1)), clean_dialogue(_dialogue(60, 1000, 2))
    with pytest.raises(AlignmentTooLarge, match="work units"):
        align(dt, gt, max_work=6_000_000)
    small_dt, small_gt = clean_dialogue(_dialogue(12, 40, 3)), clean_dialogue(_dialogue(12, 40, 3))
    assert align(small_dt, small_gt, max_work=6_000_000) == align(small_dt, small_gt)
    lookups = alignment_lookups(small_dt, small_gt)
    with pytest.raises(AlignmentTooLarge, match=f"{lookups:,}"[:3]):
        align(small_dt, small_gt, max_work=lookups - 1)


def test_score_dialogue_passes_the_budget_through():
    dt, gt = _dialogue(60, 1000, 1), _dialogue(60, 1000, 2)
    with pytest.raises(AlignmentTooLarge):
        score_dialogue(dt, gt, max_work=1_000_000)
    assert score_dialogue(dt[:3], dt[:3], max_work=1_000_000).asr_f1 == 1.0
