"""One strict, typed configuration: OmegaConf structured dataclasses.

Loading order: the schema's defaults ← ``base.yaml`` beside the given file (when the given file is
not itself ``base.yaml``) ← the given YAML ← dotlist overrides (``learner.zero_stage=3``).
Every problem is collected and reported in one :class:`ConfigError`: unknown keys (with the
nearest valid key), values of the wrong type, and cross-field violations found by
:func:`validate`. Field names carry their unit or scope (``reward_timeout_s``,
``samples_per_prompt``, ``prompts_per_step``).

Example:
    >>> cfg = load_config(None, ["learner.zero_stage=3"])
    >>> cfg.learner.zero_stage
    3
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from diadem_ray.models.families import FAMILIES, get_family

STAGE_NAMES = ("sft", "profile", "grpo_stage1", "grpo_stage2", "eval")


class ConfigError(ValueError):
    """All problems of one configuration, one per line."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    name: str = "diadem"
    seed: int = 0
    output_dir: str = "runs"
    stages: List[str] = field(default_factory=lambda: list(STAGE_NAMES))
    max_restarts: int = 3  # losses of the learner/rollout group the run recovers from by itself (0: stop at the first)


@dataclass
class ClusterConfig:
    ray_address: str = (
        "local"  # "local": a private local cluster (or the job's, when RAY_ADDRESS is set); "auto" joins one
    )
    layout: str = "disaggregated"  # disaggregated | colocated (GPU only)
    local_num_cpus: Optional[int] = None
    object_store_memory_bytes: Optional[int] = None
    node_wait_s: float = 600.0  # after a node loss: how long work waits for a node offering its resources


@dataclass
class ModelConfig:
    family: str = "tiny_av"  # tiny_av | qwen2_5_omni
    path: str = ""  # local dir or model store path; "" = the cached tiny_av build
    dtype: str = "float32"  # float32 | bfloat16 | float16
    max_prompt_tokens: int = 1024
    # qwen2_5_omni only (DiaDem's inference settings): frames sampled at video_fps, each resized to at
    # most max_pixels_per_frame pixels (512 x 28 x 28); the audio track interleaved with the video
    max_pixels_per_frame: int = 401408
    video_fps: float = 2.0


@dataclass
class DataConfig:
    root: str = "runs/data"
    train_clips: int = 200
    eval_clips: int = 100
    frames_per_clip: int = 4  # frames decoded per clip at most (qwen2_5_omni: the cap on frames sampled at video_fps)
    audio_sample_rate_hz: int = 16000
    max_clip_duration_s: float = 30.0
    decode_num_cpus: float = 0.5  # per decode worker
    decode_workers: int = 1  # long-lived decode actors (owners of the media they put in the object store)
    decode_resources: Dict[str, float] = field(default_factory=dict)  # e.g. {decode_cpu: 1}: decode actors on CPU nodes
    prefetch_steps: int = 1  # steps whose clips are decoded ahead of the one being trained
    # per-clip cache of decode results: none | local (each node's disk) | shared (data.root/features) |
    # auto (none for qwen2_5_omni, whose media are ~72 MB per 30-s clip; shared for tiny_av's small evidence text)
    cache: str = "auto"
    cache_dir: str = ""  # "" = the mode's default directory (docs/data.md)
    cache_max_gb: float = 0.0  # bound per cache directory, least recently used entries evicted; 0 = none


@dataclass
class RolloutConfig:
    backend: str = "vllm"  # vllm | hf (transformers generate: the slower reference engine)
    num_replicas: int = 1
    samples_per_prompt: int = 4
    max_new_tokens: int = 256
    temperature: float = (
        1.0  # profile and GRPO sampling; the learner scores logits / temperature, as the engine reports them
    )
    top_p: float = (
        1.0  # profile and GRPO sampling; < 1 only without GRPO stages (the learner does not score a truncated nucleus)
    )
    num_cpus_per_replica: float = 0.5
    prompts_per_task: int = 16  # prompts sent to a replica in one call (its generation batch)
    cpu_threads: int = 0  # CPU engines: OpenMP threads per replica (0 = Ray's default, one per whole CPU)
    num_gpus_per_replica: float = 0.0
    custom_resources: Dict[str, float] = field(
        default_factory=dict
    )  # e.g. {diadem_gpu_node: 0.001}: replicas on GPU nodes
    gpu_memory_utilization: float = 0.5
    cpu_kv_cache_gib: float = 1.0
    weight_sync_bucket_mb: int = 256
    weight_sync_timeout_s: float = 120.0
    # auto: NCCL broadcast when learners and replicas have their own GPUs (disaggregated layout),
    # else buckets through the object store | nccl | object_store
    weight_transfer: str = "auto"


@dataclass
class RewardWorkersConfig:
    num_workers: int = 1
    num_cpus_per_worker: float = 0.5
    batch_size: int = 32  # captions per scoring task
    reward_timeout_s: float = 10.0  # per caption
    max_task_retries: int = 2
    custom_resources: Dict[str, float] = field(
        default_factory=dict
    )  # e.g. {reward_cpu: 1}: CPU nodes only (cluster/*.yaml)


@dataclass
class LoRAConfig:
    enabled: bool = False
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class LearnerConfig:
    num_ranks: int = 2
    zero_stage: int = 2
    comm_backend: str = "auto"  # auto | gloo | nccl
    bf16: bool = False
    lr: float = 1e-5
    lr_schedule: str = "constant"  # constant | linear | cosine
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0
    micro_batch_size: int = 4  # sequences per rank per forward/backward
    num_cpus_per_rank: float = 0.5
    num_gpus_per_rank: float = 0.0
    custom_resources: Dict[str, float] = field(
        default_factory=dict
    )  # e.g. {diadem_gpu_node: 0.001}: ranks on GPU nodes
    collective_timeout_s: float = 120.0
    lora: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass
class GRPOConfig:
    advantage_baseline: str = "mean"  # mean | leave_one_out
    std_normalization: str = "group"  # group | batch | none (Dr. GRPO)
    std_eps: float = 1e-6
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.28
    dual_clip_c: Optional[float] = None  # > 1 enables dual-clip
    # > 0: a KL term in the loss against the policy GRPO starts from (after this run's SFT, the
    # reference is re-anchored there once and kept as checkpoints/kl_reference.safetensors)
    kl_coef: float = 0.0
    kl_estimator: str = "k3"  # k1 | k2 | k3
    kl_in_reward: bool = False  # not supported yet: validate() rejects true (KL goes in the loss)
    entropy_coef: float = 0.0
    loss_aggregation: str = "token_mean"  # token_mean | seq_mean_token_mean | seq_mean_token_sum_norm
    dynamic_sampling: bool = True
    max_refill_rounds: int = 2
    # > 0: per-line credit. Each caption line's speaker tokens also get w x (its REF hit - the mean
    # hit of the group's lines on the same reference line); needs rewards with extractor: structured.
    line_credit_weight: float = 0.0


@dataclass
class SFTStageConfig:
    steps: int = 100
    prompts_per_step: int = 8
    lr: Optional[float] = None  # None = learner.lr
    buckets: Dict[str, float] = field(default_factory=dict)  # empty = every clip


@dataclass
class ProfileStageConfig:
    samples_per_prompt: int = 4
    reward: str = "diadem_f1"
    pass_reward: float = 0.5  # a sample "passes" when its reward is at least this
    bucket_names: List[str] = field(default_factory=lambda: ["hard", "medium", "easy"])
    pass_rate_edges: List[float] = field(default_factory=lambda: [0.34, 0.67])  # ascending
    quantiles: bool = False  # true: equal-size buckets by mean reward instead of pass-rate edges


@dataclass
class GRPOStageConfig:
    steps: int = 50
    prompts_per_step: int = 8
    lr: Optional[float] = None
    reward: str = "diadem_f1"  # name under configs/rewards/ or a path to a YAML
    buckets: Dict[str, float] = field(default_factory=lambda: {"medium": 1.0})


@dataclass
class EvalStageConfig:
    reward: str = "diadem_f1"
    max_new_tokens: int = 512
    sample_captions: int = 16


@dataclass
class StagesConfig:
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    profile: ProfileStageConfig = field(default_factory=ProfileStageConfig)
    grpo_stage1: GRPOStageConfig = field(default_factory=GRPOStageConfig)
    grpo_stage2: GRPOStageConfig = field(default_factory=lambda: GRPOStageConfig(buckets={"hard": 1.0}))
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)


@dataclass
class TrackingConfig:
    tracking_uri: str = "sqlite:///runs/mlflow.db"
    experiment: str = "diadem-ray"


@dataclass
class CheckpointConfig:
    every_steps: int = 10
    keep_last: int = 2


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_clip_bytes: int = 64 * 1024 * 1024
    max_clip_duration_s: float = 120.0
    max_caption_chars: int = 100_000
    max_dialogue_lines: int = 500
    max_score_request_bytes: int = 8 * 1024 * 1024
    max_line_chars: int = 2_000
    max_align_work: int = (
        6_000_000  # /score alignment work units (≤ 1.2 s of alignment on a 2-core box; docs/rewards.md)
    )
    max_judge_speakers: int = 64  # distinct speaker descriptions the embedding judge embeds per /score request
    score_threads: int = 1  # threads scoring large /score requests off the event loop
    max_frame_pixels: int = 1920 * 1080  # /caption: pixels per frame, from the header and every decoded frame
    max_decoded_bytes: int = 512 * 1024 * 1024  # /caption: frames_per_clip x width x height x 3 of a clip
    allowed_uri_roots: List[str] = field(default_factory=list)  # local dirs or s3://bucket/prefix a clip URI may name
    max_batch_size: int = 8  # captions generated together (Serve dynamic batching)
    batch_wait_timeout_s: float = 0.05
    engine: str = "vllm"  # vllm | hf: the captioner's generation backend
    num_replicas: int = 1
    replica_num_cpus: float = 1.0


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardWorkersConfig = field(default_factory=RewardWorkersConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


@dataclass
class RewardComponentConfig:
    name: str = "asr_f1"  # a component of diadem_ray.rewards.compose.COMPONENTS
    weight: float = 1.0
    enable_step: int = 0  # first GRPO step (within the stage) the component counts
    disable_step: Optional[int] = None  # first step it no longer counts
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RewardSpec:
    """A named, weighted reward composition (configs/rewards/*.yaml)."""

    name: str = "unnamed"
    extractor: str = "structured"  # structured | prose | llm
    speaker_judge: str = "exact"  # exact | embedding | llm | mllm
    judge_threshold: float = 0.7  # cosine threshold of the embedding judge
    judge_prompt: str = ""  # llm/mllm judge prompt with {pairs}; "" = the built-in prompt
    extract_prompt: str = ""  # llm extractor prompt with {caption}; "" = the built-in prompt
    components: List[RewardComponentConfig] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Strict loading
# --------------------------------------------------------------------------------------------


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _list_item_dataclass(tp: Any) -> Optional[type]:
    if typing.get_origin(tp) in (list, List):
        (item,) = typing.get_args(tp)
        return item if _is_dataclass_type(item) else None
    return None


def _check_keys(schema: type, data: Any, prefix: str, origin: str, problems: List[str]) -> Any:
    """Drop (and report) keys that the schema does not have; recurse into nested dataclasses."""
    if not isinstance(data, dict):
        problems.append(f"{prefix or '<root>'}{origin}: expected a mapping of fields, got {type(data).__name__}")
        return {}
    hints = typing.get_type_hints(schema)
    clean: Dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in hints:
            near = difflib.get_close_matches(str(key), list(hints), n=1, cutoff=0.6)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(hints)}"
            problems.append(f"{path}{origin}: unknown key{hint}")
            continue
        tp = hints[key]
        if typing.get_origin(tp) is typing.Union:  # Optional[X]
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if _is_dataclass_type(tp) and value is not None:
            clean[key] = _check_keys(tp, value, f"{path}.", origin, problems)
        elif (item := _list_item_dataclass(tp)) is not None and isinstance(value, list):
            clean[key] = [_check_keys(item, v, f"{path}[{i}].", origin, problems) for i, v in enumerate(value)]
        else:
            clean[key] = value
    return clean


def _leaves(schema: type, data: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any, Any]]:
    """Yield (dotted key, value, type) per leaf; dataclass fields recurse, others are leaves."""
    hints = typing.get_type_hints(schema)
    for key, value in data.items():
        tp = hints[key]
        if _is_dataclass_type(tp) and isinstance(value, dict):
            yield from _leaves(tp, value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value, tp


def _apply(
    cfg: DictConfig, schema: type, data: Dict[str, Any], origin: str, problems: List[str], replace_mappings: bool = True
) -> None:
    leaves = list(_leaves(schema, data))
    if not replace_mappings:  # a dotlist override sets only the mapping key it names
        leaves = [(f"{k}.{sub}", v2, Any) for k, v, tp in leaves if isinstance(v, dict) for sub, v2 in v.items()] + [
            (k, v, tp) for k, v, tp in leaves if not isinstance(v, dict)
        ]
    for key, value, tp in leaves:
        try:
            item = _list_item_dataclass(tp)
            if item is not None and isinstance(value, list):
                # Typed list items must be built as structured nodes before assignment.
                value = [OmegaConf.merge(OmegaConf.structured(item), v) for v in value]
            # merge=False: a mapping or list given in a later YAML replaces the earlier one.
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as exc:
            reason = str(exc).splitlines()[0]
            problems.append(f"{key}{origin}: cannot use {value!r} ({reason})")


def _read_yaml(path: Path, problems: List[str]) -> Dict[str, Any]:
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the reader; a folder fails obscurely
        kind = "a folder" if Path(path).is_dir() else "not a regular file (a FIFO, socket or device)"
        problems.append(f"{path}: {kind}; give a YAML file")
        return {}
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except FileNotFoundError:
        problems.append(f"{path}: no such file")
        return {}
    except Exception as exc:  # yaml syntax errors come in several types
        problems.append(f"{path}: not valid YAML ({str(exc).splitlines()[0]})")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        return {}
    return cast(Dict[str, Any], data)


def _parse_overrides(overrides: Sequence[str], problems: List[str]) -> List[tuple[str, Dict[str, Any]]]:
    parsed: List[tuple[str, Dict[str, Any]]] = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            problems.append(f"override '{item}': expected KEY=VALUE, e.g. learner.zero_stage=3")
            continue
        try:
            parsed.append((item, cast(Dict[str, Any], OmegaConf.to_container(OmegaConf.from_dotlist([item])))))
        except Exception as exc:
            problems.append(f"override '{item}': {str(exc).splitlines()[0]}")
    return parsed


def plain(cfg: Any) -> Dict[str, Any]:
    """A structured config, ``DictConfig`` or config dataclass as a plain, resolved ``dict``."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return cast(Dict[str, Any], OmegaConf.to_container(node, resolve=True))


def load_structured(schema: type, sources: Sequence[tuple[str, Dict[str, Any]]], problems: List[str]) -> DictConfig:
    """Merge (origin label, plain dict) sources onto ``schema``'s defaults, collecting problems.

    Sources whose label starts with `` (from override`` set single keys inside mappings; YAML
    sources replace whole mappings and lists.
    """
    cfg: DictConfig = OmegaConf.structured(schema)
    for origin, data in sources:
        clean = _check_keys(schema, data, "", origin, problems)
        _apply(cfg, schema, clean, origin, problems, replace_mappings=not origin.startswith(" (from override"))
    return cfg


def load_config(path: Optional[str | os.PathLike[str]], overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a :class:`TrainConfig`; raise :class:`ConfigError` listing every problem.

    Args:
        path: a YAML file (its sibling ``base.yaml`` is applied first), or ``None`` for the
            schema defaults alone.
        overrides: dotlist items ``KEY=VALUE``.
    """
    problems: List[str] = []
    sources: List[tuple[str, Dict[str, Any]]] = []
    label = "defaults"
    if path is not None:
        p = Path(path)
        label = str(p)
        base = p.parent / "base.yaml"
        if p.name != "base.yaml" and base.exists():
            sources.append((f" (in {base})", _read_yaml(base, problems)))
        sources.append((f" (in {p})", _read_yaml(p, problems)))
    for item, data in _parse_overrides(overrides, problems):
        sources.append((f" (from override '{item}')", data))
    cfg = load_structured(TrainConfig, sources, problems)
    # Fields that failed to load keep their defaults, so value checks still run on the rest.
    problems.extend(validate(cfg))
    if problems:
        raise ConfigError(label + (" + overrides" if overrides else ""), problems)
    return typing.cast(TrainConfig, cfg)


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
    ):
        _positive(p, key, OmegaConf.select(cfg, key))
    for key in (
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
        for bucket, weight in stage.buckets.items():
            _positive(p, f"stages.{name}.buckets.{bucket}", weight)
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


def load_reward_spec(
    name_or_path: str, search_dirs: Sequence[str | os.PathLike[str]] = ("configs/rewards",)
) -> RewardSpec:
    """Load a reward composition by name (``diadem_f1`` → ``<dir>/diadem_f1.yaml``) or path.

    Structural problems (unknown keys, wrong types) raise :class:`ConfigError`; whether the
    component names and params exist is checked by ``diadem_ray.rewards.compose``.
    """
    candidates = [Path(name_or_path)] if name_or_path.endswith((".yaml", ".yml")) else []
    candidates += [Path(d) / f"{name_or_path}.yaml" for d in search_dirs]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        tried = ", ".join(str(c) for c in candidates)
        raise ConfigError(f"reward '{name_or_path}'", [f"no reward YAML found (tried {tried})"])
    problems: List[str] = []
    spec = load_structured(RewardSpec, [(f" (in {path})", _read_yaml(path, problems))], problems)
    if problems:
        raise ConfigError(str(path), problems)
    return typing.cast(RewardSpec, spec)


def to_yaml(cfg: Any) -> str:
    """The resolved configuration as YAML (saved beside every run)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_resolved(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config to ``path`` (parents created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(cfg))
    return out
