"""What a run holds on the cluster, started and stopped in one place: Ray, the decode pool, the
rollout engines, the learner ranks and the weight sync between them, and the reward pools. The
driver (:class:`~diadem_ray.driver.Driver`) owns one :class:`Resources` and calls into it; nothing
here reads or writes the driver's state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List

from diadem_ray.config import (
    ClusterConfig,
    TrainConfig,
    line_credit_problems,
    load_reward_spec,
    plain,
    to_yaml,
    weight_transfer_mode,
)
from diadem_ray.driver.state import TRAIN_STAGES
from diadem_ray.driver.state import say as _say
from diadem_ray.models.families import ModelFamily


def connect_ray(c: ClusterConfig) -> bool:
    """Start or join Ray as ``cluster.ray_address`` says; True when this process started it (and
    so stops it). Inside ``ray job submit`` (``RAY_ADDRESS`` set) ``local`` joins the job's cluster."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"log_to_driver": False}
    if c.ray_address == "local" and os.environ.get("RAY_ADDRESS"):
        _say(f"RAY_ADDRESS is set ({os.environ['RAY_ADDRESS']}): joining that cluster")
        kwargs["address"] = os.environ["RAY_ADDRESS"]
    elif c.ray_address == "local":
        kwargs.update(
            address="local",
            num_cpus=c.local_num_cpus,
            object_store_memory=c.object_store_memory_bytes,
            include_dashboard=False,
        )
    else:  # join a running cluster (a `ray job submit` entrypoint, or "auto" / "ray://…")
        kwargs["address"] = c.ray_address
    ray.init(**{k: v for k, v in kwargs.items() if v is not None})
    return True


class Resources:
    """The run's actors and pools. Set by the ``start_*`` methods: ``decoders`` and ``feed_stats``
    (decode pool), ``tokens``, ``rollouts``, ``learners``, ``sync``; ``pools`` fill on first use;
    ``placement`` maps each role to the nodes it runs on."""

    def __init__(self, cfg: TrainConfig, family: ModelFamily, *, out: Path, config_dir: Path):
        self.cfg, self.family, self.out, self.config_dir = cfg, family, out, config_dir
        self.own_ray = False
        self.decoders: Any = None
        self.feed_stats: Any = None
        self.tokens: Any = None
        self.rollouts: Any = None
        self.learners: Any = None
        self.sync: Any = None
        self.tracker: Any = None
        self.pools: Dict[str, Any] = {}
        self.reward_specs: Dict[str, Any] = {}
        self.placement: Dict[str, List[str]] = {}  # role (decode, learner, rollout, reward) -> node id per actor

    def start_ray(self) -> None:
        self.own_ray = connect_ray(self.cfg.cluster)

    def start_decoders(self) -> None:
        """The decode pool (data plane): long-lived workers that decode clips as the stages draw
        them, a bounded number of steps ahead (:mod:`diadem_ray.data.feed`); nothing is decoded here."""
        from diadem_ray.cluster.decode_pool import DecodePool
        from diadem_ray.config import cache_mode
        from diadem_ray.data.clip_cache import cache_root
        from diadem_ray.data.feed import FeedStats

        d, m = self.cfg.data, self.cfg.model
        mode = cache_mode(self.cfg)
        root = cache_root(mode, data_root=str(Path(d.root).resolve()), cache_dir=d.cache_dir)
        options = self.family.decode_options(
            frames_per_clip=d.frames_per_clip,
            max_pixels_per_frame=m.max_pixels_per_frame,
            video_fps=m.video_fps,
            sample_rate_hz=d.audio_sample_rate_hz,
        )
        self.decoders = DecodePool(
            num_workers=d.decode_workers,
            num_cpus_per_worker=d.decode_num_cpus,
            resources=dict(d.decode_resources) or None,
            node_wait_s=self.cfg.cluster.node_wait_s,
            family=m.family,
            model_path=m.path,
            max_frames=d.frames_per_clip,
            sample_rate_hz=d.audio_sample_rate_hz,
            options=options,
            cache_dir=root,
            cache_max_bytes=int(d.cache_max_gb * (1 << 30)),
        )
        self.feed_stats = FeedStats()
        where = {"none": "no cache", "local": f"cache on each node's disk ({root})", "shared": f"cache in {root}"}[mode]
        _say(
            f"{d.decode_workers} decode worker(s) for the {m.family} front-end; clips are decoded "
            f"{d.prefetch_steps} step(s) ahead of use; {where}"
        )
        from diadem_ray.cluster import placement

        self.placement["decode"] = self.decoders.nodes()
        _say("placement: " + placement.summary({"decode workers": self.placement["decode"]}))

    def start_actors(self) -> None:
        from diadem_ray.cluster.learner_group import LearnerGroup
        from diadem_ray.cluster.weight_sync import WeightSync

        cfg = self.cfg
        model_path = self.family.checkpoint(cfg.model.path)
        r, lr = cfg.rollout, cfg.learner
        _say(
            f"starting {r.num_replicas} rollout replica(s) ({r.backend}) and {lr.num_ranks} learner rank(s) "
            f"(ZeRO-{lr.zero_stage})"
        )
        # Disaggregated: the engines load while the learners start. Colocated (shared GPUs): one after
        # the other, so vLLM's memory profiling does not see the learners' allocations mid-way.
        self.start_rollouts(model_path, wait=cfg.cluster.layout == "colocated")
        total = sum(getattr(cfg.stages, s).steps for s in TRAIN_STAGES if s in cfg.run.stages)
        lora = dict(
            enabled=lr.lora.enabled,
            rank=lr.lora.rank,
            alpha=lr.lora.alpha,
            dropout=lr.lora.dropout,
            target_modules=list(lr.lora.target_modules),
        )
        self.learners = LearnerGroup(
            family=cfg.model.family,
            num_ranks=lr.num_ranks,
            num_cpus_per_rank=lr.num_cpus_per_rank,
            num_gpus_per_rank=lr.num_gpus_per_rank,
            resources=dict(lr.custom_resources) or None,
            reuse_freed_memory=cfg.cluster.reuse_freed_memory,
            model_path=model_path,
            zero_stage=lr.zero_stage,
            comm_backend=lr.comm_backend,
            bf16=lr.bf16,
            lr=lr.lr,
            lr_schedule=lr.lr_schedule,
            warmup_steps=lr.warmup_steps,
            total_steps=max(1, total),
            weight_decay=lr.weight_decay,
            grad_clip_norm=lr.grad_clip_norm,
            micro_batch_size=lr.micro_batch_size,
            collective_timeout_s=lr.collective_timeout_s,
            lora=lora,
            need_reference=cfg.grpo.kl_coef != 0.0,
            seed=cfg.run.seed,
            threads=lr.threads_per_rank,
            shared_prefix=lr.shared_prefix,
        )
        self.rollouts.ready()
        from diadem_ray.cluster import placement

        self.placement["learner"] = placement.node_ids(self.learners.actors)
        self.placement["rollout"] = placement.node_ids(self.rollouts.replicas)
        _say(
            "placement: "
            + placement.summary(
                {"learner ranks": self.placement["learner"], "rollout replicas": self.placement["rollout"]}
            )
        )
        self.sync = WeightSync(
            self.learners,
            self.rollouts,
            timeout_s=r.weight_sync_timeout_s,
            mode=weight_transfer_mode(cfg),
        )

    def start_rollouts(self, model_path: str, wait: bool = True) -> None:
        from diadem_ray.cluster.rollout_group import RolloutGroup

        cfg, r = self.cfg, self.cfg.rollout
        self.tokens = self.family.tokens(model_path)
        max_len = cfg.model.max_prompt_tokens + max(r.max_new_tokens, cfg.stages.eval.max_new_tokens)
        self.rollouts = RolloutGroup(
            num_replicas=r.num_replicas,
            num_cpus_per_replica=r.num_cpus_per_replica,
            num_gpus_per_replica=r.num_gpus_per_replica,
            cpu_threads=r.cpu_threads,
            resources=dict(r.custom_resources) or None,
            restore_wait_s=cfg.cluster.node_wait_s,
            reuse_freed_memory=cfg.cluster.reuse_freed_memory,
            chunk_size=r.prompts_per_task,
            model_path=model_path,
            family=cfg.model.family,
            backend=r.backend,
            dtype=cfg.model.dtype,
            max_model_len=max_len,
            gpu_memory_utilization=r.gpu_memory_utilization,
            cpu_kv_cache_gib=r.cpu_kv_cache_gib,
            seed=cfg.run.seed,
            weight_transfer=weight_transfer_mode(cfg),
            sleep_mode=cfg.cluster.layout == "colocated",
            wait=wait,
            max_pixels_per_frame=self.family.engine_pixels(cfg.model.max_pixels_per_frame),
            cpu_staged_load=r.cpu_staged_load,
        )

    def push_weights(self) -> Dict[str, float]:
        """Weights to the engines. Colocated layout: wake the engines' weights, sync, then give
        them back their KV cache (vLLM's recommended order for RL; no-ops when disaggregated)."""
        self.rollouts.wake_up(["weights"])
        m: Dict[str, float] = self.sync.push()
        self.rollouts.wake_up(["kv_cache"])
        return m

    def start_tracking(self, resume_run_id: str = "") -> Any:
        """The run's MLflow tracker (``resume_run_id``: continue that run), with the resolved config,
        the reward names and hashes as tags, and ``runs/<name>/config.yaml`` logged."""

        from diadem_ray.actors.tracker import Tracker

        t = self.cfg.tracking
        self.tracker = Tracker(
            tracking_uri=t.tracking_uri,
            experiment=t.experiment,
            run_name=self.cfg.run.name,
            resume_run_id=resume_run_id or None,
        )
        self.tracker.log_config(plain(self.cfg))
        tags = {"run_name": self.cfg.run.name, "model_family": self.cfg.model.family}
        for stage in ("grpo_stage1", "grpo_stage2"):
            name = getattr(self.cfg.stages, stage).reward
            tags[f"reward.{stage}"] = name
            tags[f"reward_hash.{stage}"] = self.pool(name, grpo=True).reward_hash
        tags["reward_hash"] = "+".join(sorted({tags["reward_hash.grpo_stage1"], tags["reward_hash.grpo_stage2"]}))
        self.tracker.set_tags(tags)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(to_yaml(self.cfg))
        self.tracker.log_artifact(self.out / "config.yaml")
        _say(f"MLflow run {self.tracker.run_id} in {t.tracking_uri} (experiment {t.experiment!r})")
        return self.tracker

    def pool(self, name: str, *, grpo: bool = False):
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
            self.pools[name] = RewardPool(
                plain(spec),
                num_workers=w.num_workers,
                num_cpus_per_worker=w.num_cpus_per_worker,
                batch_size=w.batch_size,
                reward_timeout_s=w.reward_timeout_s,
                max_task_retries=w.max_task_retries,
                resources=dict(w.custom_resources) or None,
                node_wait_s=self.cfg.cluster.node_wait_s,
            )
            self.reward_specs[name] = spec
            from diadem_ray.cluster import placement

            nodes = [n for n in self.pools[name].nodes if n]
            self.placement.setdefault("reward", []).extend(nodes)
            _say("placement: " + placement.summary({f"reward workers ({name})": nodes}))
        problems = line_credit_problems(self.cfg.grpo.line_credit_weight, self.reward_specs[name]) if grpo else []
        if problems:
            raise ValueError("; ".join(problems))
        return self.pools[name]

    def stop(self) -> None:
        import ray

        self.stop_groups()
        for pool in self.pools.values():
            pool.shutdown()
        if self.decoders is not None:
            self.decoders.shutdown()
        if getattr(self, "_own_ray", False):
            ray.shutdown()

    def stop_groups(self) -> None:
        """Stop the rollout and learner groups (either may already be gone with its node)."""
        for group in (self.rollouts, self.learners):
            if group is not None:
                try:
                    group.shutdown()
                except Exception:  # already dead: nothing to stop
                    pass
        self.rollouts = self.learners = self.sync = None
