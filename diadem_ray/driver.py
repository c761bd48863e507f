"""The training driver: one loop, read top to bottom (``diadem-ray train`` / ``diadem-ray demo``).

Stages, in the order the config lists them: ``sft`` → ``profile`` → ``grpo_stage1`` →
``grpo_stage2`` → ``eval``; held-out clips are evaluated before training and after every training
stage. One GRPO step: clips (resumable cursor) → prompts (from Ray Data: tiny_av's front-end
evidence, or Qwen2.5-Omni's token ids + video/audio media) →
rollouts → reward pool → group advantages + dynamic-sampling gate → learner step → weight sync →
metrics → checkpoint every ``checkpoint.every_steps``.

A checkpoint holds the learner state (DeepSpeed) and, in its metadata, the driver state: stage,
step within the stage, global metric step, data cursors, policy_version, MLflow run id and the
evaluations so far. ``resume=True`` restores all of it, pushes the weights to the engines, and
continues the same MLflow run at the next step.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from diadem_ray.config import TrainConfig, line_credit_problems, load_reward_spec, to_yaml, weight_transfer_mode
from diadem_ray.types import Clip

log = logging.getLogger("diadem_ray.driver")
TRAIN_STAGES = ("sft", "grpo_stage1", "grpo_stage2")


@dataclass
class DriverState:
    """Everything besides the learner weights that a resumed run needs (JSON-serialisable)."""

    stage: str = ""
    stage_step: int = 0  # steps completed in ``stage``
    global_step: int = 0  # MLflow step: increases by one per optimizer step over the whole run
    done_stages: List[str] = field(default_factory=list)
    cursors: Dict[str, Dict[str, int]] = field(default_factory=dict)  # stream name -> cursor
    policy_version: int = 0
    mlflow_run_id: str = ""
    evals: Dict[str, Dict[str, float]] = field(default_factory=dict)  # label -> {ref_f1, asr_f1}


def _say(msg: str) -> None:
    print(f"[diadem-ray {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Driver:
    def __init__(self, cfg: TrainConfig, *, config_dir: str = "configs", resume: bool = False):
        self.cfg = cfg
        self.config_dir = Path(config_dir)
        self.resume = resume
        self.out = Path(cfg.run.output_dir) / cfg.run.name
        self.ckpt_dir = self.out / "checkpoints"
        self.state = DriverState()
        self.pools: Dict[str, Any] = {}
        self.reward_specs: Dict[str, Any] = {}
        self.tracker: Any = None
        self._pending: List[Tuple[int, Dict[str, float]]] = []  # step metrics not yet covered by a checkpoint

    # ------------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------------

    def run(self) -> Dict[str, Dict[str, float]]:
        self._start_ray()
        try:
            self._prepare_data()
            self._start_actors()
            self._restored_profile()
            self._start_tracking()
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
            self._report()
            self.tracker.end()
            return self.state.evals
        except BaseException:
            if getattr(self, "tracker", None) is not None:
                self.tracker.end("KILLED")
            raise
        finally:
            self._stop()

    # ------------------------------------------------------------------------------------------
    # setup
    # ------------------------------------------------------------------------------------------

    def _start_ray(self) -> None:
        import ray

        c = self.cfg.cluster
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            kwargs: Dict[str, Any] = {"log_to_driver": False}
            if c.ray_address == "local" and os.environ.get("RAY_ADDRESS"):
                # Inside `ray job submit`: run on the job's cluster, not a private one.
                _say(f"RAY_ADDRESS is set ({os.environ['RAY_ADDRESS']}): joining that cluster")
                kwargs["address"] = os.environ["RAY_ADDRESS"]
            elif c.ray_address == "local":
                kwargs.update(address="local", num_cpus=c.local_num_cpus, object_store_memory=c.object_store_memory_bytes,
                              include_dashboard=False)
            else:  # join a running cluster (a `ray job submit` entrypoint, or "auto" / "ray://…")
                kwargs["address"] = c.ray_address
            ray.init(**{k: v for k, v in kwargs.items() if v is not None})
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False

    def _prepare_data(self) -> None:
        from diadem_ray.data.pipeline import encode_clips
        from diadem_ray.data.shards import list_shards, read_shard
        from diadem_ray.data.synth import describe, synthesize

        d = self.cfg.data
        root = Path(d.root)
        for split, n, seed in (("train", d.train_clips, self.cfg.run.seed), ("eval", d.eval_clips, self.cfg.run.seed + 1000)):
            if not (root / split / "annotations.jsonl").is_file():
                _say(f"synthesising {n} {split} clips into {root / split}")
                clips = synthesize(root / split, n, seed=seed, prefix=f"{split}", workers=max(1, int(self.cfg.cluster.local_num_cpus or 2)))
                _say(describe(clips))
        self.train_root = str(root / "train" / "shards")
        self.eval_root = str(root / "eval" / "shards")
        self.clips: Dict[str, Clip] = {}
        self.split_ids: Dict[str, List[str]] = {}  # shard order, read once here
        for split, r in (("train", self.train_root), ("eval", self.eval_root)):
            ids = self.split_ids[split] = []
            for path in list_shards(r):
                for c in read_shard(path, r):
                    self.clips[c.clip_id] = c
                    ids.append(c.clip_id)
        self.eval_ids = sorted(self.split_ids["eval"])
        self.annotations = [json.loads(line) for line in (root / "eval" / "annotations.jsonl").read_text().splitlines() if line]
        m = self.cfg.model
        _say(f"encoding clips with the {m.family} front-end (Ray Data; cached after the first pass)")
        qwen = {"max_frames": d.frames_per_clip, "max_pixels": m.max_pixels_per_frame, "fps": m.video_fps,
                "sample_rate_hz": d.audio_sample_rate_hz} if m.family == "qwen2_5_omni" else None
        rep = encode_clips(list_shards(self.train_root) + list_shards(self.eval_root), cache_dir=str(root / "features"),
                           max_frames=d.frames_per_clip, sample_rate_hz=d.audio_sample_rate_hz, num_cpus=d.decode_num_cpus,
                           family=m.family, model_path=m.path, qwen=qwen)
        self.features = rep.features  # clip_id -> evidence text (tiny_av) or cached inputs file (qwen2_5_omni)
        self.encode_metrics = {"data/encode_seconds": rep.seconds, "data/clips_failed": float(len(rep.failed)),
                               "data/clips_decoded": float(rep.decoded), "data/clips_cached": float(rep.cached)}
        _say(f"{len(rep.features)} clips ready ({rep.decoded} decoded, {rep.cached} cached, {len(rep.failed)} skipped) "
             f"in {rep.seconds:.0f} s")
        for cid, why in list(rep.failed.items())[:10]:
            _say(f"  skipped {cid}: {why}")

    def _start_actors(self) -> None:
        from diadem_ray.cluster.learner_group import LearnerGroup
        from diadem_ray.cluster.weight_sync import WeightSync
        from diadem_ray.models import tiny_av

        cfg = self.cfg
        # The converted backbone is cached per user (DIADEM_CACHE or ~/.cache/diadem-ray), so jobs
        # submitted from another working directory reuse it.
        model_path = str(Path(cfg.model.path) if cfg.model.path else tiny_av.checkpoint())
        r, lr = cfg.rollout, cfg.learner
        _say(f"starting {r.num_replicas} rollout replica(s) ({r.backend}) and {lr.num_ranks} learner rank(s) (ZeRO-{lr.zero_stage})")
        # Disaggregated: the engines load while the learners start. Colocated (shared GPUs): one after
        # the other, so vLLM's memory profiling does not see the learners' allocations mid-way.
        self._start_rollouts(model_path, wait=cfg.cluster.layout == "colocated")
        total = sum(getattr(cfg.stages, s).steps for s in TRAIN_STAGES if s in cfg.run.stages)
        lora = dict(enabled=lr.lora.enabled, rank=lr.lora.rank, alpha=lr.lora.alpha, dropout=lr.lora.dropout,
                    target_modules=list(lr.lora.target_modules))
        self.learners = LearnerGroup(family=cfg.model.family, num_ranks=lr.num_ranks, num_cpus_per_rank=lr.num_cpus_per_rank,
                                     num_gpus_per_rank=lr.num_gpus_per_rank, model_path=model_path, zero_stage=lr.zero_stage,
                                     comm_backend=lr.comm_backend, bf16=lr.bf16, lr=lr.lr, lr_schedule=lr.lr_schedule,
                                     warmup_steps=lr.warmup_steps, total_steps=max(1, total), weight_decay=lr.weight_decay,
                                     grad_clip_norm=lr.grad_clip_norm, micro_batch_size=lr.micro_batch_size,
                                     collective_timeout_s=lr.collective_timeout_s, lora=lora,
                                     need_reference=cfg.grpo.kl_coef != 0.0, seed=cfg.run.seed)
        self.rollouts.ready()
        self.sync = WeightSync(self.learners, self.rollouts, bucket_bytes=r.weight_sync_bucket_mb << 20,
                               timeout_s=r.weight_sync_timeout_s, mode=weight_transfer_mode(cfg))
        if self.resume:
            meta = self.learners.load_checkpoint(str(self.ckpt_dir))
            self.state = DriverState(**meta["driver"])
            # Fresh engines hold the base weights as version 0; restored weights are never that (a
            # checkpoint taken during SFT has learner weights ahead of the engines' version 0).
            self.rollouts.version = max(1, self.state.policy_version) - 1
            m = self.sync.push()  # the engines get the restored weights before anything is generated
            _say(f"resumed at stage {self.state.stage} step {self.state.stage_step} (global step {self.state.global_step}), "
                 f"policy_version {int(m['sync/policy_version'])}")

    def _start_rollouts(self, model_path: str, wait: bool = True) -> None:
        from diadem_ray.cluster.rollout_group import RolloutGroup
        from diadem_ray.models import tiny_av

        cfg, r = self.cfg, self.cfg.rollout
        self.tokens = tiny_av.Tokens(model_path)
        max_len = cfg.model.max_prompt_tokens + max(r.max_new_tokens, cfg.stages.eval.max_new_tokens)
        self.rollouts = RolloutGroup(num_replicas=r.num_replicas, num_cpus_per_replica=r.num_cpus_per_replica,
                                     num_gpus_per_replica=r.num_gpus_per_replica, cpu_threads=r.cpu_threads,
                                     chunk_size=r.prompts_per_task, model_path=model_path, family=cfg.model.family,
                                     backend=r.backend, dtype=cfg.model.dtype,
                                     max_model_len=max_len,
                                     gpu_memory_utilization=r.gpu_memory_utilization, cpu_kv_cache_gib=r.cpu_kv_cache_gib,
                                     seed=cfg.run.seed, weight_transfer=weight_transfer_mode(cfg),
                                     sleep_mode=cfg.cluster.layout == "colocated", wait=wait)

    def _start_tracking(self) -> None:
        from omegaconf import OmegaConf

        from diadem_ray.actors.tracker import Tracker

        t = self.cfg.tracking
        self.tracker = Tracker(tracking_uri=t.tracking_uri, experiment=t.experiment, run_name=self.cfg.run.name,
                               resume_run_id=self.state.mlflow_run_id or None)
        self.state.mlflow_run_id = self.tracker.run_id
        resolved = OmegaConf.to_container(OmegaConf.structured(self.cfg), resolve=True)
        self.tracker.log_config(resolved)
        tags = {"run_name": self.cfg.run.name, "model_family": self.cfg.model.family}
        for stage in ("grpo_stage1", "grpo_stage2"):
            name = getattr(self.cfg.stages, stage).reward
            tags[f"reward.{stage}"] = name
            tags[f"reward_hash.{stage}"] = self._pool(name, grpo=True).reward_hash
        tags["reward_hash"] = "+".join(sorted({tags["reward_hash.grpo_stage1"], tags["reward_hash.grpo_stage2"]}))
        self.tracker.set_tags(tags)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(to_yaml(self.cfg))
        self.tracker.log_artifact(self.out / "config.yaml")
        if not self.resume:
            self.tracker.log_metrics(self.encode_metrics, step=0)
        _say(f"MLflow run {self.tracker.run_id} in {t.tracking_uri} (experiment {t.experiment!r})")

    def _pool(self, name: str, *, grpo: bool = False):
        """The reward pool of reward ``name`` (started once); ``grpo``: a GRPO stage's reward, checked
        against ``grpo.line_credit_weight`` (at start-up, where the tags are written)."""
        if name not in self.pools:
            from omegaconf import OmegaConf

            from diadem_ray.cluster.reward_pool import RewardPool
            from diadem_ray.rewards.compose import check_spec

            # The run folder keeps a copy of every reward it used, so `--config runs/<name>/config.yaml
            # --resume` finds them (the folder's rewards/ is searched after the config's own).
            kept = self.out / "rewards"
            spec = load_reward_spec(name, [self.config_dir / "rewards", kept])
            problems = check_spec(spec)
            if problems:
                raise ValueError(f"reward {name!r}: " + "; ".join(problems))
            if not (kept / f"{name}.yaml").is_file() and "/" not in name and not name.endswith(".yaml"):
                kept.mkdir(parents=True, exist_ok=True)
                (kept / f"{name}.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(spec)))
            w = self.cfg.reward
            self.pools[name] = RewardPool(OmegaConf.to_container(OmegaConf.structured(spec), resolve=True),
                                          num_workers=w.num_workers, num_cpus_per_worker=w.num_cpus_per_worker,
                                          batch_size=w.batch_size, reward_timeout_s=w.reward_timeout_s,
                                          max_task_retries=w.max_task_retries, resources=dict(w.custom_resources) or None)
            self.reward_specs[name] = spec
        problems = line_credit_problems(self.cfg.grpo.line_credit_weight, self.reward_specs[name]) if grpo else []
        if problems:
            raise ValueError("; ".join(problems))
        return self.pools[name]

    # ------------------------------------------------------------------------------------------
    # prompts
    # ------------------------------------------------------------------------------------------

    def _prompt(self, clip_id: str, tag: str) -> Dict[str, Any]:
        """One clip as an engine prompt: ``prompt_id``, ``prompt_token_ids`` and, for qwen2_5_omni,
        the clip's ``media`` (video patches, Whisper features; see models/families.py)."""
        from diadem_ray.models import qwen2_5_omni, tiny_av

        cap = self.cfg.model.max_prompt_tokens
        if self.cfg.model.family == "tiny_av":
            ids = self.tokens.prompt(tiny_av.prompt_text(self.features[clip_id]))[:cap]
            return {"prompt_id": f"{clip_id}#{tag}", "prompt_token_ids": ids}
        ids, media = qwen2_5_omni.load_inputs(self.features[clip_id])
        if len(ids) > cap:  # cutting would drop video/audio placeholders the media must fill
            raise ValueError(f"clip {clip_id}: its prompt is {len(ids)} tokens (video + audio + instruction), over "
                             f"model.max_prompt_tokens {cap}; raise model.max_prompt_tokens or lower "
                             "model.max_pixels_per_frame / data.frames_per_clip")
        return {"prompt_id": f"{clip_id}#{tag}", "prompt_token_ids": ids, "media": media}

    def _generate(self, clip_ids: Sequence[str], tag: str, seed: Optional[int] = None, **kwargs: Any) -> List[Any]:
        """Rollouts for many clips (profile, eval). Media families build their prompts a group at a
        time (``prompts_per_task`` per replica), so the driver never holds every clip's media at
        once (Qwen2.5-Omni's are up to hundreds of MB per clip); text prompts go in one call."""
        r = self.cfg.rollout
        group = len(clip_ids) if self.cfg.model.family == "tiny_av" else max(1, r.prompts_per_task * r.num_replicas)
        out: List[Any] = []
        for i in range(0, len(clip_ids), max(1, group)):
            prompts = [self._prompt(c, tag) for c in clip_ids[i:i + group]]
            ro, _ = self.rollouts.generate(prompts, seed=None if seed is None else seed + i, **kwargs)
            out.extend(ro)
        return out

    def _stream(self, name: str, root: str, buckets: Optional[Sequence[str]]):
        from diadem_ray.data.cursor import ClipStream

        return ClipStream(root, buckets, seed=self.cfg.run.seed + hash_name(name), cursor=self.state.cursors.get(name))

    def _take(self, streams: Dict[str, Any], weights: Dict[str, float], n: int, step: int, stage: str) -> List[Clip]:
        """``n`` clips drawn bucket by bucket with the stage's weights (deterministic per step)."""
        rng = random.Random(f"{self.cfg.run.seed}:{stage}:{step}")
        names = sorted(streams)
        out: List[Clip] = []
        while len(out) < n:
            b = rng.choices(names, weights=[weights[x] for x in names])[0]
            clip = streams[b].take(1)[0]
            if clip.clip_id in self.features:  # clips the front-end could not read were skipped and logged
                out.append(clip)
            self.state.cursors[f"{stage}:{b}"] = streams[b].cursor()
        return out

    # ------------------------------------------------------------------------------------------
    # stages
    # ------------------------------------------------------------------------------------------

    def _sft(self) -> None:
        from diadem_ray.models import tiny_av

        s = self.cfg.stages.sft
        self.learners.set_lr(s.lr or self.cfg.learner.lr)
        buckets = sorted(s.buckets) or None
        streams = {"all": self._stream("sft:all", self.train_root, buckets)} if buckets is None else \
            {b: self._stream(f"sft:{b}", self.train_root, [b]) for b in buckets}
        weights = dict(s.buckets) if buckets else {"all": 1.0}
        _say(f"SFT: {s.steps} steps x {s.prompts_per_step} clips")
        self.rollouts.sleep()  # colocated layout: the learners get the GPUs for the whole stage
        for step in range(self.state.stage_step, s.steps):
            t0 = time.perf_counter()
            clips = self._take(streams, weights, s.prompts_per_step, step, "sft")
            prompts = [self._prompt(c.clip_id, "sft") for c in clips]
            targets = [self.tokens.target(tiny_av.target_text(c)) for c in clips]
            m = self.learners.sft_step([p["prompt_token_ids"] for p in prompts], targets, media=_media(prompts))
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
        train = [self.clips[i] for i in self.split_ids["train"] if i in self.features]
        _say(f"profile: {len(train)} clips x {p.samples_per_prompt} samples with reward {p.reward!r}")
        t0 = time.perf_counter()
        rollouts = self._generate([c.clip_id for c in train], "profile", samples_per_prompt=p.samples_per_prompt,
                                  max_new_tokens=self.cfg.rollout.max_new_tokens, temperature=self.cfg.rollout.temperature,
                                  seed=self.cfg.run.seed)
        by_id = {c.clip_id: c for c in train}
        scored, _ = self._pool(p.reward).score([(r, by_id[r.prompt_id.split("#")[0]].dialogue) for r in rollouts], step=0)
        rewards: Dict[str, List[float]] = {c.clip_id: [] for c in train}
        for s in scored:
            rewards[s.rollout.prompt_id.split("#")[0]].append(s.reward)
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
        import torch

        from diadem_ray import grpo

        s = getattr(self.cfg.stages, stage)
        g, r = self.cfg.grpo, self.cfg.rollout
        self.learners.set_lr(s.lr or self.cfg.learner.lr)
        from diadem_ray.data.shards import list_shards

        present = {p.split("bucket=")[1].split("/")[0] for p in list_shards(self.train_root)}
        weights = {b: w for b, w in s.buckets.items() if b in present and w > 0}
        if not weights:
            raise ValueError(f"{stage}: none of its buckets {sorted(s.buckets)} has clips in {self.train_root} "
                             f"(present: {sorted(present)}); run the profile stage or change stages.{stage}.buckets")
        streams = {b: self._stream(f"{stage}:{b}", self.train_root, [b]) for b in weights}
        pool = self._pool(s.reward, grpo=True)
        _say(f"{stage}: {s.steps} steps x {s.prompts_per_step} clips x {r.samples_per_prompt} samples, buckets {weights}, reward {s.reward!r}")
        for step in range(self.state.stage_step, s.steps):
            t0 = time.perf_counter()
            m: Dict[str, float] = {}
            kept: List[Tuple[Dict[str, Any], List[Any], List[Any]]] = []  # (prompt, rollouts, advantages)
            flat: List[Tuple[Dict[str, Any], List[Any], List[Any]]] = []
            credit = {"lines": 0.0, "credited": 0.0, "unmapped": 0.0}
            zero_var = 0
            t_roll = t_rew = 0.0
            round_ = 0
            while len(kept) < s.prompts_per_step and round_ <= (g.max_refill_rounds if g.dynamic_sampling else 0):
                need = s.prompts_per_step - len(kept)
                clips = self._take(streams, weights, need, step * 100 + round_, stage)
                prompts = [self._prompt(c.clip_id, f"{stage}.{step}.{round_}.{i}") for i, c in enumerate(clips)]
                ta = time.perf_counter()
                rollouts, rm = self.rollouts.generate(prompts, samples_per_prompt=r.samples_per_prompt,
                                                      max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                                                      top_p=r.top_p, seed=self.cfg.run.seed * 7919 + self.state.global_step * 31 + round_)
                tb = time.perf_counter()
                scored, stats = pool.score([(ro, clips[i // r.samples_per_prompt].dialogue) for i, ro in enumerate(rollouts)],
                                           step=step, lines=g.line_credit_weight > 0)
                tc = time.perf_counter()
                t_roll += tb - ta
                t_rew += tc - tb
                rewards = torch.tensor([x.reward for x in scored]).view(len(clips), r.samples_per_prompt)
                adv, zv = grpo.group_advantages(rewards, baseline=g.advantage_baseline, std_normalization=g.std_normalization, eps=g.std_eps)
                for i in range(len(clips)):
                    group = scored[i * r.samples_per_prompt:(i + 1) * r.samples_per_prompt]
                    group_adv: List[Any] = adv[i].tolist()
                    if g.line_credit_weight > 0:
                        group_adv = self._line_credit(group, group_adv, credit)
                    item = (prompts[i], group, group_adv)
                    (flat if (zv[i] and g.dynamic_sampling) else kept).append(item)
                zero_var += int(zv.sum())
                if round_ == 0:
                    m.update({f"rollout/{k}": v for k, v in rm.items()})
                    m.update({f"reward_pool/{k}": v for k, v in stats.as_metrics().items()})
                round_ += 1
            refills = round_ - 1
            batch = (kept + flat)[: s.prompts_per_step]  # zero-variance groups fill up (their advantage is 0)
            scored_all = [x for _, grp, _ in batch for x in grp]
            seq_prompts = [p for p, grp, _ in batch for _ in grp]
            prompt_ids = [p["prompt_token_ids"] for p in seq_prompts]
            responses = [list(x.rollout.token_ids) or [self.tokens.eos_id] for x in scored_all]
            rollout_lps = [list(x.rollout.logprobs) or [0.0] for x in scored_all]
            advantages = [a for _, _, a_list in batch for a in a_list]
            td = time.perf_counter()
            self.rollouts.sleep()
            lm = self.learners.grpo_step(prompt_ids, responses, advantages, rollout_logprobs=rollout_lps,
                                         clip_eps_low=g.clip_eps_low, clip_eps_high=g.clip_eps_high, dual_clip_c=g.dual_clip_c,
                                         kl_coef=g.kl_coef, kl_estimator=g.kl_estimator, entropy_coef=g.entropy_coef,
                                         loss_aggregation=g.loss_aggregation, media=_media(seq_prompts))
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
            m["grpo/zero_variance_groups"] = float(zero_var)
            m["grpo/refill_rounds"] = float(refills)
            m["grpo/zero_variance_in_batch"] = float(sum(1 for _, _, a in batch if not any(map(_nonzero, a))))
            if g.line_credit_weight > 0:
                m.update({f"grpo/line_credit_{k}": v for k, v in credit.items()})
            m["rollout/response_tokens_mean"] = sum(len(x) for x in responses) / len(responses)
            m.update({"time/rollout_s": t_roll, "time/reward_s": t_rew, "time/learner_s": te - td,
                      "time/sync_s": sm["sync/seconds"], "time/step_s": time.perf_counter() - t0})
            lines = f" lines credited {credit['credited']:.0f}/{credit['lines']:.0f}" if g.line_credit_weight > 0 else ""
            self._end_step(stage, step, s.steps, m, f"reward {m['reward/mean']:.3f} asr {m.get('reward/asr_f1', 0):.3f} "
                           f"ref {m.get('reward/ref_f1', 0):.3f} zero-var {zero_var}{lines}")

    def _line_credit(self, group: Sequence[Any], advantages: List[float], counts: Dict[str, float]) -> List[Any]:
        """Per-line credit for one group: each rollout's advantages become one per response token,
        with ``grpo.line_credit_weight`` x its lines' advantages (grpo.line_advantages) on the tokens
        of each line's speaker phrase. A rollout whose tokens do not decode to the scored text keeps
        its scalar advantage (counted in ``grpo/line_credit_unmapped``)."""
        from diadem_ray import grpo

        line_adv = grpo.line_advantages([[(h.ref_index, h.hit) for h in x.lines] for x in group])
        out: List[Any] = []
        for x, a, la in zip(group, advantages, line_adv):
            ids = list(x.rollout.token_ids)
            counts["lines"] += len(la)
            if ids and self.tokens.decode(ids) != x.rollout.text:
                counts["unmapped"] += 1
                out.append(a)
                continue
            if not ids or not any(la):
                out.append(a)
                continue
            prefix = _prefix_chars(self.tokens.decode, ids)
            spans = grpo.char_spans_to_tokens(prefix, len(ids), [(h.start, h.end) for h in x.lines])
            out.append(grpo.token_advantages(a, len(ids), spans, la, weight=self.cfg.grpo.line_credit_weight))
            counts["credited"] += sum(1 for v in la if v != 0)
        return out

    def _push_weights(self) -> Dict[str, float]:
        """Weights to the engines. Colocated layout: wake the engines' weights, sync, then give
        them back their KV cache (vLLM's recommended order for RL; no-ops when disaggregated)."""
        self.rollouts.wake_up(["weights"])
        m = self.sync.push()
        self.rollouts.wake_up(["kv_cache"])
        return m

    def _end_step(self, stage: str, step: int, total: int, metrics: Dict[str, float], summary: str) -> None:
        self.state.stage_step = step + 1
        self.state.global_step += 1
        self.state.policy_version = self.rollouts.version
        metrics["progress/stage_step"] = float(step + 1)
        # Step metrics reach MLflow only once a checkpoint covers their step: a run killed between
        # checkpoints and resumed logs every step exactly once (no repeated, no skipped step).
        self._pending.append((self.state.global_step, {k if "/" in k else f"{stage}/{k}": v for k, v in metrics.items()}))
        _say(f"{stage} step {step + 1}/{total}: {summary} ({metrics.get('time/step_s', 0):.1f} s)")
        every = self.cfg.checkpoint.every_steps
        if (every > 0 and (step + 1) % every == 0) or step + 1 == total:
            self._checkpoint()

    def _checkpoint(self) -> None:
        self.state.policy_version = self.rollouts.version
        path = self.learners.save_checkpoint(str(self.ckpt_dir), {"driver": asdict(self.state)},
                                            keep_last=self.cfg.checkpoint.keep_last)
        for step, metrics in self._pending:
            self.tracker.log_metrics(metrics, step=step)
        self._pending = []
        _say(f"checkpoint {path}")

    def _export_policy(self, stage: str) -> None:
        """``runs/<name>/policy``: the weights after ``stage`` as a servable directory (replaced
        atomically after each trained stage; ``diadem-ray serve --checkpoint runs/<name>``)."""
        from diadem_ray.models.qwen2_5_omni import INPUTS_VERSION
        from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION

        t0 = time.perf_counter()
        d = self.cfg.data
        version = FRONTEND_VERSION if self.cfg.model.family == "tiny_av" else INPUTS_VERSION
        path = self.learners.save_policy(str(self.out / "policy"), {
            "family": self.cfg.model.family, "policy_version": self.rollouts.version, "stage": stage,
            "learner_step": self.learners.step, "run": self.cfg.run.name, "frontend_version": version,
            "frames_per_clip": d.frames_per_clip, "sample_rate_hz": d.audio_sample_rate_hz,
            "max_prompt_tokens": self.cfg.model.max_prompt_tokens, "max_new_tokens": self.cfg.stages.eval.max_new_tokens})
        _say(f"policy after {stage} exported to {path} ({time.perf_counter() - t0:.1f} s)")

    # ------------------------------------------------------------------------------------------
    # evaluation and report
    # ------------------------------------------------------------------------------------------

    def _evaluate(self, label: str) -> Dict[str, float]:
        from diadem_ray.rewards.benchmark import evaluate, format_report

        if label in self.state.evals:
            return self.state.evals[label]
        same = [k for k, v in self.state.evals.items() if v.get("policy_version") == self.rollouts.version]
        if same:  # e.g. the eval stage right after grpo_stage2: the same weights, the same greedy captions
            self.state.evals[label] = dict(self.state.evals[same[0]])
            _say(f"eval {label}: same policy_version as {same[0]!r}; scores reused")
            return self.state.evals[label]
        e = self.cfg.stages.eval
        ids = [i for i in self.eval_ids if i in self.features]
        t0 = time.perf_counter()
        rollouts = self._generate(ids, "eval", samples_per_prompt=1, max_new_tokens=e.max_new_tokens, temperature=0.0)
        preds = [{"video_id": ro.prompt_id.split("#")[0], "pred": ro.text} for ro in rollouts]
        res = evaluate(self.annotations, preds)
        scores = {"ref_f1": 100 * res.overall.ref_f1, "asr_f1": 100 * res.overall.asr_f1, "clips": float(res.overall.clips),
                  "policy_version": self.rollouts.version}
        self.state.evals[label] = scores
        self.tracker.log_metrics({f"eval/{label}/ref_f1": scores["ref_f1"], f"eval/{label}/asr_f1": scores["asr_f1"],
                                  "eval/ref_f1": scores["ref_f1"], "eval/asr_f1": scores["asr_f1"],
                                  f"eval/{label}/seconds": time.perf_counter() - t0}, step=self.state.global_step)
        self.tracker.log_text(format_report(res), f"eval/{label}/breakdown.txt")
        # Every greedy caption, in `diadem-ray eval --predictions` form: rescore them with another
        # extractor or speaker judge without regenerating (annotations: data.root/eval/annotations.jsonl).
        pred_file = self.out / "eval" / label / "predictions.jsonl"
        pred_file.parent.mkdir(parents=True, exist_ok=True)
        pred_file.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in sorted(preds, key=lambda x: x["video_id"])),
                             encoding="utf-8")
        self.tracker.log_artifact(pred_file, f"eval/{label}")
        samples = [{"video_id": p["video_id"], "caption": p["pred"], "reference": self.clips[p["video_id"]].gt_dialogues(),
                    **{k: row[k] for k in ("asr_recall", "asr_precision", "ref_recall", "ref_precision")}}
                   for p, row in zip(sorted(preds, key=lambda x: x["video_id"]), sorted(res.rows, key=lambda x: x["video_id"]))][: e.sample_captions]
        self.tracker.log_text("\n".join(json.dumps(s) for s in samples), f"eval/{label}/sample_captions.jsonl")
        _say(f"eval {label}: REF F1 {scores['ref_f1']:.1f}  ASR F1 {scores['asr_f1']:.1f}  ({res.overall.clips} held-out clips, "
             f"{time.perf_counter() - t0:.0f} s)")
        return scores

    def _report(self) -> None:
        lines = [f"{'policy':<14} {'REF F1':>7} {'ASR F1':>7}"]
        for label in ("untrained", "sft", "grpo_stage1", "grpo_stage2", "final"):
            if label in self.state.evals:
                s = self.state.evals[label]
                lines.append(f"{label:<14} {s['ref_f1']:7.1f} {s['asr_f1']:7.1f}")
        text = "\n".join(lines)
        (self.out / "results.txt").write_text(text + "\n")
        self.tracker.log_artifact(self.out / "results.txt")
        _say(f"held-out clips ({len(self.eval_ids)}), DiaDemBench-style F1 x100:\n{text}")
        _say(f"MLflow: mlflow ui --backend-store-uri {self.cfg.tracking.tracking_uri}   (run {self.tracker.run_id})")

    def _stop(self) -> None:
        import ray

        for name in ("rollouts", "learners"):
            obj = getattr(self, name, None)
            if obj is not None:
                try:
                    obj.shutdown()
                except Exception:  # already dead: nothing to stop
                    pass
        for pool in self.pools.values():
            pool.shutdown()
        if getattr(self, "_own_ray", False):
            ray.shutdown()


def _nonzero(advantage: Any) -> bool:
    """A sequence's advantage (a float, or one per token) is not all zero."""
    return any(advantage) if isinstance(advantage, list) else bool(advantage)


def _prefix_chars(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> Callable[[int], int]:
    """``i -> len(decode(ids[:i]))``, memoised (grpo.char_spans_to_tokens asks O(log n) of them)."""
    seen: Dict[int, int] = {}

    def prefix(i: int) -> int:
        if i not in seen:
            seen[i] = len(decode(ids[:i])) if i > 0 else 0
        return seen[i]

    return prefix


def _media(prompts: Sequence[Dict[str, Any]]) -> Optional[List[Any]]:
    """Each prompt's media for the learner (one entry per sequence), or None for text-only families."""
    return [p["media"] for p in prompts] if prompts and "media" in prompts[0] else None


def hash_name(name: str) -> int:
    """A stable small integer per stream name (Python's ``hash`` is salted per process)."""
    import zlib

    return zlib.crc32(name.encode()) % 100_000
