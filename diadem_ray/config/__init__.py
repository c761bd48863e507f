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

import os
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import OmegaConf

from diadem_ray.config.loading import ConfigError, load_structured, parse_overrides, plain, read_yaml
from diadem_ray.config.rules import (
    cache_mode,
    line_credit_problems,
    local_cpu_problems,
    validate,
    weight_transfer_mode,
)
from diadem_ray.config.schema import (
    STAGE_NAMES,
    AnnotateConfig,
    CheckpointConfig,
    ClusterConfig,
    DataConfig,
    EvalStageConfig,
    GRPOConfig,
    GRPOStageConfig,
    LearnerConfig,
    LoRAConfig,
    ModelConfig,
    ProfileStageConfig,
    RewardComponentConfig,
    RewardSpec,
    RewardWorkersConfig,
    RolloutConfig,
    RunConfig,
    ServeConfig,
    SFTStageConfig,
    StagesConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "STAGE_NAMES",
    "AnnotateConfig",
    "CheckpointConfig",
    "ClusterConfig",
    "ConfigError",
    "DataConfig",
    "EvalStageConfig",
    "GRPOConfig",
    "GRPOStageConfig",
    "LearnerConfig",
    "LoRAConfig",
    "ModelConfig",
    "ProfileStageConfig",
    "RewardComponentConfig",
    "RewardSpec",
    "RewardWorkersConfig",
    "RolloutConfig",
    "RunConfig",
    "SFTStageConfig",
    "ServeConfig",
    "StagesConfig",
    "TrackingConfig",
    "TrainConfig",
    "cache_mode",
    "line_credit_problems",
    "local_cpu_problems",
    "load_config",
    "load_reward_spec",
    "load_structured",
    "plain",
    "save_resolved",
    "to_yaml",
    "validate",
    "weight_transfer_mode",
]


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
            sources.append((f" (in {base})", read_yaml(base, problems)))
        sources.append((f" (in {p})", read_yaml(p, problems)))
    for item, data in parse_overrides(overrides, problems):
        sources.append((f" (from override '{item}')", data))
    cfg = load_structured(TrainConfig, sources, problems)
    # Fields that failed to load keep their defaults, so value checks still run on the rest.
    problems.extend(validate(cfg))
    if problems:
        raise ConfigError(label + (" + overrides" if overrides else ""), problems)
    return typing.cast(TrainConfig, cfg)


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
    spec = load_structured(RewardSpec, [(f" (in {path})", read_yaml(path, problems))], problems)
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
