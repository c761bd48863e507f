"""The wire format every layer speaks: plain frozen dataclasses, stdlib only.

Units are in the field names or documented next to them: seconds (``_s``), sample rates in hertz
(``_hz``). Media are never embedded in what the driver sends: a :class:`Prompt` carries a
:class:`MediaRef` to media a decode worker put in the object store, so only small objects cross
the driver.

Example:
    >>> t = Turn(speaker="the woman in the red coat", text="Where were you?", start_s=0.4, end_s=1.6)
    >>> t.line()
    'the woman in the red coat: Where were you?'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Turn:
    """One utterance of a dialogue.

    Attributes:
        speaker: the speaker's description as a viewer would give it ("the man in scrubs") or a
            character-bank name; never empty.
        text: the words spoken, verbatim.
        start_s / end_s: time span within the clip in seconds, or ``None`` when unknown
            (DiaDemBench references carry no times).
    """

    speaker: str
    text: str
    start_s: Optional[float] = None
    end_s: Optional[float] = None

    def line(self) -> str:
        """The DiaDemBench line form ``"<speaker>: <utterance>"``."""
        return f"{self.speaker}: {self.text}"


@dataclass(frozen=True)
class Clip:
    """One audiovisual clip with its ground truth.

    Attributes:
        clip_id: unique id within a dataset (DiaDemBench ``video_id``).
        video_uri: local path or any pyarrow/fsspec URI (``s3://…``) of the MP4.
        duration_s: clip length in seconds.
        language: BCP-47-ish tag, e.g. ``"en"``, ``"zh"``.
        prompt: the user instruction given to the captioner for this clip.
        characters: descriptions of the people a viewer can see.
        dialogue: the reference dialogue, in order.
        speaker_num: number of distinct speakers; 0 encodes overlapping speech (DiaDemBench).
        people_on_screen: people visible (DiaDemBench ``people_num_in_screen``).
        is_single_shot / has_off_screen_speaker / has_same_sex_speakers /
        only_opposite_sex_speakers: DiaDemBench scenario attributes.
        bucket: difficulty bucket name (``"easy"``, ``"hard"``, …) or ``""`` before profiling.
        pass_rate: mean reward of the profiling policy on this clip in [0, 1], or ``None``.
    """

    clip_id: str
    video_uri: str
    duration_s: float
    language: str
    prompt: str
    characters: Tuple[str, ...]
    dialogue: Tuple[Turn, ...]
    speaker_num: int
    people_on_screen: int
    is_single_shot: bool
    has_off_screen_speaker: bool
    has_same_sex_speakers: bool
    only_opposite_sex_speakers: bool
    bucket: str = ""
    pass_rate: Optional[float] = None

    def gt_dialogues(self) -> list[str]:
        """The reference as DiaDemBench ``gt_dialogues`` lines."""
        return [t.line() for t in self.dialogue]


@dataclass(frozen=True)
class Prompt:
    """One request to the rollout engines: the tokens to continue and, for media families, the clip.

    Attributes:
        prompt_id: unique within a call; the rollouts echo it.
        prompt_token_ids: the tokens the engine continues (and the learner scores), ``[prompt_len]``;
            for Qwen2.5-Omni with the media placeholders already expanded.
        clip_id: the clip it was built from (``""`` when it has none).
        media: ``None``, a :class:`MediaRef` to the clip's media (what the driver sends: the replica
            fetches them), or the media mapping itself (tests, the service); fields in
            ``models/families.py``.
        multi_modal_data: raw vLLM ``multi_modal_data``, passed to vLLM engines as is.
    """

    prompt_id: str
    prompt_token_ids: Tuple[int, ...]
    clip_id: str = ""
    media: Any = None
    multi_modal_data: Any = None


@dataclass(frozen=True)
class Rollout:
    """One sampled caption for one prompt.

    Attributes:
        prompt_id: the :class:`Prompt` it answers.
        sample_index: 0 … samples_per_prompt-1 within its group.
        prompt_token_ids: tokens the engine saw, shape ``[prompt_len]``.
        token_ids: generated tokens, shape ``[response_len]``.
        logprobs: per-token log-probabilities under the sampling policy (nats), shape
            ``[response_len]``.
        text: the decoded caption.
        finish_reason: ``"stop"`` | ``"length"`` | ``"abort"``.
        policy_version: the weight version that produced it (see WeightSync).
    """

    prompt_id: str
    sample_index: int
    prompt_token_ids: Tuple[int, ...]
    token_ids: Tuple[int, ...]
    logprobs: Tuple[float, ...]
    text: str
    finish_reason: str
    policy_version: int


class LineHit(NamedTuple):
    """One caption line matched to a reference line, for per-line credit in GRPO.

    Attributes:
        start / end: character offsets of the line's speaker phrase in the caption (``[start, end)``).
        ref_index: which reference line it was aligned to (index into the cleaned reference).
        hit: whether the speaker judge called its speaker the reference line's speaker (a REF hit).
    """

    start: int
    end: int
    ref_index: int
    hit: bool


@dataclass(frozen=True)
class ScoredRollout:
    """A rollout with its scalar reward and the parts that made it.

    Attributes:
        rollout: the scored sample.
        reward: the weighted sum of enabled components (dimensionless).
        components: component name → unweighted value, e.g. ``{"asr_f1": 0.8, "ref_f1": 0.5}``.
        error: ``None``, or why it could not be scored (then ``reward == 0.0``); counted, never
            dropped.
        lines: the caption's matched lines when per-line credit was asked for, else empty.
    """

    rollout: Rollout
    reward: float
    components: Mapping[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    lines: Tuple[LineHit, ...] = ()


@dataclass(frozen=True)
class GrpoBatch:
    """The sequences of one GRPO update, one entry per sequence (a group's samples consecutive), as
    the driver hands them to the learner group and as each learner rank receives its part.

    Attributes:
        prompt_token_ids: ``[B][prompt_len_b]``.
        response_token_ids: ``[B][response_len_b]``; a response may be empty (a sample that ended
            before its first token trains nothing; its reward still counted in its group's baseline).
        advantages: ``[B]``: a float per sequence, or a tuple of one float per response token.
        rollout_logprobs: ``[B][response_len_b]``: the engine's log-probs of the sampled tokens
            (nats, at the sampling temperature), or empty when not known.
        media: ``[B]``: each sequence's media (a :class:`MediaRef`, shared by a group's samples)
            for families with media, or empty.
    """

    prompt_token_ids: Tuple[Tuple[int, ...], ...]
    response_token_ids: Tuple[Tuple[int, ...], ...]
    advantages: Tuple[Any, ...]
    rollout_logprobs: Tuple[Tuple[float, ...], ...] = ()
    media: Tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.prompt_token_ids)
        for name in ("response_token_ids", "advantages", "rollout_logprobs", "media"):
            got = len(getattr(self, name))
            if got != n and not (got == 0 and name in ("rollout_logprobs", "media")):
                raise ValueError(f"GrpoBatch: {n} prompts but {got} {name.replace('_', ' ')}")

    @classmethod
    def of(
        cls,
        prompt_token_ids: Sequence[Sequence[int]],
        response_token_ids: Sequence[Sequence[int]],
        advantages: Sequence[Any],
        *,
        rollout_logprobs: Optional[Sequence[Sequence[float]]] = None,
        media: Optional[Sequence[Any]] = None,
    ) -> "GrpoBatch":
        """From lists (any sequences); per-token advantages stay per token."""
        return cls(
            tuple(tuple(int(t) for t in p) for p in prompt_token_ids),
            tuple(tuple(int(t) for t in r) for r in response_token_ids),
            tuple(tuple(a) if isinstance(a, (list, tuple)) else a for a in advantages),
            tuple(tuple(row) for row in rollout_logprobs) if rollout_logprobs is not None else (),
            tuple(media) if media is not None else (),
        )

    def __len__(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        """Response tokens over the whole batch (what token-mean losses divide by)."""
        return sum(len(r) for r in self.response_token_ids)

    @property
    def max_response_len(self) -> int:
        return max((len(r) for r in self.response_token_ids), default=0)

    def part(self, s: slice) -> "GrpoBatch":
        """The sequences ``s`` (one learner rank's share)."""
        return GrpoBatch(
            self.prompt_token_ids[s],
            self.response_token_ids[s],
            self.advantages[s],
            self.rollout_logprobs[s] if self.rollout_logprobs else (),
            self.media[s] if self.media else (),
        )


@dataclass(frozen=True)
class MediaRef:
    """A clip's media in the object store, owned by the decode worker that put it there.

    The driver and the reward workers only pass it on; rollout replicas and learner ranks fetch the
    object from the worker's node. The owner (a long-lived decode worker) keeps it alive while any
    holder keeps this record; if the owner's node is lost, fetching raises Ray's ``OwnerDiedError``.

    Attributes:
        ref: the Ray ObjectRef of the media mapping (see ``models/families.py`` for its fields).
        nbytes: the mapping's array bytes (for accounting; 0 when unknown).
        clip_id: the clip the media were decoded from (names it when the media are lost).
        node: the Ray node id of the decode worker that owns them (media owned on a lost node are
            all lost together).
    """

    ref: Any
    nbytes: int = 0
    clip_id: str = ""
    node: str = ""


@dataclass(frozen=True)
class EncodedClip:
    """One clip made ready for a model family by a decode worker.

    Attributes:
        clip_id: the clip it was made from.
        evidence: ``tiny_av``: the front-end's evidence text (a few hundred bytes); else ``""``.
        prompt_token_ids: ``qwen2_5_omni``: the prompt's token ids with the media placeholders
            expanded, ``[prompt_len]``; else empty.
        media: ``qwen2_5_omni``: the clip's media; else ``None``.
        error: why the clip could not be decoded (then nothing else is set); ``""`` on success.
        cached: whether the result came from the per-clip cache.
        node: the Ray node id of the worker that made it.
        seconds: the worker's wall time for the clip (decode + encode, or the cache read).
    """

    clip_id: str
    evidence: str = ""
    prompt_token_ids: Tuple[int, ...] = ()
    media: Optional[MediaRef] = None
    error: str = ""
    cached: bool = False
    node: str = ""
    seconds: float = 0.0
