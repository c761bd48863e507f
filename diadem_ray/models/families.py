"""What the learner and the rollout engines need to know about a model family, in one place.

* ``tiny_av``: a plain causal LM (the SmolLM2 backbone); prompts are token ids only.
* ``qwen2_5_omni``: the thinker of Qwen2.5-Omni; a prompt is token ids (with the video and audio
  placeholders already expanded by :func:`diadem_ray.models.qwen2_5_omni.build_inputs`) plus the
  clip's *media*: ``video_frames [T, h, w, 3]`` (the resized frames, uint8; turned into the
  thinker's ``pixel_values_videos [P, 1176]`` float32 only where the model runs, so the object
  store and the cache carry a quarter of the bytes), ``video_grid_thw [1, 3]``,
  ``video_second_per_grid [1]``, ``input_features [1, 128, 3000]``, ``feature_attention_mask
  [1, 3000]`` (numpy arrays), ``use_audio_in_video`` and ``audio_waveform [N]`` (the audio the
  features came from, for vLLM engines; not a forward argument). The learner and the
  transformers engine pass the media to every forward, so both score exactly the tokens
  ``build_inputs`` made; vLLM engines rebuild the same tokens and features from the frames and
  the waveform (:func:`diadem_ray.models.qwen2_5_omni.vllm_prompt`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

FAMILIES = ("tiny_av", "qwen2_5_omni")
MEDIA_KEYS = ("video_frames", "pixel_values_videos", "video_grid_thw", "video_second_per_grid", "input_features",
              "feature_attention_mask", "use_audio_in_video", "audio_waveform")
ENGINE_ONLY_KEYS = ("audio_waveform",)  # media fields no forward takes


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return family


def load_causal_lm(family: str, path: str, *, dtype: Any):
    """The trainable text-generating model of ``family`` from a local directory (nothing downloaded)."""
    check_family(family)
    if family == "qwen2_5_omni":
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=True)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)


def media_token_ids(family: str, tokenizer: Any) -> List[int]:
    """Token ids no response may contain: the family's media placeholders and markers. A sampled
    ``<|audio_bos|>`` would make Qwen2.5-Omni look for another audio segment when it computes
    positions for the response (a crash, or silently wrong positions). A sample of either engine
    that draws one ends there, without it; masking them instead would renormalise the sampling
    distribution away from the one whose log-probs the engines report and the learner scores."""
    check_family(family)
    if family != "qwen2_5_omni" or tokenizer is None:
        return []
    from diadem_ray.models.qwen2_5_omni import TOKENS

    ids = [tokenizer.convert_tokens_to_ids(t) for t in TOKENS.values()]
    return sorted({int(i) for i in ids if i is not None and i != tokenizer.unk_token_id})


def split_inputs(inputs: Mapping[str, Any]) -> tuple[list[int], Dict[str, Any]]:
    """``build_inputs`` output → (prompt token ids, media) as prompts carry them."""
    ids = inputs["input_ids"]
    ids = ids[0] if getattr(ids, "ndim", 1) == 2 else ids
    return [int(t) for t in ids], {k: inputs[k] for k in MEDIA_KEYS if k in inputs}


def learner_media(media: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """One prompt's media without the fields no forward takes (:data:`ENGINE_ONLY_KEYS`), for the learners."""
    return None if media is None else {k: v for k, v in media.items() if k not in ENGINE_ONLY_KEYS}


def media_kwargs(media: Optional[Mapping[str, Any]], *, device: Any, float_dtype: Any) -> Dict[str, Any]:
    """One prompt's media as forward/generate keyword arguments (tensors on ``device``; floating
    arrays in ``float_dtype`` except the per-grid seconds, which position ids are computed from;
    ``video_frames`` patchified first, see :func:`expand_media` to do that once for many forwards)."""
    if not media:
        return {}
    import numpy as np
    import torch

    unknown = set(media) - set(MEDIA_KEYS)
    if unknown:
        raise KeyError(f"unknown media fields {sorted(unknown)}; expected some of {MEDIA_KEYS}")
    out: Dict[str, Any] = {}
    for k, v in _expanded(media).items():
        if k in ENGINE_ONLY_KEYS:
            continue
        if isinstance(v, (np.ndarray, torch.Tensor)):
            t = torch.as_tensor(v)
            if t.is_floating_point() and k != "video_second_per_grid":
                t = t.to(float_dtype)
            out[k] = t.to(device)
        else:
            out[k] = v
    return out


def _expanded(media: Mapping[str, Any]) -> Dict[str, Any]:
    if "video_frames" not in media:
        return dict(media)
    from diadem_ray.models.qwen2_5_omni import model_inputs

    return model_inputs(dict(media))


def expand_media(media: Optional[Sequence[Any]]) -> Optional[List[Any]]:
    """Per-sequence media with ``video_frames`` patchified once per distinct clip (the G samples of
    a group share one media object), for a learner call that runs several forwards over them."""
    if media is None:
        return None
    done: Dict[int, Any] = {}
    out: List[Any] = []
    for m in media:
        if m and "video_frames" in m:
            if id(m) not in done:
                done[id(m)] = _expanded(m)
            out.append(done[id(m)])
        else:
            out.append(m)
    return out
