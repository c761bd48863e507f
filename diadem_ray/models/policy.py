"""Exported policies: a trained captioner as a directory any engine (vLLM, transformers) loads.

A run writes ``runs/<name>/policy/`` after each trained stage (SFT, GRPO stage 1, stage 2): the
learner's full weights (LoRA merged) as ``model.safetensors``, the backbone's config and tokenizer
files, and ``diadem_policy.json`` (:class:`PolicyMeta`) saying which model family it is, which
policy_version and stage produced it, and the input settings it was trained with (the front-end
version, frames per clip, prompt and caption lengths). ``diadem-ray serve --checkpoint`` reads it.

DeepSpeed step checkpoints are for resuming training (optimizer state, RNG, data cursors); they
are not served directly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from diadem_ray.models.families import FAMILIES

META_FILE = "diadem_policy.json"
WEIGHTS_FILE = "model.safetensors"
SERVED = ("tiny_av",)  # families `diadem-ray serve` has a captioning pipeline for (decode → front-end → engine)


class PolicyError(ValueError):
    """A path that is not a usable exported policy; the message names the path and the fix."""


@dataclass(frozen=True)
class PolicyMeta:
    family: str
    policy_version: int
    stage: str
    learner_step: int
    run: str
    frontend_version: str
    frames_per_clip: int
    sample_rate_hz: int
    max_prompt_tokens: int
    max_new_tokens: int


def write_policy(
    directory: str | Path,
    tensors: Sequence[Tuple[str, Any]],
    *,
    source_model_path: str | Path,
    meta: PolicyMeta,
    config: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``tensors`` (name, CPU tensor) plus the source model's config/tokenizer files and the
    meta file into ``directory``, replacing what was there atomically (a reader never sees half a
    policy). A tied ``lm_head.weight`` is left out, as transformers saves it. ``config``: the
    trained module's own config, written instead of the source's ``config.json`` (Qwen2.5-Omni:
    the source holds the whole model, the policy only its thinker)."""
    from safetensors.torch import save_file

    out = Path(directory)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = Path(source_model_path)
    for f in src.iterdir():
        if (
            f.is_file()
            and not f.name.endswith((".safetensors", ".bin", ".pt", ".gguf"))
            and f.name != "model.safetensors.index.json"
        ):
            shutil.copy2(f, tmp / f.name)
    if config is not None:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    config = json.loads((tmp / "config.json").read_text())
    state = {name: t.contiguous() for name, t in tensors}
    if config.get("tie_word_embeddings") and "lm_head.weight" in state:
        del state["lm_head.weight"]
    save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True))
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def resolve_policy_dir(path: str | Path) -> Path:
    """Accept an exported policy directory or a run directory (``runs/<name>``, whose ``policy/``
    is used); anything else raises :class:`PolicyError` saying what to pass instead."""
    p = Path(path)
    if not p.exists():
        raise PolicyError(f"{p}: no such file or directory; pass a run directory (runs/<name>) or its policy/ folder")
    if (p / META_FILE).is_file():
        return p
    if (p / "policy" / META_FILE).is_file():
        return p / "policy"
    if (p / "latest").is_file() or p.name.startswith("step_") or (p.parent / "latest").is_file():
        raise PolicyError(
            f"{p} is a DeepSpeed training checkpoint (for --resume), not a servable policy; pass the run "
            f"directory ({p.parent if p.name == 'checkpoints' else p.parent.parent}) whose policy/ folder "
            "a run writes after each trained stage"
        )
    raise PolicyError(
        f"{p} holds no {META_FILE}: pass a run directory (runs/<name>) that finished a training stage, "
        "or its policy/ folder"
    )


def read_policy(path: str | Path, families: Sequence[str] = FAMILIES) -> Tuple[Path, PolicyMeta]:
    """(policy dir, meta), validated: a family among ``families``, weights present, every meta field there."""
    d = resolve_policy_dir(path)
    try:
        raw: Dict[str, Any] = json.loads((d / META_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{d / META_FILE}: not valid JSON ({exc})") from exc
    missing = [f.name for f in fields(PolicyMeta) if f.name not in raw]
    if missing:
        raise PolicyError(f"{d / META_FILE}: missing {', '.join(missing)}; re-export the policy with this version")
    meta = PolicyMeta(**{f.name: raw[f.name] for f in fields(PolicyMeta)})
    if meta.family not in families:
        raise PolicyError(
            f"{d}: model family {meta.family!r} has no captioning pipeline here (known: {', '.join(families)})"
        )
    if not (d / WEIGHTS_FILE).is_file() or not (d / "config.json").is_file():
        raise PolicyError(
            f"{d}: {WEIGHTS_FILE} or config.json is missing; the export was interrupted — re-run the stage"
        )
    return d, meta
