"""Cross-field checks of a :class:`~diadem_ray.config.schema.TrainConfig` (all problems at once) and
the settings derived from it."""

from __future__ import annotations

import os
import re
from typing import Any, List, Sequence

from omegaconf import OmegaConf

from diadem_ray.config.schema import STAGE_NAMES, RewardSpec, TrainConfig
from diadem_ray.models.families import FAMILIES, get_family

BUCKET_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _one_of(problems: List[str], key: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        problems.append(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")


def _positive(problems: List[str], key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def validate(cfg: Any) -> List[str]:
    """Every value and cross-field violation of a loaded TrainConfig (empty list = valid)."""
    p: List[str] = []
    for s in cfg.run.stages:
        _one_of(p, "run.stages[]", s, STAGE_NAMES)
    known = [s for s in cfg.run.stages if s in STAGE_NAMES]
    if known != sorted(known, key=STAGE_NAMES.index):
        p.append(f"run.stages: {list(known)} is out of order; stages run as {' -> '.join(STAGE_NAMES)}")
    _one_of(p, "cluster.layout", cfg.cluster.layout, ("disaggregated", "colocated"))
    _positive(p, "learner.threads_per_rank", cfg.learner.threads_per_rank, allow_zero=True)
    _one_of(p, "model.family", cfg.model.family, FAMILIES)
    _one_of(p, "model.dtype", cfg.model.dtype, ("float32", "bfloat16", "float16"))
    _one_of(p, "rollout.backend", cfg.rollout.backend, ("vllm", "hf"))
    _one_of(p, "learner.zero_stage", cfg.learner.zero_stage, (0, 1, 2, 3))
    _one_of(p, "learner.comm_backend", cfg.learner.comm_backend, ("auto", "gloo", "nccl"))
    _one_of(p, "learner.lr_schedule", cfg.learner.lr_schedule, ("constant", "linear", "cosine"))
    if cfg.model.family in FAMILIES:
        p += get_family(cfg.model.family).config_problems(
            model_path=cfg.model.path, max_pixels_per_frame=cfg.model.max_pixels_per_frame
        )
    _one_of(p, "grpo.advantage_baseline", cfg.grpo.advantage_baseline, ("mean", "leave_one_out"))
    _one_of(p, "grpo.std_normalization", cfg.grpo.std_normalization, ("group", "batch", "none"))
    _one_of(p, "grpo.kl_estimator", cfg.grpo.kl_estimator, ("k1", "k2", "k3"))
    _one_of(
        p,
        "grpo.loss_aggregation",
        cfg.grpo.loss_aggregation,
        ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"),
    )
    for key in (
        "rollout.num_replicas",
        "reward.num_workers",
        "learner.num_ranks",
        "learner.micro_batch_size",
        "rollout.max_new_tokens",
        "reward.batch_size",
        "data.frames_per_clip",
        "model.max_pixels_per_frame",
        "data.audio_sample_rate_hz",
        "checkpoint.every_steps",
        "checkpoint.keep_last",
        "cluster.node_wait_s",
        "model.video_fps",
        "rollout.temperature",
        "reward.reward_timeout_s",
        "rollout.weight_sync_timeout_s",
        "learner.lr",
        "learner.collective_timeout_s",
        "learner.grad_clip_norm",
        "grpo.std_eps",
    ):
        _positive(p, key, OmegaConf.select(cfg, key))
    for key in (
        "grpo.clip_eps_low",
        "grpo.clip_eps_high",
        "grpo.kl_coef",
        "grpo.entropy_coef",
        "grpo.line_credit_weight",
        "learner.weight_decay",
        "learner.warmup_steps",
        "data.train_clips",
        "data.eval_clips",
    ):
        _positive(p, key, OmegaConf.select(cfg, key), allow_zero=True)
    for key in (
        "rollout.custom_resources",
        "learner.custom_resources",
        "reward.custom_resources",
        "data.decode_resources",
    ):
        for name, amount in dict(OmegaConf.select(cfg, key)).items():
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                p.append(f"{key}.{name}: a built-in resource; set it with the num_cpus / num_gpus keys, not here")
            elif not amount > 0:
                p.append(
                    f"{key}.{name}: must be > 0 (a node-type marker asks for a little, e.g. 0.001), got {amount!r}"
                )
    if not 0 < cfg.rollout.top_p <= 1:
        p.append(f"rollout.top_p: must be in (0, 1], got {cfg.rollout.top_p!r}")
    elif cfg.rollout.top_p < 1 and any(s.startswith("grpo") for s in cfg.run.stages):
        # The learner scores logits / temperature over the whole vocabulary; a nucleus-truncated
        # sampler is another distribution, so the ratio and the KL would be biased (trl#6789).
        p.append(
            f"rollout.top_p: {cfg.rollout.top_p!r} samples GRPO rollouts from a renormalised nucleus that the learner "
            "does not score (biased updates); set rollout.top_p: 1.0 and use rollout.temperature to sharpen sampling"
        )
    if cfg.rollout.samples_per_prompt < 2:
        p.append(
            "rollout.samples_per_prompt: GRPO needs at least 2 samples per prompt, got "
            f"{cfg.rollout.samples_per_prompt}"
        )
    if cfg.grpo.dual_clip_c is not None and cfg.grpo.dual_clip_c <= 1:
        p.append(f"grpo.dual_clip_c: must be > 1 (or null to disable), got {cfg.grpo.dual_clip_c!r}")
    if (
        cfg.grpo.kl_in_reward
    ):  # grpo.kl_penalised_rewards exists; the driver does not compute reference log-probs per rollout
        p.append(
            "grpo.kl_in_reward: true is not supported yet (the driver applies the KL penalty in the loss only); "
            "set it to false and use grpo.kl_coef"
        )
    _one_of(p, "data.cache", cfg.data.cache, ("auto", "none", "local", "shared"))
    _positive(p, "data.decode_workers", cfg.data.decode_workers)
    _positive(p, "data.decode_num_cpus", cfg.data.decode_num_cpus, allow_zero=True)
    _positive(p, "data.prefetch_steps", cfg.data.prefetch_steps, allow_zero=True)
    _positive(p, "data.cache_max_gb", cfg.data.cache_max_gb, allow_zero=True)
    if cfg.run.max_restarts < 0:
        p.append(f"run.max_restarts: must be >= 0, got {cfg.run.max_restarts}")
    _one_of(p, "rollout.weight_transfer", cfg.rollout.weight_transfer, ("auto", "nccl", "object_store"))
    if cfg.rollout.weight_transfer == "nccl" and (
        cfg.rollout.num_gpus_per_replica == 0 or cfg.learner.num_gpus_per_rank == 0
    ):
        p.append(
            "rollout.weight_transfer: 'nccl' needs GPUs on both sides (rollout.num_gpus_per_replica and "
            "learner.num_gpus_per_rank > 0); use 'object_store' or 'auto'"
        )
    if cfg.rollout.weight_transfer == "nccl" and cfg.cluster.layout == "colocated":
        p.append(
            "rollout.weight_transfer: 'nccl' cannot link a learner and an engine that share a GPU; the colocated "
            "layout syncs through the object store ('auto' picks it)"
        )
    if cfg.cluster.layout == "colocated" and cfg.learner.num_gpus_per_rank == 0:
        p.append(
            "cluster.layout: 'colocated' shares GPUs between learners and engines; set learner.num_gpus_per_rank > "
            "0 or use 'disaggregated'"
        )
    lora = cfg.learner.lora
    if lora.enabled and (lora.rank < 1 or not lora.target_modules):
        p.append("learner.lora: enabled needs rank >= 1 and at least one target module")
    if (
        lora.enabled
        and cfg.learner.zero_stage == 3
        and cfg.grpo.kl_coef > 0
        and "sft" in cfg.run.stages
        and any(s.startswith("grpo") for s in cfg.run.stages)
    ):
        # the KL reference moves to the SFT'd adapter when GRPO begins; the adapter swap needs whole parameters
        p.append(
            "grpo.kl_coef: a KL term after SFT in the same run anchors the reference at the SFT adapter, which LoRA "
            "under ZeRO-3 cannot do; use learner.zero_stage <= 2, grpo.kl_coef=0, or run SFT as its own job "
            "and start GRPO from its exported policy (model.path)"
        )
    for name in ("sft", "grpo_stage1", "grpo_stage2"):
        stage = cfg.stages[name]
        _positive(p, f"stages.{name}.steps", stage.steps, allow_zero=True)
        _positive(p, f"stages.{name}.prompts_per_step", stage.prompts_per_step)
        for bucket, weight in stage.buckets.items():  # 0 leaves a bucket out (an overlay cannot delete a key)
            _positive(p, f"stages.{name}.buckets.{bucket}", weight, allow_zero=True)
        if stage.buckets and not any(w > 0 for w in stage.buckets.values()):
            p.append(f"stages.{name}.buckets: every weight is 0; give at least one bucket a weight > 0")
        if name != "sft":
            total = stage.prompts_per_step * cfg.rollout.samples_per_prompt
            if total % cfg.learner.num_ranks:
                p.append(
                    f"stages.{name}.prompts_per_step: {stage.prompts_per_step} x rollout.samples_per_prompt "
                    f"{cfg.rollout.samples_per_prompt} = {total} sequences do not split over learner.num_ranks "
                    f"{cfg.learner.num_ranks}"
                )
            unknown = set(stage.buckets) - set(cfg.stages.profile.bucket_names)
            if unknown:
                p.append(
                    f"stages.{name}.buckets: {sorted(unknown)} are not in stages.profile.bucket_names "
                    f"{list(cfg.stages.profile.bucket_names)}"
                )
    prof = cfg.stages.profile
    edges = list(prof.pass_rate_edges)
    if not prof.quantiles and len(edges) != len(prof.bucket_names) - 1:
        p.append(
            f"stages.profile.pass_rate_edges: {len(prof.bucket_names)} buckets need {len(prof.bucket_names) - 1} "
            f"edges, got {len(edges)}"
        )
    if edges != sorted(edges) or any(not 0 <= e <= 1 for e in edges):
        p.append(f"stages.profile.pass_rate_edges: must ascend within [0, 1], got {edges}")
    uri = cfg.tracking.tracking_uri
    if uri.startswith("file:") or (uri and "://" not in uri and os.environ.get("MLFLOW_ALLOW_FILE_STORE") != "true"):
        p.append(
            f"tracking.tracking_uri: {uri!r} is a file store, which MLflow 3 refuses; use sqlite:///runs/mlflow.db "
            "or an http(s):// server"
        )
    if not 0 < cfg.serve.port < 65536:
        p.append(f"serve.port: {cfg.serve.port} is not a TCP port")
    if cfg.serve.engine not in ("vllm", "hf"):
        p.append(f"serve.engine: {cfg.serve.engine!r}; choose vllm or hf")
    for name in (
        "max_clip_bytes",
        "max_caption_chars",
        "max_dialogue_lines",
        "max_score_request_bytes",
        "max_line_chars",
        "max_batch_size",
        "num_replicas",
        "max_align_work",
        "max_judge_speakers",
        "score_threads",
        "max_frame_pixels",
        "max_decoded_bytes",
    ):
        if getattr(cfg.serve, name) < 1:
            p.append(f"serve.{name}: must be >= 1, got {getattr(cfg.serve, name)}")
    if cfg.serve.max_clip_duration_s <= 0 or cfg.serve.replica_num_cpus <= 0:
        p.append("serve.max_clip_duration_s and serve.replica_num_cpus must be > 0")
    return p + annotate_problems(cfg)


def reward_pools(cfg: TrainConfig) -> List[str]:
    """The rewards a run starts a pool of workers for: both GRPO stages' (named at start-up, where
    their hashes are tagged), the profile's when it profiles, and the evaluation's."""
    names = [cfg.stages.grpo_stage1.reward, cfg.stages.grpo_stage2.reward]
    if "profile" in cfg.run.stages:
        names.append(cfg.stages.profile.reward)
    names.append(cfg.stages.eval.reward)
    return list(dict.fromkeys(names))


def local_cpu_problems(cfg: TrainConfig) -> List[str]:
    """A training run on a private local cluster (``cluster.local_num_cpus`` given) must fit every
    actor it starts at once, or one waits for a CPU that never frees. Checked by ``train`` and
    ``config``, not by every config load: ``annotate`` or ``serve`` start none of these actors."""
    c = cfg.cluster
    if c.ray_address != "local" or c.local_num_cpus is None:
        return []
    parts = {
        "learner ranks": cfg.learner.num_ranks * cfg.learner.num_cpus_per_rank,
        "rollout replicas": cfg.rollout.num_replicas * cfg.rollout.num_cpus_per_replica,
        "decode workers": cfg.data.decode_workers * cfg.data.decode_num_cpus,
        f"reward pools ({', '.join(reward_pools(cfg))})": len(reward_pools(cfg))
        * cfg.reward.num_workers
        * cfg.reward.num_cpus_per_worker,
    }
    total = sum(parts.values())
    if total <= c.local_num_cpus + 1e-9:
        return []
    detail = ", ".join(f"{k} {v:g}" for k, v in parts.items())
    return [
        f"cluster.local_num_cpus: the run's actors ask for {total:g} CPUs ({detail}) on a local cluster of "
        f"{c.local_num_cpus}; lower the num_cpus_* of some of them (e.g. reward.num_cpus_per_worker) or raise "
        "cluster.local_num_cpus"
    ]


def annotate_problems(cfg: TrainConfig) -> List[str]:
    """The ``annotate`` section's problems, each naming the field."""
    a, p = cfg.annotate, []
    if a.faces not in ("opencv", "scene"):
        p.append(f"annotate.faces: {a.faces!r}; choose opencv (real footage) or scene (synthetic clips)")
    for name in (
        "asr_threads",
        "max_frames",
        "max_frame_pixels",
        "workers",
        "clips_per_shard",
        "frames_per_second",
        "max_video_s",
        "pause_s",
        "turn_merge_gap_s",
        "dialogue_gap_s",
        "dialogue_cut_gap_s",
        "speaker_threshold",
        "shot_threshold",
        "shot_ratio",
        "num_cpus_per_worker",
    ):
        _positive(p, f"annotate.{name}", getattr(a, name))
    _positive(p, "annotate.pad_s", a.pad_s, allow_zero=True)
    if not 0 <= a.min_confidence <= 1:
        p.append(f"annotate.min_confidence: must be in [0, 1], got {a.min_confidence}")
    if not BUCKET_NAME_RE.match(a.bucket):
        p.append(f"annotate.bucket: {a.bucket!r} may hold only letters, digits, '_' and '-' (it names a folder)")
    return p


def weight_transfer_mode(cfg: TrainConfig) -> str:
    """``rollout.weight_transfer`` with ``auto`` resolved: ``nccl`` when learners and replicas
    sit on their own GPUs (disaggregated), else ``object_store``."""
    r = cfg.rollout
    if r.weight_transfer != "auto":
        return r.weight_transfer
    gpus = r.num_gpus_per_replica > 0 and cfg.learner.num_gpus_per_rank > 0
    return "nccl" if gpus and cfg.cluster.layout == "disaggregated" and r.backend == "vllm" else "object_store"


def cache_mode(cfg: TrainConfig) -> str:
    """``data.cache`` with ``auto`` resolved by the model family (``none`` for qwen2_5_omni, whose
    media are large; ``shared`` for tiny_av)."""
    if cfg.data.cache != "auto":
        return cfg.data.cache
    return get_family(cfg.model.family).default_cache


def line_credit_problems(line_credit_weight: float, spec: RewardSpec) -> List[str]:
    """Per-line credit maps a caption's lines back to its characters, which only the structured
    extractor can do: a GRPO reward used with ``grpo.line_credit_weight > 0`` must use it."""
    if line_credit_weight > 0 and spec.extractor != "structured":
        return [
            f"reward '{spec.name}'.extractor: grpo.line_credit_weight > 0 needs extractor: structured "
            f"(got {spec.extractor!r}); set grpo.line_credit_weight=0 or use a structured reward"
        ]
    return []
