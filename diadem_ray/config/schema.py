"""The configuration schema: OmegaConf structured dataclasses, one per section. Field names carry
their unit or scope (``reward_timeout_s``, ``samples_per_prompt``, ``prompts_per_step``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

STAGE_NAMES = ("sft", "profile", "grpo_stage1", "grpo_stage2", "eval")


@dataclass
class RunConfig:
    name: str = "diadem"
    seed: int = 0
    output_dir: str = "runs"
    stages: List[str] = field(default_factory=lambda: list(STAGE_NAMES))
    max_restarts: int = 3  # losses of the learner/rollout group the run recovers from by itself (0: stop at the first)
    group: str = ""  # a label of the run's configuration (an ablation arm): `compare --group-by run.group`


@dataclass
class ClusterConfig:
    ray_address: str = (
        "local"  # "local": a private local cluster (or the job's, when RAY_ADDRESS is set); "auto" joins one
    )
    layout: str = "disaggregated"  # disaggregated | colocated (GPU only)
    local_num_cpus: Optional[int] = None
    object_store_memory_bytes: Optional[int] = None
    node_wait_s: float = 600.0  # after a node loss: how long work waits for a node offering its resources
    # CPU rollout replicas and learner ranks keep large freed blocks for reuse instead of handing them back
    # to the kernel (glibc's mmap threshold; cluster/worker_env.py): weight pushes without page faults
    reuse_freed_memory: bool = True


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
    # CPU engines keep a plain copy of their linear weights, so a push loads into it and repacks, skipping
    # vLLM's layer-by-layer reload (actors/vllm_cpu_load.py); costs the linear weights' size once more
    cpu_staged_load: bool = True
    num_gpus_per_replica: float = 0.0
    custom_resources: Dict[str, float] = field(
        default_factory=dict
    )  # e.g. {diadem_gpu_node: 0.001}: replicas on GPU nodes
    gpu_memory_utilization: float = 0.5
    cpu_kv_cache_gib: float = 1.0
    weight_sync_timeout_s: float = 120.0
    # auto: NCCL broadcast when learners and replicas have their own GPUs (disaggregated layout),
    # else host arrays through the object store | nccl | object_store
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
    micro_batch_size: int = 4  # sequences per rank per forward/backward (with shared_prefix: per group piece)
    shared_prefix: bool = True  # a GRPO group's prompt runs once for all its samples (False: once per sequence)
    num_cpus_per_rank: float = 0.5
    threads_per_rank: int = 0  # CPU: torch threads per rank (0 = Ray's default: the rank's whole CPUs, at least 1)
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
    # true: the held-out clips are profiled too (same policy and settings), and every evaluation
    # also reports REF/ASR per held-out bucket (eval/<bucket>/ref_f1; compare's per-bucket table)
    held_out: bool = False


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
class AnnotateConfig:
    """``diadem-ray annotate``: reference dialogues from raw video (docs/annotate.md)."""

    asr_model: str = "tiny.en"  # "tiny.en" = the bundled Whisper; else a local CTranslate2 Whisper folder
    language: str = "en"
    asr_threads: int = 1  # CTranslate2 threads per worker
    faces: str = "opencv"  # opencv (real footage: OpenCV's Haar face cascade) | scene (the synthetic world's people)
    frames_per_second: float = 8.0  # frames sampled for shots and faces
    max_frames: int = 4000  # per video at most (evenly spaced beyond it)
    max_frame_pixels: int = 1920 * 1080
    max_video_s: float = 3600.0  # longer videos are skipped with that reason: split them first
    pause_s: float = 0.3  # pauses at least this long separate speech segments
    turn_merge_gap_s: float = 1.0  # one speaker's segments closer than this are one turn
    dialogue_gap_s: float = 3.0  # a silence this long ends a dialogue
    dialogue_cut_gap_s: float = 1.5  # so does a silence this long with a shot change in it
    pad_s: float = 0.3  # around a dialogue cut out of a longer video
    speaker_threshold: float = 0.35  # voice distance (cosine) at which two speaker clusters stay apart
    shot_threshold: float = 0.05  # least histogram distance (0-1) between sampled frames that is a cut
    shot_ratio: float = 4.0  # ... and how many times the median distance around it (an adaptive test)
    min_confidence: float = 0.0  # dialogues below it are dropped, each with its reason
    workers: int = 2  # Ray Data actors, each holding the models
    num_cpus_per_worker: float = 1.0
    clips_per_shard: int = 64
    bucket: str = "unassigned"


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
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)


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
