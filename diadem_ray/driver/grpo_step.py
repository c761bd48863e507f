"""One GRPO step, from clips to an optimizer update and a weight push: rollouts → rewards → group
advantages (+ per-line credit) → the dynamic-sampling gate (:class:`~diadem_ray.grpo.GroupGate`)
→ learner update → weight sync, with the step's metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from diadem_ray.config import TrainConfig
from diadem_ray.driver.calls import ClipCalls
from diadem_ray.driver.resources import Resources
from diadem_ray.types import Clip, EncodedClip, GrpoBatch, Prompt

# (n, key) -> n decoded clips drawn with the stage's bucket weights (the driver records the cursors)
Take = Callable[[int, int], List[Tuple[Clip, EncodedClip]]]


@dataclass
class Group:
    """One prompt's group in a GRPO step: the prompt, its scored samples and their advantages (a
    float per sample, or one per token with per-line credit)."""

    prompt: Prompt
    scored: List[Any]
    advantages: List[Any]


@dataclass
class Sampled:
    """What one GRPO step sampled: the gate's groups and the seconds spent in rollouts and rewards."""

    gate: Any
    rollout_s: float = 0.0
    reward_s: float = 0.0


class GrpoStep:
    """The GRPO step of a stage (``stage``: ``grpo_stage1`` or ``grpo_stage2``). ``clips_log``: a
    JSONL file that gets one line per sampling round, ``{stage, step, round, global_step,
    clip_ids}`` (a resumed run appends the steps it replays again: the last line of a step wins)."""

    def __init__(
        self, cfg: TrainConfig, res: Resources, calls: ClipCalls, stage: str, clips_log: Optional[Path] = None
    ):
        self.cfg, self.res, self.calls, self.stage = cfg, res, calls, stage
        self.s = getattr(cfg.stages, stage)
        self.clips_log = clips_log

    def run(self, step: int, feed: Any, pool: Any, take: Take, global_step: int) -> Tuple[Dict[str, float], str]:
        """(metrics, one-line summary) of step ``step`` (0-based within the stage); ``global_step``
        seeds the sampling (a resumed run repeats the same samples)."""
        g = self.cfg.grpo
        t0 = time.perf_counter()
        m: Dict[str, float] = {}
        credit = {"lines": 0.0, "credited": 0.0, "unmapped": 0.0}
        sampled = self.sample_groups(step, feed, pool, take, global_step, m, credit)
        stats = self.res.feed_stats
        m["time/data_wait_s"] = stats.take_wait()
        m.update(stats.metrics())
        groups: List[Group] = sampled.gate.batch()  # zero-variance groups fill up (their advantage is 0)
        scored_all = [x for grp in groups for x in grp.scored]
        seq_prompts = [grp.prompt for grp in groups for _ in grp.scored]
        # A rollout that ended before its first token (vLLM drew a media placeholder, which is dropped) is
        # an empty row: no token is trained, and its reward still counted in its group's baseline.
        batch = GrpoBatch.of(
            [p.prompt_token_ids for p in seq_prompts],
            [x.rollout.token_ids for x in scored_all],
            [a for grp in groups for a in grp.advantages],
            rollout_logprobs=[x.rollout.logprobs for x in scored_all],
        )
        loss = dict(
            clip_eps_low=g.clip_eps_low,
            clip_eps_high=g.clip_eps_high,
            dual_clip_c=g.dual_clip_c,
            kl_coef=g.kl_coef,
            kl_estimator=g.kl_estimator,
            entropy_coef=g.entropy_coef,
            loss_aggregation=g.loss_aggregation,
            temperature=self.cfg.rollout.temperature,
        )
        td = time.perf_counter()
        self.res.rollouts.sleep()
        # the media references ride in the batch; lost ones are decoded again and the step repeated
        lm = self.calls.learn(
            lambda media: self.res.learners.grpo_step(replace(batch, media=tuple(media or ())), **loss), seq_prompts
        )
        te = time.perf_counter()
        sm = self.res.push_weights()
        m.update(lm)
        m.update(sm)
        comps: Dict[str, List[float]] = {}
        for x in scored_all:
            for k, v in x.components.items():
                comps.setdefault(k, []).append(v)
        m.update({f"reward/{k}": sum(v) / len(v) for k, v in comps.items()})
        m["reward/mean"] = sum(x.reward for x in scored_all) / len(scored_all)
        m["reward/failed"] = float(sum(x.error is not None for x in scored_all))
        m["grpo/scored_rollouts"] = float(len(scored_all))
        m["grpo/zero_variance_groups"] = float(sampled.gate.zero_variance)
        m["grpo/refill_rounds"] = float(sampled.gate.refills)
        m["grpo/zero_variance_in_batch"] = float(sum(1 for grp in groups if not any(map(_nonzero, grp.advantages))))
        if g.line_credit_weight > 0:
            m.update({f"grpo/line_credit_{k}": v for k, v in credit.items()})
        m["rollout/response_tokens_mean"] = batch.num_tokens / len(batch)
        m.update(
            {
                "time/rollout_s": sampled.rollout_s,
                "time/reward_s": sampled.reward_s,
                "time/learner_s": te - td,
                "time/sync_s": sm["sync/seconds"],
                "time/step_s": time.perf_counter() - t0,
            }
        )
        lines = f" lines credited {credit['credited']:.0f}/{credit['lines']:.0f}" if g.line_credit_weight > 0 else ""
        summary = (
            f"reward {m['reward/mean']:.3f} asr {m.get('reward/asr_f1', 0):.3f} ref {m.get('reward/ref_f1', 0):.3f} "
            f"zero-var {sampled.gate.zero_variance}{lines}"
        )
        return m, summary

    def sample_groups(
        self,
        step: int,
        feed: Any,
        pool: Any,
        take: Take,
        global_step: int,
        m: Dict[str, float],
        credit: Dict[str, float],
    ) -> Sampled:
        """One step's groups: clips -> rollouts -> rewards -> group advantages (+ per-line credit),
        refilled while the dynamic-sampling gate sets zero-variance groups aside. Adds the first
        round's rollout and reward-pool metrics to ``m``; ``credit`` counts per-line credit."""
        import torch

        from diadem_ray import grpo

        g, r = self.cfg.grpo, self.cfg.rollout
        gate = grpo.GroupGate(
            wanted=self.s.prompts_per_step, dynamic_sampling=g.dynamic_sampling, max_refill_rounds=g.max_refill_rounds
        )
        out = Sampled(gate)
        while gate.more():
            round_ = gate.rounds
            taken = take(gate.need(), step * 100 + round_)
            # The next steps' clips decode while this one rolls out and trains; so do those of the
            # refill round that may follow (dynamic sampling), while this round is scored.
            feed.prefetch(
                step + 1, also=[step * 100 + round_ + 1] if g.dynamic_sampling and round_ < g.max_refill_rounds else []
            )
            clips = [c for c, _ in taken]
            if self.clips_log is not None:
                line = dict(stage=self.stage, step=step, round=round_, global_step=global_step)
                with self.clips_log.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({**line, "clip_ids": [c.clip_id for c in clips]}) + "\n")
            ta = time.perf_counter()
            prompts, (rollouts, rm) = self.calls.roll(
                taken,
                [f"{self.stage}.{step}.{round_}.{i}" for i in range(len(taken))],
                samples_per_prompt=r.samples_per_prompt,
                max_new_tokens=r.max_new_tokens,
                temperature=r.temperature,
                top_p=r.top_p,
                seed=self.cfg.run.seed * 7919 + global_step * 31 + round_,
            )
            tb = time.perf_counter()
            scored, stats = pool.score(
                [(ro, clips[i // r.samples_per_prompt].dialogue) for i, ro in enumerate(rollouts)],
                step=step,
                lines=g.line_credit_weight > 0,
            )
            out.rollout_s += tb - ta
            out.reward_s += time.perf_counter() - tb
            rewards = torch.tensor([x.reward for x in scored]).view(len(clips), r.samples_per_prompt)
            adv, zv = grpo.group_advantages(
                rewards, baseline=g.advantage_baseline, std_normalization=g.std_normalization, eps=g.std_eps
            )
            groups = []
            for i in range(len(clips)):
                group = scored[i * r.samples_per_prompt : (i + 1) * r.samples_per_prompt]
                group_adv: List[Any] = adv[i].tolist()
                if g.line_credit_weight > 0:
                    group_adv = grpo.line_credit(
                        group, group_adv, decode=self.res.tokens.decode, weight=g.line_credit_weight, counts=credit
                    )
                groups.append(Group(prompts[i], group, group_adv))
            gate.add(groups, [bool(z) for z in zv.tolist()])
            if round_ == 0:
                m.update({f"rollout/{k}": v for k, v in rm.items()})
                m.update({f"reward_pool/{k}": v for k, v in stats.as_metrics().items()})
        return out


def _nonzero(advantage: Any) -> bool:
    """A sequence's advantage (a float, or one per token) is not all zero."""
    return any(advantage) if isinstance(advantage, list) else bool(advantage)
