"""The training driver: one loop, read top to bottom (``diadem-ray train`` / ``diadem-ray demo``).

Stages, in the order the config lists them: ``sft`` → ``profile`` → ``grpo_stage1`` →
``grpo_stage2`` → ``eval``; held-out clips are evaluated before training and after every training
stage. One GRPO step: clips (resumable cursors, the driver's order) → decoded ahead on the decode
pool (tiny_av's front-end evidence, or Qwen2.5-Omni's token ids + a reference to the video/audio
media, which never pass through the driver) → prompts →
rollouts → reward pool → group advantages + dynamic-sampling gate → learner step → weight sync →
metrics → checkpoint every ``checkpoint.every_steps``.

A checkpoint holds the learner state (DeepSpeed) and, in its metadata, the driver state: stage,
step within the stage, global metric step, data cursors, policy_version, MLflow run id and the
evaluations so far. ``resume=True`` restores all of it, pushes the weights to the engines, and
continues the same MLflow run at the next step.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from diadem_ray.config import TrainConfig
from diadem_ray.driver.evaluation import Evaluation
from diadem_ray.driver.startup import Startup
from diadem_ray.driver.state import STEP_METRIC, DriverState, hash_name
from diadem_ray.driver.state import say as _say
from diadem_ray.types import Clip, EncodedClip, Prompt


class Driver(Startup, Evaluation):
    """One training run. Its parts share these attributes: ``cfg``, ``out`` (runs/<name>), ``state``;
    set by startup: ``clips``, ``decoders``, ``feed_stats``, ``split_ids``, ``train_root`` / ``eval_root``,
    ``annotations``, ``tokens``, ``rollouts``, ``learners``, ``sync``, ``tracker``, ``pools``."""

    def __init__(self, cfg: TrainConfig, *, config_dir: str = "configs", resume: bool = False):
        from diadem_ray.models.families import get_family

        self.cfg = cfg
        self.family = get_family(cfg.model.family)
        self.config_dir = Path(config_dir)
        self.resume = resume
        self.out = Path(cfg.run.output_dir) / cfg.run.name
        self.ckpt_dir = self.out / "checkpoints"
        self.state = DriverState()
        self.pools: Dict[str, Any] = {}
        self.reward_specs: Dict[str, Any] = {}
        self.placement: Dict[str, List[str]] = {}  # role (decode, learner, rollout, reward) -> node id per actor or clip
        self.tracker: Any = None
        self._logged_through = -1  # the last global step whose metrics MLflow holds from an earlier attempt

    # ------------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------------

    def run(self) -> Dict[str, Dict[str, float]]:
        from diadem_ray.driver import recovery

        self._start_ray()
        try:
            self._prepare_data()
            self._start_actors()
            self._restored_profile()
            self._start_tracking()
            restarts = 0
            while True:
                try:
                    self._run_stages()
                    break
                except recovery.group_lost_errors() as exc:
                    restarts += 1
                    if restarts > self.cfg.run.max_restarts:
                        raise recovery.RunFailed(
                            f"the learner/rollout group was lost {restarts} times, more than run.max_restarts "
                            f"{self.cfg.run.max_restarts}; last: {recovery.describe_loss(exc)}") from exc
                    recovery.recover(self, exc, restarts)
            self._report()
            self.tracker.end()
            return self.state.evals
        except BaseException:
            if getattr(self, "tracker", None) is not None:
                self.tracker.end("KILLED")
            raise
        finally:
            self._stop()

    def _run_stages(self) -> None:
        """The stages of ``run.stages`` not yet done, from where the state says."""
        for stage in self.cfg.run.stages:
            if stage in self.state.done_stages:
                continue
            self.state.stage = stage
            if stage == "sft":
                self._evaluate("untrained")
                self._sft()
                self._evaluate("sft")
                self._export_policy("sft")
            elif stage == "profile":
                self._profile()
            elif stage in ("grpo_stage1", "grpo_stage2"):
                self._grpo(stage)
                self._evaluate(stage)
                self._export_policy(stage)
            elif stage == "eval":
                self._evaluate("final")
            self.state.done_stages.append(stage)
            self.state.stage_step = 0
            self._record_stage_done(stage)

    # ------------------------------------------------------------------------------------------
    # prompts
    # ------------------------------------------------------------------------------------------

    def _prompt(self, enc: EncodedClip, tag: str) -> Prompt:
        """One decoded clip as an engine prompt; for media families its ``media`` is a
        :class:`~diadem_ray.types.MediaRef` owned by the decode worker (the replicas and learner
        ranks fetch the media; the driver never does)."""
        ids = self.family.prompt_ids(enc, self.tokens, max_prompt_tokens=self.cfg.model.max_prompt_tokens)
        return Prompt(f"{enc.clip_id}#{tag}", ids, enc.clip_id, enc.media)

    def _generate(self, clips: Sequence[Clip], tag: str, seed: Optional[int] = None, **kwargs: Any) -> List[Tuple[Clip, Any]]:
        """``(clip, rollout)`` for a list of clips (profile, eval), decoded as they are reached: groups
        of ``prompts_per_task`` × replicas clips, the next ``data.prefetch_steps`` groups decoding while
        one generates. Clips that fail to decode are left out (logged, counted)."""
        from diadem_ray.data.feed import ListFeed

        r = self.cfg.rollout
        group = max(1, r.prompts_per_task * r.num_replicas)
        feed = ListFeed(self.decoders, clips, lookahead=group * (self.cfg.data.prefetch_steps + 1), stats=self.feed_stats)
        out: List[Tuple[Clip, Any]] = []
        for start, taken in feed.groups(group):
            prompts, (ro, _) = self._roll(taken, [tag] * len(taken), seed=None if seed is None else seed + start, **kwargs)
            clip_of = {p.prompt_id: c for (c, _), p in zip(taken, prompts)}
            out.extend((clip_of[x.prompt_id], x) for x in ro)
        return out

    def _roll(self, taken: List[Tuple[Clip, EncodedClip]], tags: Sequence[str], **kwargs: Any):
        """``(prompts, rollouts.generate(prompts, **kwargs))`` for decoded clips. Media lost with
        their decode worker's node before a replica fetched them (``MediaLost``) are decoded again
        by the workers that remain or come back, and the call is made again (at most
        ``MEDIA_RETRIES`` times: Ray may report the objects of a lost owner one by one)."""
        from diadem_ray.data.media_refs import MediaLost, lost_clips

        for attempt in range(MEDIA_RETRIES + 1):
            prompts = [self._prompt(enc, tag) for (_, enc), tag in zip(taken, tags)]
            try:
                return prompts, self.rollouts.generate(prompts, **kwargs)
            except MediaLost as exc:
                if attempt == MEDIA_RETRIES:
                    raise
                media = [e.media for _, e in taken]
                fresh = self._decode_again([c for c, e in taken if _lost_with(e.media, media, lost_clips(exc))])
                taken = [(c, fresh.get(c.clip_id, e)) for c, e in taken]
        raise AssertionError("unreachable")

    def _decode_again(self, clips: Sequence[Clip]) -> Dict[str, EncodedClip]:
        """Clips whose media were lost with their decode worker, decoded by the workers that remain
        or come back (a clip that decoded before decodes again: the same input, the same result)."""
        pending = {c.clip_id: self.decoders.submit(c.clip_id, c.video_uri) for c in clips}
        fresh = {cid: self.decoders.result(p) for cid, p in pending.items()}
        bad = {cid: e.error for cid, e in fresh.items() if e.error}
        if bad:
            raise RuntimeError(f"clips whose media were lost with their decode worker failed to decode again: {bad}")
        _say(f"media of {len(fresh)} clip(s) lost with their decode worker; decoded again on "
             f"{sorted({e.node[:8] for e in fresh.values()})}")
        return fresh

    def _learn(self, step: Any, prompts: Sequence[Prompt]) -> Dict[str, float]:
        """``step(media)``: a learner-group call over ``prompts`` (one per sequence). When media are
        lost before the ranks fetched them (the group checks before any rank starts), the lost clips
        are decoded again and the call is made again (at most ``MEDIA_RETRIES`` times)."""
        from diadem_ray.data.media_refs import MediaLost, lost_clips

        for attempt in range(MEDIA_RETRIES + 1):
            try:
                return step(_media(prompts))
            except MediaLost as exc:
                if attempt == MEDIA_RETRIES:
                    raise
                media = [p.media for p in prompts]
                names = sorted({p.clip_id for p in prompts if _lost_with(p.media, media, lost_clips(exc))})
                fresh = self._decode_again([self.clips[c] for c in names])
                prompts = [replace(p, media=fresh[p.clip_id].media) if p.clip_id in fresh else p for p in prompts]
        raise AssertionError("unreachable")

    def _stream(self, name: str, root: str, buckets: Optional[Sequence[str]]):
        from diadem_ray.data.cursor import ClipStream

        return ClipStream(root, buckets, seed=self.cfg.run.seed + hash_name(name), cursor=self.state.cursors.get(name))

    def _feed(self, stage: str, streams: Dict[str, Any], weights: Dict[str, float], per_step: int, steps: int,
              key_stride: int) -> Any:
        """The stage's clips in the driver's order, decoding ``data.prefetch_steps`` steps ahead."""
        from diadem_ray.data.feed import StageFeed

        feed = StageFeed(self.decoders, streams, weights, seed=self.cfg.run.seed, stage=stage, per_step=per_step,
                         steps=steps, prefetch_steps=self.cfg.data.prefetch_steps, stats=self.feed_stats,
                         key_stride=key_stride)
        feed.prefetch(self.state.stage_step)
        self.feed_stats.take_wait()  # a step's wait counts from its own start
        return feed

    def _take(self, feed: Any, n: int, key: int, stage: str) -> List[Tuple[Clip, EncodedClip]]:
        """``n`` decoded clips drawn bucket by bucket with the stage's weights (deterministic per
        ``key``); the cursors of the clips taken go into the driver state."""
        taken = feed.take(n, key)
        for b, cursor in feed.cursors.items():
            self.state.cursors[f"{stage}:{b}"] = cursor
        return taken

    # ------------------------------------------------------------------------------------------
    # stages
    # ------------------------------------------------------------------------------------------

    def _sft(self) -> None:
        s = self.cfg.stages.sft
        self.learners.set_lr(s.lr or self.cfg.learner.lr)
        buckets = sorted(s.buckets) or None
        streams = {"all": self._stream("sft:all", self.train_root, buckets)} if buckets is None else \
            {b: self._stream(f"sft:{b}", self.train_root, [b]) for b in buckets}
        weights = dict(s.buckets) if buckets else {"all": 1.0}
        _say(f"SFT: {s.steps} steps x {s.prompts_per_step} clips")
        self.rollouts.sleep()  # colocated layout: the learners get the GPUs for the whole stage
        feed = self._feed("sft", streams, weights, s.prompts_per_step, s.steps, key_stride=1)
        for step in range(self.state.stage_step, s.steps):
            t0 = time.perf_counter()
            taken = self._take(feed, s.prompts_per_step, step, "sft")
            feed.prefetch(step + 1)  # the next steps' clips decode while this one trains
            wait = self.feed_stats.take_wait()
            prompts = [self._prompt(enc, "sft") for _, enc in taken]
            targets = [self.tokens.target(self.family.sft_target(c)) for c, _ in taken]
            m = self._learn(lambda media: self.learners.sft_step([list(p.prompt_token_ids) for p in prompts], targets,
                                                                 media=media), prompts)
            m.update(self.feed_stats.metrics())
            m["time/data_wait_s"] = wait
            m["time/step_s"] = time.perf_counter() - t0
            self._end_step("sft", step, s.steps, m, f"loss {m.get('learner/sft_loss', float('nan')):.3f}")
        self._push_weights()

    def _profile(self, root: Optional[str] = None) -> None:
        """Roll out the current policy on every training clip, then bucket clips by difficulty
        (:mod:`diadem_ray.data.profile`); writes partitioned shards and ``profile.jsonl`` to ``root``."""
        from dataclasses import replace

        from diadem_ray.data.profile import profile_clips, summary, write_marks
        from diadem_ray.data.shards import write_shards

        p = self.cfg.stages.profile
        train = [self.clips[i] for i in self.split_ids["train"] if i not in self.feed_stats.failed]
        _say(f"profile: {len(train)} clips x {p.samples_per_prompt} samples with reward {p.reward!r}")
        t0 = time.perf_counter()
        rollouts = self._generate(train, "profile", samples_per_prompt=p.samples_per_prompt,
                                  max_new_tokens=self.cfg.rollout.max_new_tokens, temperature=self.cfg.rollout.temperature,
                                  top_p=self.cfg.rollout.top_p, seed=self.cfg.run.seed)  # GRPO's sampling
        by_id = {c.clip_id: c for c in train}
        scored, _ = self._pool(p.reward).score([(r, c.dialogue) for c, r in rollouts], step=0)
        rewards: Dict[str, List[float]] = {c.clip_id: [] for c in train if c.clip_id not in self.feed_stats.failed}
        for (c, _), s in zip(rollouts, scored):
            rewards[c.clip_id].append(s.reward)
        profiles = profile_clips(rewards, pass_reward=p.pass_reward, bucket_names=p.bucket_names,
                                 pass_rate_edges=p.pass_rate_edges, quantiles=p.quantiles)
        root = root or str(self.out / "profiled")
        write_shards([replace(by_id[q.clip_id], bucket=q.bucket, pass_rate=q.pass_rate) for q in profiles], root, replace=True)
        marks = write_marks(profiles, root)
        self.train_root = root
        table, metrics = summary(profiles, p.bucket_names)
        metrics["profile/seconds"] = time.perf_counter() - t0
        _say(f"difficulty profile ({metrics['profile/seconds']:.0f} s; shards in {root}, per-clip marks in {marks}):\n{table}")
        if self.tracker is not None:
            self.tracker.log_text(table, "profile/summary.txt")
            self.tracker.log_artifact(marks)
            self.tracker.log_metrics(metrics, step=self.state.global_step)

    def profile_only(self, policy: str, root: str) -> None:
        """``diadem-ray profile``: profile the training clips with an exported policy (rollout
        replicas and reward workers only; no learners, no MLflow run)."""
        from diadem_ray.models.policy import read_policy

        policy_dir, meta = read_policy(policy)
        _say(f"profiling with {policy_dir} ({meta.family}, run {meta.run!r} after {meta.stage}, policy_version {meta.policy_version})")
        self._start_ray()
        try:
            self._prepare_data()
            self._start_rollouts(str(policy_dir))
            self._profile(root)
        finally:
            self._stop()

    def _restored_profile(self) -> None:
        """GRPO stages read the profiled shards: this run's own profile stage, or — when the run
        does not profile — those a `diadem-ray profile` wrote into runs/<name>/profiled."""
        from diadem_ray.data.profile import MARKS_FILE

        root = self.out / "profiled"
        if "profile" in self.state.done_stages:
            self.train_root = str(root)
        elif "profile" not in self.cfg.run.stages and (root / MARKS_FILE).is_file():
            self.train_root = str(root)
            _say(f"GRPO stages read the buckets profiled earlier in {root}")

    def _grpo(self, stage: str) -> None:
        s = getattr(self.cfg.stages, stage)
        g, r = self.cfg.grpo, self.cfg.rollout
        self.learners.set_lr(s.lr or self.cfg.learner.lr)
        from diadem_ray.data.shards import bucket_names

        present = set(bucket_names(self.train_root))
        weights = {b: w for b, w in s.buckets.items() if b in present and w > 0}
        if not weights:
            raise ValueError(f"{stage}: none of its buckets {sorted(s.buckets)} has clips in {self.train_root} "
                             f"(present: {sorted(present)}); run the profile stage or change stages.{stage}.buckets")
        streams = {b: self._stream(f"{stage}:{b}", self.train_root, [b]) for b in weights}
        feed = self._feed(stage, streams, weights, s.prompts_per_step, s.steps, key_stride=100)
        pool = self._pool(s.reward, grpo=True)
        self._anchor_reference(stage)
        _say(f"{stage}: {s.steps} steps x {s.prompts_per_step} clips x {r.samples_per_prompt} samples, buckets {weights}, reward {s.reward!r}")
        for step in range(self.state.stage_step, s.steps):
            t0 = time.perf_counter()
            m: Dict[str, float] = {}
            credit = {"lines": 0.0, "credited": 0.0, "unmapped": 0.0}
            sampled = self._sample_groups(stage, step, feed, pool, m, credit)
            m["time/data_wait_s"] = self.feed_stats.take_wait()
            m.update(self.feed_stats.metrics())
            batch: List[Group] = sampled.gate.batch()  # zero-variance groups fill up (their advantage is 0)
            scored_all = [x for grp in batch for x in grp.scored]
            seq_prompts = [grp.prompt for grp in batch for _ in grp.scored]
            prompt_ids = [list(p.prompt_token_ids) for p in seq_prompts]
            # A rollout that ended before its first token (vLLM drew a media placeholder, which is dropped) is
            # an empty row: no token is trained, and its reward still counted in its group's baseline.
            responses = [list(x.rollout.token_ids) for x in scored_all]
            rollout_lps = [list(x.rollout.logprobs) for x in scored_all]
            advantages = [a for grp in batch for a in grp.advantages]
            td = time.perf_counter()
            self.rollouts.sleep()
            lm = self._learn(lambda media: self.learners.grpo_step(
                prompt_ids, responses, advantages, rollout_logprobs=rollout_lps, clip_eps_low=g.clip_eps_low,
                clip_eps_high=g.clip_eps_high, dual_clip_c=g.dual_clip_c, kl_coef=g.kl_coef, kl_estimator=g.kl_estimator,
                entropy_coef=g.entropy_coef, loss_aggregation=g.loss_aggregation, media=media,
                temperature=self.cfg.rollout.temperature), seq_prompts)
            te = time.perf_counter()
            sm = self._push_weights()
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
            m["grpo/zero_variance_in_batch"] = float(sum(1 for grp in batch if not any(map(_nonzero, grp.advantages))))
            if g.line_credit_weight > 0:
                m.update({f"grpo/line_credit_{k}": v for k, v in credit.items()})
            m["rollout/response_tokens_mean"] = sum(len(x) for x in responses) / len(responses)
            m.update({"time/rollout_s": sampled.rollout_s, "time/reward_s": sampled.reward_s, "time/learner_s": te - td,
                      "time/sync_s": sm["sync/seconds"], "time/step_s": time.perf_counter() - t0})
            lines = f" lines credited {credit['credited']:.0f}/{credit['lines']:.0f}" if g.line_credit_weight > 0 else ""
            self._end_step(stage, step, s.steps, m, f"reward {m['reward/mean']:.3f} asr {m.get('reward/asr_f1', 0):.3f} "
                           f"ref {m.get('reward/ref_f1', 0):.3f} zero-var {sampled.gate.zero_variance}{lines}")

    def _sample_groups(self, stage: str, step: int, feed: Any, pool: Any, m: Dict[str, float],
                       credit: Dict[str, float]) -> "Sampled":
        """One GRPO step's groups: clips -> rollouts -> rewards -> group advantages (+ per-line credit),
        refilled while the dynamic-sampling gate (:class:`~diadem_ray.grpo.GroupGate`) sets
        zero-variance groups aside. Adds the first round's rollout and reward-pool metrics to ``m``;
        ``credit`` counts per-line credit."""
        import torch

        from diadem_ray import grpo

        s = getattr(self.cfg.stages, stage)
        g, r = self.cfg.grpo, self.cfg.rollout
        gate = grpo.GroupGate(wanted=s.prompts_per_step, dynamic_sampling=g.dynamic_sampling,
                              max_refill_rounds=g.max_refill_rounds)
        out = Sampled(gate)
        while gate.more():
            round_ = gate.rounds
            taken = self._take(feed, gate.need(), step * 100 + round_, stage)
            # The next steps' clips decode while this one rolls out and trains; so do those of the
            # refill round that may follow (dynamic sampling), while this round is scored.
            feed.prefetch(step + 1, also=[step * 100 + round_ + 1] if g.dynamic_sampling and
                          round_ < g.max_refill_rounds else [])
            clips = [c for c, _ in taken]
            ta = time.perf_counter()
            prompts, (rollouts, rm) = self._roll(taken, [f"{stage}.{step}.{round_}.{i}" for i in range(len(taken))],
                                                 samples_per_prompt=r.samples_per_prompt, max_new_tokens=r.max_new_tokens,
                                                 temperature=r.temperature, top_p=r.top_p,
                                                 seed=self.cfg.run.seed * 7919 + self.state.global_step * 31 + round_)
            tb = time.perf_counter()
            scored, stats = pool.score([(ro, clips[i // r.samples_per_prompt].dialogue) for i, ro in enumerate(rollouts)],
                                       step=step, lines=g.line_credit_weight > 0)
            out.rollout_s += tb - ta
            out.reward_s += time.perf_counter() - tb
            rewards = torch.tensor([x.reward for x in scored]).view(len(clips), r.samples_per_prompt)
            adv, zv = grpo.group_advantages(rewards, baseline=g.advantage_baseline, std_normalization=g.std_normalization, eps=g.std_eps)
            groups = []
            for i in range(len(clips)):
                group = scored[i * r.samples_per_prompt:(i + 1) * r.samples_per_prompt]
                group_adv: List[Any] = adv[i].tolist()
                if g.line_credit_weight > 0:
                    group_adv = grpo.line_credit(group, group_adv, decode=self.tokens.decode,
                                                 weight=g.line_credit_weight, counts=credit)
                groups.append(Group(prompts[i], group, group_adv))
            gate.add(groups, [bool(z) for z in zv.tolist()])
            if round_ == 0:
                m.update({f"rollout/{k}": v for k, v in rm.items()})
                m.update({f"reward_pool/{k}": v for k, v in stats.as_metrics().items()})
        return out

    def _anchor_reference(self, stage: str) -> None:
        """With a KL term, its reference is the policy GRPO starts from. When this run trained the
        policy before GRPO (its SFT stage, or a checkpoint it resumed), the learners loaded the
        untrained backbone as the reference: anchor it at the current policy once, at the first
        GRPO step, and keep it in the checkpoint folder for a resumed run (both GRPO stages share it)."""
        if self.cfg.grpo.kl_coef == 0.0 or self.state.reference or self.state.global_step == 0:
            return
        name = "kl_reference.safetensors"
        self.learners.anchor_reference(str(self.ckpt_dir / name))
        self.state.reference = name
        _say(f"{stage}: KL reference anchored at the current policy (global step {self.state.global_step}), "
             f"saved as {self.ckpt_dir / name}")

    def _push_weights(self) -> Dict[str, float]:
        """Weights to the engines. Colocated layout: wake the engines' weights, sync, then give
        them back their KV cache (vLLM's recommended order for RL; no-ops when disaggregated)."""
        self.rollouts.wake_up(["weights"])
        m = self.sync.push()
        self.rollouts.wake_up(["kv_cache"])
        return m

    def _end_step(self, stage: str, step: int, total: int, metrics: Dict[str, float], summary: str) -> None:
        self.state.stage_step = step + 1
        self.state.steps_done[stage] = step + 1
        self.state.global_step += 1
        self.state.policy_version = self.rollouts.version
        metrics[STEP_METRIC] = float(step + 1)
        # Step metrics go to MLflow as the step ends. A resumed run replays the steps after its last
        # checkpoint exactly (same clips, samples and rewards); those an earlier attempt logged before
        # it stopped are not logged again, so MLflow holds every step once.
        if self.state.global_step > self._logged_through:
            self.tracker.log_metrics({k if "/" in k else f"{stage}/{k}": v for k, v in metrics.items()},
                                     step=self.state.global_step)
        _say(f"{stage} step {step + 1}/{total}: {summary} ({metrics.get('time/step_s', 0):.1f} s)")
        every = self.cfg.checkpoint.every_steps
        if (every > 0 and (step + 1) % every == 0) or step + 1 == total:
            self._checkpoint()

    def _record_stage_done(self, stage: str) -> None:
        """A finished stage goes into the latest checkpoint's driver state when that checkpoint holds
        the current weights (every training stage ends with one): a resumed run then neither repeats
        the stage's evaluation and policy export (nor logs its scores to MLflow twice) nor re-profiles."""
        if self.learners.amend_checkpoint(str(self.ckpt_dir), {"driver": asdict(self.state)}):
            _say(f"{stage} done; recorded in the latest checkpoint")

    def _checkpoint(self) -> None:
        self.state.policy_version = self.rollouts.version
        path = self.learners.save_checkpoint(str(self.ckpt_dir), {"driver": asdict(self.state)},
                                            keep_last=self.cfg.checkpoint.keep_last)
        _say(f"checkpoint {path}")


MEDIA_RETRIES = 3  # calls repeated after media were lost with a decode node


def _lost_with(media: Any, every: Sequence[Any], lost: Sequence[str]) -> bool:
    """Whether ``media`` must be decoded again: it is named lost, it lives on the node of media
    named lost (a lost node takes all its owner's objects, and Ray may report them one by one), or
    no clip is named and it is any media at all."""
    if media is None:
        return False
    if not lost:
        return True
    nodes = {m.node for m in every if m is not None and m.clip_id in lost and m.node}
    return media.clip_id in lost or (bool(media.node) and media.node in nodes)


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


def _nonzero(advantage: Any) -> bool:
    """A sequence's advantage (a float, or one per token) is not all zero."""
    return any(advantage) if isinstance(advantage, list) else bool(advantage)


def _media(prompts: Sequence[Prompt]) -> Optional[List[Any]]:
    """Each sequence's media reference for the learner ranks (one entry per sequence, the samples
    of a group share one), or None for text-only families. The ranks fetch the media themselves."""
    if not any(p.media is not None for p in prompts):
        return None
    return [p.media for p in prompts]
