"""Engine and learner calls over decoded clips: prompts from encoded clips, captioning lists of clips
as they decode, and recovery when media are lost with a decode worker's node (those clips are
decoded again and the call is made again)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from diadem_ray.config import TrainConfig
from diadem_ray.driver.resources import Resources
from diadem_ray.driver.state import say as _say
from diadem_ray.types import Clip, EncodedClip, Prompt

MEDIA_RETRIES = 3  # calls repeated after media were lost with a decode node


class ClipCalls:
    """Calls that carry clips to the engines and learners. ``clips``: every clip of the run by id."""

    def __init__(self, cfg: TrainConfig, res: Resources, clips: Dict[str, Clip]):
        self.cfg, self.res, self.clips = cfg, res, clips

    def prompt(self, enc: EncodedClip, tag: str) -> Prompt:
        """One decoded clip as an engine prompt; for media families its ``media`` is a
        :class:`~diadem_ray.types.MediaRef` owned by the decode worker (the replicas and learner
        ranks fetch the media; the driver never does)."""
        ids = self.res.family.prompt_ids(enc, self.res.tokens, max_prompt_tokens=self.cfg.model.max_prompt_tokens)
        return Prompt(f"{enc.clip_id}#{tag}", ids, enc.clip_id, enc.media)

    def generate(
        self, clips: Sequence[Clip], tag: str, seed: Optional[int] = None, **kwargs: Any
    ) -> List[Tuple[Clip, Any]]:
        """``(clip, rollout)`` for a list of clips (profile, eval), decoded as they are reached: groups
        of ``prompts_per_task`` × replicas clips, the next ``data.prefetch_steps`` groups decoding while
        one generates. Clips that fail to decode are left out (logged, counted)."""
        from diadem_ray.data.feed import ListFeed

        r = self.cfg.rollout
        group = max(1, r.prompts_per_task * r.num_replicas)
        feed = ListFeed(
            self.res.decoders, clips, lookahead=group * (self.cfg.data.prefetch_steps + 1), stats=self.res.feed_stats
        )
        out: List[Tuple[Clip, Any]] = []
        for start, taken in feed.groups(group):
            prompts, (ro, _) = self.roll(
                taken, [tag] * len(taken), seed=None if seed is None else seed + start, **kwargs
            )
            clip_of = {p.prompt_id: c for (c, _), p in zip(taken, prompts)}
            out.extend((clip_of[x.prompt_id], x) for x in ro)
        return out

    def roll(
        self, taken: List[Tuple[Clip, EncodedClip]], tags: Sequence[str], **kwargs: Any
    ) -> Tuple[List[Prompt], Any]:
        """``(prompts, rollouts.generate(prompts, **kwargs))`` for decoded clips."""

        def call(prompts: List[Prompt]) -> Any:
            return self.res.rollouts.generate(prompts, **kwargs)

        prompts = [self.prompt(enc, tag) for (_, enc), tag in zip(taken, tags)]
        return self._with_media(call, prompts)

    def learn(
        self, step: Callable[[Optional[List[Any]]], Dict[str, float]], prompts: Sequence[Prompt]
    ) -> Dict[str, float]:
        """``step(media)``: a learner-group call over ``prompts`` (one per sequence; the group
        checks every rank can fetch the media before any rank starts)."""
        return self._with_media(lambda ps: step(_media(ps)), list(prompts))[1]

    def _with_media(self, call: Callable[[List[Prompt]], Any], prompts: List[Prompt]) -> Tuple[List[Prompt], Any]:
        """``(prompts, call(prompts))``. Media lost with their decode worker's node before a replica
        or rank fetched them (``MediaLost``) are decoded again by the workers that remain or come
        back, and the call is made again (at most ``MEDIA_RETRIES`` times: Ray may report the
        objects of a lost owner one by one)."""
        from diadem_ray.data.media_refs import MediaLost, lost_clips

        for attempt in range(MEDIA_RETRIES + 1):
            try:
                return prompts, call(prompts)
            except MediaLost as exc:
                if attempt == MEDIA_RETRIES:
                    raise
                media = [p.media for p in prompts]
                names = sorted({p.clip_id for p in prompts if _lost_with(p.media, media, lost_clips(exc))})
                fresh = self._decode_again([self.clips[c] for c in names])
                prompts = [replace(p, media=fresh[p.clip_id].media) if p.clip_id in fresh else p for p in prompts]
        raise AssertionError("unreachable")

    def _decode_again(self, clips: Sequence[Clip]) -> Dict[str, EncodedClip]:
        """Clips whose media were lost with their decode worker, decoded by the workers that remain
        or come back (a clip that decoded before decodes again: the same input, the same result)."""
        decoders = self.res.decoders
        pending = {c.clip_id: decoders.submit(c.clip_id, c.video_uri) for c in clips}
        fresh = {cid: decoders.result(p) for cid, p in pending.items()}
        bad = {cid: e.error for cid, e in fresh.items() if e.error}
        if bad:
            raise RuntimeError(f"clips whose media were lost with their decode worker failed to decode again: {bad}")
        _say(
            f"media of {len(fresh)} clip(s) lost with their decode worker; decoded again on "
            f"{sorted({e.node[:8] for e in fresh.values()})}"
        )
        return fresh


def _lost_with(media: Any, every: Sequence[Any], lost: Sequence[str]) -> bool:
    """Whether ``media`` must be decoded again: it is named lost, it lives on the node of media
    named lost (a lost node takes all its owner's objects, and Ray may report them one by one), or
    no clip is named and it is any media at all."""
    if media is None:
        return False
    if not lost:
        return True
    nodes = {m.node for m in every if m is not None and m.clip_id in lost and m.node}
    return bool(media.clip_id in lost or (media.node and media.node in nodes))


def _media(prompts: Sequence[Prompt]) -> Optional[List[Any]]:
    """Each sequence's media reference for the learner ranks (one entry per sequence, the samples
    of a group share one), or None for text-only families. The ranks fetch the media themselves."""
    if not any(p.media is not None for p in prompts):
        return None
    return [p.media for p in prompts]
