"""Reward composition: a named, weighted list of components with enable/disable steps.

``COMPONENTS`` is the plain dict of what a reward YAML may name. A :class:`Composition` is built
from a :class:`~diadem_ray.config.RewardSpec` (checked here: names, params, steps), scores one
caption at a given step, and has a canonical hash — stable across key order, whitespace and
component order — that training logs as the unit of comparison in MLflow.

Example:
    >>> from diadem_ray.config import RewardSpec, RewardComponentConfig
    >>> spec = RewardSpec(name="demo", components=[RewardComponentConfig("asr_f1", 0.5),
    ...                                            RewardComponentConfig("ref_f1", 0.5)])
    >>> comp = Composition.from_spec(spec)
    >>> from diadem_ray.types import Turn
    >>> ref = (Turn("A", "hello there"),)
    >>> comp.score('A: "hello there"', ref, step=0).reward
    1.0
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from diadem_ray.rewards import components as C
from diadem_ray.rewards.extract import extract_structured_spans, make_extractor
from diadem_ray.rewards.lines import line_hits
from diadem_ray.rewards.speakers import make_judge
from diadem_ray.types import LineHit, Turn

#: name -> function(ctx, **params) -> float
COMPONENTS: Dict[str, Callable[..., float]] = {
    "asr_f1": C.asr_f1,
    "ref_f1": C.ref_f1,
    "asr_recall": C.asr_recall,
    "ref_recall": C.ref_recall,
    "cpwer": C.cpwer_accuracy,
    "tcpwer": C.tcpwer_accuracy,
    "wer": C.wer_accuracy,
    "temporal_iou": C.temporal_iou,
    "format": C.format_ok,
    "length_penalty": C.length_penalty,
    "repetition_penalty": C.repetition_penalty,
}
EXTRACTORS = ("structured", "prose", "llm")
JUDGES = ("exact", "embedding", "llm", "mllm")


def _params_of(fn: Callable[..., float]) -> Dict[str, Any]:
    sig = inspect.signature(fn)
    return {n: p.default for n, p in list(sig.parameters.items())[1:]}


@dataclass(frozen=True)
class Part:
    name: str
    weight: float
    enable_step: int
    disable_step: Optional[int]
    params: Tuple[Tuple[str, float], ...]

    def active(self, step: int) -> bool:
        return step >= self.enable_step and (self.disable_step is None or step < self.disable_step)


@dataclass(frozen=True)
class Scored:
    """Result of scoring one caption: reward, unweighted components, and the turns used."""

    reward: float
    components: Mapping[str, float]
    hyp: Tuple[Turn, ...]
    lines: Tuple[LineHit, ...] = ()


def check_spec(spec: Any) -> List[str]:
    """Every problem of a reward spec (unknown component or param, bad weight or steps)."""
    problems: List[str] = []
    where = f"reward '{spec.name}'"
    if spec.extractor not in EXTRACTORS:
        problems.append(f"{where}.extractor: {spec.extractor!r} is not one of {', '.join(EXTRACTORS)}")
    if spec.speaker_judge not in JUDGES:
        problems.append(f"{where}.speaker_judge: {spec.speaker_judge!r} is not one of {', '.join(JUDGES)}")
    if spec.judge_prompt and "{pairs}" not in spec.judge_prompt:
        problems.append(f"{where}.judge_prompt: must contain '{{pairs}}' where the speaker pairs go")
    if spec.extract_prompt and "{caption}" not in spec.extract_prompt:
        problems.append(f"{where}.extract_prompt: must contain '{{caption}}' where the caption goes")
    if not spec.components:
        problems.append(f"{where}.components: empty; name at least one of {', '.join(COMPONENTS)}")
    for i, comp in enumerate(spec.components):
        at = f"{where}.components[{i}]"
        if comp.name not in COMPONENTS:
            near = difflib.get_close_matches(comp.name, list(COMPONENTS), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; choose one of {', '.join(COMPONENTS)}"
            problems.append(f"{at}.name: unknown component {comp.name!r}{hint}")
            continue
        allowed = _params_of(COMPONENTS[comp.name])
        for key, value in dict(comp.params).items():
            if key not in allowed:
                problems.append(f"{at}.params.{key}: {comp.name} takes {', '.join(allowed) or 'no params'}")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"{at}.params.{key}: expected a number, got {value!r}")
        if comp.enable_step < 0:
            problems.append(f"{at}.enable_step: must be >= 0, got {comp.enable_step}")
        if comp.disable_step is not None and comp.disable_step <= comp.enable_step:
            problems.append(f"{at}.disable_step: {comp.disable_step} must be after enable_step {comp.enable_step}")
    return problems


class Composition:
    """A checked reward spec, ready to score captions. Build with :meth:`from_spec`."""

    def __init__(
        self,
        name: str,
        extractor: str,
        speaker_judge: str,
        judge_threshold: float,
        parts: Sequence[Part],
        judge_prompt: str = "",
        extract_prompt: str = "",
    ):
        self.name = name
        self.extractor_name = extractor
        self.judge_name = speaker_judge
        self.judge_threshold = judge_threshold
        self.judge_prompt = judge_prompt
        self.extract_prompt = extract_prompt
        self.parts = tuple(parts)
        self._extract: Optional[Callable[[str], List[Turn]]] = None
        self._judge: Optional[Callable[..., Any]] = None

    @classmethod
    def from_spec(cls, spec: Any) -> "Composition":
        problems = check_spec(spec)
        if problems:
            from diadem_ray.config import ConfigError

            raise ConfigError(f"reward '{spec.name}'", problems)
        parts = [
            Part(
                c.name,
                float(c.weight),
                int(c.enable_step),
                None if c.disable_step is None else int(c.disable_step),
                tuple(sorted((k, float(v)) for k, v in dict(c.params).items())),
            )
            for c in spec.components
        ]
        return cls(
            spec.name,
            spec.extractor,
            spec.speaker_judge,
            float(spec.judge_threshold),
            parts,
            judge_prompt=str(spec.judge_prompt),
            extract_prompt=str(spec.extract_prompt),
        )

    def canonical(self) -> Dict[str, Any]:
        """What defines the reward (the name is a label and is left out)."""
        judge: Dict[str, Any] = {"name": self.judge_name}
        if self.judge_name == "embedding":
            judge["threshold"] = self.judge_threshold
        if self.judge_name in ("llm", "mllm"):
            judge["prompt"] = self.judge_prompt
        extractor: Dict[str, Any] = {"name": self.extractor_name}
        if self.extractor_name == "llm":
            extractor["prompt"] = self.extract_prompt
        parts = sorted(
            (
                {
                    "name": p.name,
                    "weight": p.weight,
                    "enable_step": p.enable_step,
                    "disable_step": p.disable_step,
                    "params": dict(p.params),
                }
                for p in self.parts
            ),
            key=lambda d: json.dumps(d, sort_keys=True),
        )
        return {"extractor": extractor, "speaker_judge": judge, "components": parts}

    def hash(self) -> str:
        """12 hex digits of SHA-256 over the canonical JSON."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def bind(self, *, generate: Optional[Callable[[List[str]], List[str]]] = None) -> "Composition":
        """Attach the extractor and judge (``generate`` serves the ``llm`` ones)."""
        self._extract = make_extractor(self.extractor_name, generate=generate, prompt=self.extract_prompt)
        self._judge = make_judge(
            self.judge_name, threshold=self.judge_threshold, generate=generate, prompt=self.judge_prompt
        )
        return self

    def extract(self, caption: str) -> List[Turn]:
        if self._extract is None:
            self.bind()
        assert self._extract is not None
        return self._extract(caption)

    def score(
        self,
        caption: str,
        reference: Sequence[Turn],
        *,
        step: int,
        response_tokens: int = 0,
        judge: Optional[Callable[..., Any]] = None,
        lines: bool = False,
    ) -> Scored:
        """Score one caption at GRPO ``step``; raises on any failure (callers decide what to do).

        ``lines=True`` also returns which lines got their speaker right (:func:`line_hits`, the
        REF alignment line by line); that needs the ``structured`` extractor, whose lines map back
        to caption characters.
        """
        if self._judge is None:
            self.bind()
        spans: Optional[List[Tuple[Turn, Tuple[int, int]]]] = None
        if lines:
            if self.extractor_name != "structured":
                raise ValueError(
                    f"reward '{self.name}': per-line credit needs extractor: structured "
                    f"(this reward uses {self.extractor_name!r}, whose turns do not map back to caption lines)"
                )
            spans = extract_structured_spans(caption)
            hyp = tuple(t for t, _ in spans)
        else:
            hyp = tuple(self.extract(caption))
        ctx = C.Context(
            caption=caption, hyp=hyp, ref=tuple(reference), response_tokens=response_tokens, judge=judge or self._judge
        )
        values: Dict[str, float] = {}
        reward = 0.0
        for part in self.parts:
            if not part.active(step):
                continue
            value = float(COMPONENTS[part.name](ctx, **dict(part.params)))
            values[part.name] = value
            reward += part.weight * value
        hits = line_hits(hyp, [s for _, s in spans], ctx.clip_score) if spans is not None else ()
        return Scored(reward, values, hyp, hits)
