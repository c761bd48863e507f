"""RewardWorker: a CPU actor that scores batches of rollouts against reference dialogues.

A plain class (made remote in :mod:`diadem_ray.cluster.reward_pool`), so tests can build one
without Ray. This is the actor boundary of docs/style.md §8: the pure scorer raises, the worker turns
every failure — an exception, a judge that cannot answer, a caption over the per-caption time
limit — into ``reward 0.0`` with a reason. It never raises into the driver and never drops a
sample: one result per input, in order.

Example:
    >>> from diadem_ray.types import Rollout, Turn
    >>> w = RewardWorker({"name": "t", "components": [{"name": "asr_f1"}]}, reward_timeout_s=5.0)
    >>> r = Rollout("p0", 0, (), (1, 2), (-0.1, -0.2), 'A: "hi there"', "stop", 3)
    >>> [s.reward for s in w.score_batch([(r, (Turn("A", "hi there"),))], step=0)]
    [1.0]
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from diadem_ray.types import Rollout, ScoredRollout, Turn

Item = Tuple[Rollout, Sequence[Turn]]


class CaptionTimeout(Exception):
    """Scoring one caption took longer than ``reward_timeout_s``."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`CaptionTimeout` in this thread after ``seconds`` (main thread: SIGALRM timer).

    Ray runs a synchronous actor's methods on the worker's main thread, where an interval timer
    interrupts pure-Python scoring. Elsewhere (threads) the limit is checked after the fact.

    An interrupt that lands in a garbage-collector or weakref callback is printed and swallowed by
    Python, and scoring would go on to the end. So the timer repeats until the block exits, and a
    block that finishes after the deadline fired still raises.
    """
    if threading.current_thread() is not threading.main_thread():
        start = time.perf_counter()
        yield
        if time.perf_counter() - start > seconds:
            raise CaptionTimeout(f"scoring took {time.perf_counter() - start:.2f} s > {seconds} s")
        return

    state = {"active": True, "fired": False}

    def on_alarm(signum: int, frame: Any) -> None:
        if state["active"]:
            state["fired"] = True
            raise CaptionTimeout(f"scoring exceeded {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, min(seconds, 0.05))  # then every 50 ms until disarmed
    try:
        yield
    finally:
        try:
            state["active"] = False  # a tick after this line does nothing
        finally:  # runs even when a tick raised just before the line above
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if state["fired"]:
        raise CaptionTimeout(f"scoring exceeded {seconds} s (the interrupt was swallowed; it finished late)")


class RewardWorker:
    """Owns one reward composition (extractor + judge + components) and scores batches.

    Args:
        spec: a reward composition as a plain mapping (the YAML of configs/rewards/).
        reward_timeout_s: per-caption wall-clock limit in seconds.
        generate: optional ``generate(prompts) -> texts`` for the ``llm`` extractor / judge.
    """

    def __init__(self, spec: Mapping[str, Any], *, reward_timeout_s: float = 10.0, generate: Optional[Any] = None):
        from diadem_ray.config import RewardSpec, load_structured
        from diadem_ray.rewards.compose import Composition

        problems: List[str] = []
        structured = load_structured(RewardSpec, [(" (reward spec)", dict(spec))], problems)
        if problems:
            from diadem_ray.config import ConfigError

            raise ConfigError("reward spec", problems)
        self.composition = Composition.from_spec(structured).bind(generate=generate)
        self.reward_timeout_s = float(reward_timeout_s)
        self.scored = 0
        self.failures: Dict[str, int] = {}

    def reward_hash(self) -> str:
        return self.composition.hash()

    def score_one(self, rollout: Rollout, reference: Sequence[Turn], step: int, lines: bool = False) -> ScoredRollout:
        """``lines``: also return the caption's per-line speaker verdicts (see ``Composition.score``)."""
        try:
            with _deadline(self.reward_timeout_s):
                scored = self.composition.score(
                    rollout.text, reference, step=step, response_tokens=len(rollout.token_ids), lines=lines
                )
        except CaptionTimeout as exc:
            return self._failed(rollout, "timeout", str(exc))
        except Exception as exc:  # any scorer failure becomes data here
            return self._failed(rollout, type(exc).__name__, str(exc))
        bad = [k for k, v in [("reward", scored.reward), *scored.components.items()] if not math.isfinite(v)]
        if bad:  # a NaN reward would make its group's advantages NaN: the rollout failed instead
            return self._failed(rollout, "non_finite", f"{', '.join(bad)} not finite (reward {scored.reward!r})")
        self.scored += 1
        return ScoredRollout(rollout, scored.reward, dict(scored.components), lines=scored.lines)

    def _failed(self, rollout: Rollout, kind: str, detail: str) -> ScoredRollout:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        return ScoredRollout(rollout, 0.0, {}, error=f"{kind}: {detail[:300]}")

    def score_batch(self, items: Sequence[Item], step: int, lines: bool = False) -> List[ScoredRollout]:
        """One :class:`ScoredRollout` per item, in order."""
        return [self.score_one(r, ref, step, lines) for r, ref in items]

    def stats(self) -> Dict[str, Any]:
        return {"scored": self.scored, "failures": dict(self.failures)}

    def ping(self) -> bool:
        return True
