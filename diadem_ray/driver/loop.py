"""The training driver: one loop, read top to bottom (``diadem-ray train`` / ``diadem-ray demo``).

Stages, in the order the config lists them: ``sft`` → ``profile`` → ``grpo_stage1`` →
``grpo_stage2`` → ``eval``; held-out clips are evaluated before training and after every training
stage. One GRPO step (:mod:`~diadem_ray.driver.grpo_step`): clips (resumable cursors, the driver's
order) → decoded ahead on the decode pool (tiny_av's front-end evidence, or Qwen2.5-Omni's token
ids + a reference to the video/audio media, which never pass through the driver) → prompts →
rollouts → reward pool → group advantages + dynamic-sampling gate → learner step → weight sync →
metrics → checkpoint every ``checkpoint.every_steps``.

The driver is composed of named parts, each in its own module: :class:`~.resources.Resources`
(Ray, decode pool, engines, learners, weight sync, reward pools, MLflow), :class:`~.clips.RunClips`
(the clips), :class:`~.calls.ClipCalls` (engine and learner calls over decoded clips),
:class:`~.grpo_step.GrpoStep` and :class:`~.evaluation.Evaluator`. The driver owns the
:class:`~.state.DriverState` and is the only part that changes it.

A checkpoint holds the learner state (DeepSpeed) and, in its metadata, the driver state: stage,
step within the stage, global metric step, data cursors, policy_version, MLflow run id and the
evaluations so far. ``resume=True`` restores all of it, pushes the weights to the engines, and
continues the same MLflow run at the next step.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from diadem_ray.config import TrainConfig
from diadem_ray.driver.calls import ClipCalls
from diadem_ray.driver.clips import RunClips, prepare_clips
from diadem_ray.driver.evaluation import Evaluator
from diadem_ray.driver.resources import Resources
from diadem_ray.driver.state import (
    STEP_METRIC,
    TRAIN_STAGES,
    DriverState,
    checkpoint_space_problem,
    hash_name,
    reconcile_with,
)
from diadem_ray.driver.state import say as _say
from diadem_ray.types import Clip, EncodedClip


class Driver:
    """One training run: its config, its state, and the parts that act on the cluster (``data``,
    ``calls`` and ``evaluator`` exist once the clips are prepared)."""

    data: RunClips
    calls: ClipCalls
    evaluator: Evaluator

    def __init__(self, cfg: TrainConfig, *, config_dir: str = "configs", resume: bool = False, forked_from: str = ""):
        from diadem_ray.models.families import get_family

        self.cfg = cfg
        self.family = get_family(cfg.model.family)
        self.config_dir = Path(config_dir)
        self.resume = resume
        self.forked_from = forked_from  # the run folder this one was forked from (train --from), if any
        self.out = Path(cfg.run.output_dir) / cfg.run.name
        self.ckpt_dir = self.out / "checkpoints"
        self.state = DriverState()
        self.res = Resources(cfg, self.family, out=self.out, config_dir=self.config_dir)
        self.train_root = ""  # the shards GRPO reads: the profiled ones once a profile exists
        self._logged_through = -1  # the last global step whose metrics MLflow holds from an earlier attempt

    # ------------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------------

    def run(self) -> Dict[str, Dict[str, float]]:
        from diadem_ray.driver import recovery

        self.res.start_ray()
        try:
            self._prepare_data()
            self._start_actors()
            self._restored_profile()
            self._start_tracking()
            self.evaluator.fill_buckets(self.state)  # a run resumed after profiling its held-out clips
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
                            f"{self.cfg.run.max_restarts}; last: {recovery.describe_loss(exc)}"
                        ) from exc
                    recovery.recover(self, exc, restarts)
            self.evaluator.report(self.state)
            self.res.tracker.end()
            return self.state.evals
        except BaseException:
            if self.res.tracker is not None:
                self.res.tracker.end("KILLED")
            raise
        finally:
            self.res.stop()

    def _run_stages(self) -> None:
        """The stages of ``run.stages`` not yet done, from where the state says."""
        ev = self.evaluator
        for stage in self.cfg.run.stages:
            if stage in self.state.done_stages:
                continue
            self.state.stage = stage
            if stage == "sft":
                ev.evaluate("untrained", self.state)
                self._sft()
                ev.evaluate("sft", self.state)
                ev.export_policy("sft")
            elif stage == "profile":
                self._profile()
            elif stage in ("grpo_stage1", "grpo_stage2"):
                self._grpo(stage)
                ev.evaluate(stage, self.state)
                ev.export_policy(stage)
            elif stage == "eval":
                ev.evaluate("final", self.state)
            self.state.done_stages.append(stage)
            self.state.stage_step = 0
            self._record_stage_done(stage)

    # ------------------------------------------------------------------------------------------
    # start-up and resume
    # ------------------------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        """The clips (synthesised once), the decode pool, and the parts that use them."""
        self.data = prepare_clips(self.cfg)
        self.train_root = self.data.train_root
        self.res.start_decoders()
        self.calls = ClipCalls(self.cfg, self.res, self.data.clips)
        self.evaluator = Evaluator(self.cfg, self.res, self.data, out=self.out, generate=self.calls.generate)

    def _start_actors(self) -> None:
        """Engines, learners and weight sync; on resume, restored from the latest checkpoint."""
        self.res.start_actors()
        if self.resume:
            self._restore()

    def _restore(self) -> None:
        """Resume from the latest checkpoint under ``ckpt_dir``: the learners load it, the driver
        state it holds is fitted to this run's config (:func:`~diadem_ray.driver.state.reconcile`),
        the anchored KL reference is reloaded, and the engines get the restored weights. Prints what
        changed and where the run goes on."""
        cfg, res = self.cfg, self.res
        meta = res.learners.load_checkpoint(str(self.ckpt_dir))
        self.state = DriverState(**meta["driver"])
        for note in reconcile_with(self.state, cfg):
            _say(f"resume: {note}")
        if self.state.reference and cfg.grpo.kl_coef != 0.0:
            res.learners.load_reference(str(self.ckpt_dir / self.state.reference))
            _say(f"KL reference restored from {self.ckpt_dir / self.state.reference}")
        # Fresh engines hold the base weights as version 0; restored weights are never that (a
        # checkpoint taken during SFT has learner weights ahead of the engines' version 0). The
        # engines get the restored weights before anything is generated.
        m = res.sync.push(version=max(1, self.state.policy_version))
        st = self.state
        todo = [s for s in cfg.run.stages if s not in st.done_stages]
        done_steps = st.stage_step if todo and todo[0] == st.stage else 0
        if not todo:
            at = "nothing left to run"
        elif todo[0] in TRAIN_STAGES and done_steps >= getattr(cfg.stages, todo[0]).steps:
            at = f"next: the evaluation after {todo[0]}"
        else:
            at = f"next: {todo[0]}" + (f" step {done_steps + 1}" if todo[0] in TRAIN_STAGES else "")
        _say(
            f"resumed at global step {st.global_step}, policy_version {int(m['sync/policy_version'])}; "
            f"stages done: {', '.join(st.done_stages) or 'none'}; {at}"
        )

    def _start_tracking(self) -> None:
        """The MLflow run (this run's own on resume); steps an earlier attempt logged are not logged again."""
        forked = self.resume and not self.state.mlflow_run_id
        tracker = self.res.start_tracking(self.state.mlflow_run_id)
        if forked:
            # A forked run's MLflow run starts empty: it gets the evaluations it inherited, so each
            # branch's run holds its starting point too.
            if self.forked_from:
                tracker.set_tags({"forked_from": self.forked_from})
            for label, scores in self.state.evals.items():
                per_bucket = {f"eval/{label}/{k}": v for k, v in scores.items() if "/" in k}
                tracker.log_metrics(
                    {f"eval/{label}/ref_f1": scores["ref_f1"], f"eval/{label}/asr_f1": scores["asr_f1"], **per_bucket},
                    step=self.state.global_step,
                )
        if self.resume and self.state.mlflow_run_id:
            self._logged_through = tracker.last_step(STEP_METRIC)
            if self._logged_through > self.state.global_step:
                _say(
                    f"MLflow holds steps {self.state.global_step + 1}-{self._logged_through} from the attempt that "
                    "stopped after the last checkpoint: they are replayed and not logged again"
                )
        self.state.mlflow_run_id = tracker.run_id

    # ------------------------------------------------------------------------------------------
    # clips in the driver's order
    # ------------------------------------------------------------------------------------------

    def _stream(self, name: str, root: str, buckets: Optional[Sequence[str]]):
        from diadem_ray.data.cursor import ClipStream

        return ClipStream(root, buckets, seed=self.cfg.run.seed + hash_name(name), cursor=self.state.cursors.get(name))

    def _feed(
        self, stage: str, streams: Dict[str, Any], weights: Dict[str, float], per_step: int, steps: int, key_stride: int
    ) -> Any:
        """The stage's clips in the driver's order, decoding ``data.prefetch_steps`` steps ahead."""
        from diadem_ray.data.feed import StageFeed

        feed = StageFeed(
            self.res.decoders,
            streams,
            weights,
            seed=self.cfg.run.seed,
            stage=stage,
            per_step=per_step,
            steps=steps,
            prefetch_steps=self.cfg.data.prefetch_steps,
            stats=self.res.feed_stats,
            key_stride=key_stride,
        )
        feed.prefetch(self.state.stage_step)
        self.res.feed_stats.take_wait()  # a step's wait counts from its own start
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
        self.res.learners.set_lr(s.lr or self.cfg.learner.lr)
        buckets = sorted(b for b, w in s.buckets.items() if w > 0) or None  # weight 0: the bucket left out
        streams = (
            {"all": self._stream("sft:all", self.train_root, buckets)}
            if buckets is None
            else {b: self._stream(f"sft:{b}", self.train_root, [b]) for b in buckets}
        )
        weights = {b: s.buckets[b] for b in buckets} if buckets else {"all": 1.0}
        _say(f"SFT: {s.steps} steps x {s.prompts_per_step} clips")
        self.res.rollouts.sleep()  # colocated layout: the learners get the GPUs for the whole stage
        feed = self._feed("sft", streams, weights, s.prompts_per_step, s.steps, key_stride=1)
        for step in range(self.state.stage_step, s.steps):
            t0 = time.perf_counter()
            taken = self._take(feed, s.prompts_per_step, step, "sft")
            feed.prefetch(step + 1)  # the next steps' clips decode while this one trains
            wait = self.res.feed_stats.take_wait()
            prompts = [self.calls.prompt(enc, "sft") for _, enc in taken]
            targets = [self.res.tokens.target(self.family.sft_target(c)) for c, _ in taken]
            ids = [list(p.prompt_token_ids) for p in prompts]
            m = self.calls.learn(partial(self.res.learners.sft_step, ids, targets), prompts)
            m.update(self.res.feed_stats.metrics())
            m["time/data_wait_s"] = wait
            m["time/step_s"] = time.perf_counter() - t0
            self._end_step("sft", step, s.steps, m, f"loss {m.get('learner/sft_loss', float('nan')):.3f}")
        self.res.push_weights()

    def _profile(self, root: Optional[str] = None) -> None:
        """Roll out the current policy on every training clip, then bucket clips by difficulty
        (:mod:`diadem_ray.data.profile`); writes partitioned shards and ``profile.jsonl`` to ``root``."""
        from dataclasses import replace

        from diadem_ray.data.profile import summary, write_marks
        from diadem_ray.data.shards import write_shards

        p = self.cfg.stages.profile
        train = [self.data.clips[i] for i in self.data.split_ids["train"] if i not in self.res.feed_stats.failed]
        _say(f"profile: {len(train)} clips x {p.samples_per_prompt} samples with reward {p.reward!r}")
        t0 = time.perf_counter()
        profiles = self._profile_clips(train)
        by_id = {c.clip_id: c for c in train}
        root = root or str(self.out / "profiled")
        write_shards(
            [replace(by_id[q.clip_id], bucket=q.bucket, pass_rate=q.pass_rate) for q in profiles], root, replace=True
        )
        marks = write_marks(profiles, root)
        self.train_root = root
        table, metrics = summary(profiles, p.bucket_names)
        metrics["profile/seconds"] = time.perf_counter() - t0
        _say(
            f"difficulty profile ({metrics['profile/seconds']:.0f} s; shards in {root}, per-clip marks in "
            f"{marks}):\n{table}"
        )
        if p.held_out:
            held = [self.data.clips[i] for i in self.data.eval_ids]
            held_profiles = self._profile_clips(held)
            held_marks = write_marks(held_profiles, self.out / "profiled_eval")
            self.evaluator.held_out_buckets = {q.clip_id: q.bucket for q in held_profiles}
            held_table, _ = summary(held_profiles, p.bucket_names)
            _say(f"held-out clips profiled the same way (marks in {held_marks}):\n{held_table}")
            self.evaluator.fill_buckets(self.state)  # the SFT policy's evaluation ran before this profile
        if self.res.tracker is not None:
            self.res.tracker.log_text(table, "profile/summary.txt")
            self.res.tracker.log_artifact(marks)
            self.res.tracker.log_metrics(metrics, step=self.state.global_step)

    def _profile_clips(self, clips: Sequence[Clip]) -> List[Any]:
        """Sampled rollouts of ``clips`` (GRPO's sampling), scored with the profile reward, bucketed."""
        from diadem_ray.data.profile import profile_clips

        p = self.cfg.stages.profile
        rollouts = self.calls.generate(
            list(clips),
            "profile",
            samples_per_prompt=p.samples_per_prompt,
            max_new_tokens=self.cfg.rollout.max_new_tokens,
            temperature=self.cfg.rollout.temperature,
            top_p=self.cfg.rollout.top_p,
            seed=self.cfg.run.seed,
        )
        scored, _ = self.res.pool(p.reward).score([(r, c.dialogue) for c, r in rollouts], step=0)
        failed = self.res.feed_stats.failed
        rewards: Dict[str, List[float]] = {c.clip_id: [] for c in clips if c.clip_id not in failed}
        for (c, _), s in zip(rollouts, scored):
            rewards[c.clip_id].append(s.reward)
        return profile_clips(
            rewards,
            pass_reward=p.pass_reward,
            bucket_names=p.bucket_names,
            pass_rate_edges=p.pass_rate_edges,
            quantiles=p.quantiles,
        )

    def profile_only(self, policy: str, root: str) -> None:
        """``diadem-ray profile``: profile the training clips with an exported policy (rollout
        replicas and reward workers only; no learners, no MLflow run)."""
        from diadem_ray.models.policy import read_policy

        policy_dir, meta = read_policy(policy)
        _say(
            f"profiling with {policy_dir} ({meta.family}, run {meta.run!r} after {meta.stage}, policy_version "
            f"{meta.policy_version})"
        )
        self.res.start_ray()
        try:
            self._prepare_data()
            self.res.start_rollouts(str(policy_dir))
            self._profile(root)
        finally:
            self.res.stop()

    def _restored_profile(self) -> None:
        """GRPO stages read the profiled shards: this run's own profile stage, or — when the run
        does not profile — those a `diadem-ray profile` wrote into runs/<name>/profiled."""
        from diadem_ray.data.profile import MARKS_FILE, read_buckets

        self.evaluator.held_out_buckets = read_buckets(self.out / "profiled_eval")
        root = self.out / "profiled"
        if "profile" in self.state.done_stages:
            self.train_root = str(root)
        elif "profile" not in self.cfg.run.stages and (root / MARKS_FILE).is_file():
            self.train_root = str(root)
            _say(f"GRPO stages read the buckets profiled earlier in {root}")

    def _grpo(self, stage: str) -> None:
        from diadem_ray.data.shards import bucket_names
        from diadem_ray.driver.grpo_step import GrpoStep

        s = getattr(self.cfg.stages, stage)
        self.res.learners.set_lr(s.lr or self.cfg.learner.lr)
        present = set(bucket_names(self.train_root))
        weights = {b: w for b, w in s.buckets.items() if b in present and w > 0}
        if not weights:
            raise ValueError(
                f"{stage}: none of its buckets {sorted(s.buckets)} has clips in {self.train_root} "
                f"(present: {sorted(present)}); run the profile stage or change stages.{stage}.buckets"
            )
        streams = {b: self._stream(f"{stage}:{b}", self.train_root, [b]) for b in weights}
        feed = self._feed(stage, streams, weights, s.prompts_per_step, s.steps, key_stride=100)
        pool = self.res.pool(s.reward, grpo=True)
        self._anchor_reference(stage)
        grpo_step = GrpoStep(self.cfg, self.res, self.calls, stage, clips_log=self.out / "grpo_clips.jsonl")
        _say(
            f"{stage}: {s.steps} steps x {s.prompts_per_step} clips x {self.cfg.rollout.samples_per_prompt} samples, "
            f"buckets {weights}, reward {s.reward!r}"
        )
        for step in range(self.state.stage_step, s.steps):
            m, summary = grpo_step.run(
                step, feed, pool, lambda n, key: self._take(feed, n, key, stage), self.state.global_step
            )
            self._end_step(stage, step, s.steps, m, summary)

    def _anchor_reference(self, stage: str) -> None:
        """With a KL term, its reference is the policy GRPO starts from. When this run trained the
        policy before GRPO (its SFT stage, or a checkpoint it resumed), the learners loaded the
        untrained backbone as the reference: anchor it at the current policy once, at the first
        GRPO step, and keep it in the checkpoint folder for a resumed run (both GRPO stages share it)."""
        if self.cfg.grpo.kl_coef == 0.0 or self.state.reference or self.state.global_step == 0:
            return
        name = "kl_reference.safetensors"
        self.res.learners.anchor_reference(str(self.ckpt_dir / name))
        self.state.reference = name
        _say(
            f"{stage}: KL reference anchored at the current policy (global step {self.state.global_step}), "
            f"saved as {self.ckpt_dir / name}"
        )

    def _end_step(self, stage: str, step: int, total: int, metrics: Dict[str, float], summary: str) -> None:
        self.state.stage_step = step + 1
        self.state.steps_done[stage] = step + 1
        self.state.global_step += 1
        self.state.policy_version = self.res.rollouts.version
        metrics[STEP_METRIC] = float(step + 1)
        # Step metrics go to MLflow as the step ends. A resumed run replays the steps after its last
        # checkpoint exactly (same clips, samples and rewards); those an earlier attempt logged before
        # it stopped are not logged again, so MLflow holds every step once.
        if self.state.global_step > self._logged_through:
            self.res.tracker.log_metrics(
                {k if "/" in k else f"{stage}/{k}": v for k, v in metrics.items()}, step=self.state.global_step
            )
        _say(f"{stage} step {step + 1}/{total}: {summary} ({metrics.get('time/step_s', 0):.1f} s)")
        every = self.cfg.checkpoint.every_steps
        if (every > 0 and (step + 1) % every == 0) or step + 1 == total:
            self._checkpoint()

    def _record_stage_done(self, stage: str) -> None:
        """A finished stage goes into the latest checkpoint's driver state when that checkpoint holds
        the current weights (every training stage ends with one): a resumed run then neither repeats
        the stage's evaluation and policy export (nor logs its scores to MLflow twice) nor re-profiles."""
        if self.res.learners.amend_checkpoint(str(self.ckpt_dir), {"driver": asdict(self.state)}):
            _say(f"{stage} done; recorded in the latest checkpoint")

    def _checkpoint(self) -> None:
        problem = checkpoint_space_problem(self.ckpt_dir)
        if problem:
            raise RuntimeError(problem)
        self.state.policy_version = self.res.rollouts.version
        path = self.res.learners.save_checkpoint(
            str(self.ckpt_dir), {"driver": asdict(self.state)}, keep_last=self.cfg.checkpoint.keep_last
        )
        _say(f"checkpoint {path}")
