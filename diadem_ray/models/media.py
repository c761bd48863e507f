"""A prompt's media as model inputs, for the families whose prompts carry media.

Media of ``qwen2_5_omni`` (:data:`~diadem_ray.models.qwen2_5_omni.MEDIA_KEYS`): ``video_frames
[T, h, w, 3]`` (the resized frames, uint8; turned into the thinker's ``pixel_values_videos
[P, 1176]`` float32 only where the model runs, so the object store and the cache carry a quarter of
the bytes), ``video_grid_thw [1, 3]``, ``video_second_per_grid [1]``, ``input_features
[1, 128, 3000]``, ``feature_attention_mask [1, 3000]`` (numpy arrays), ``use_audio_in_video`` and
``audio_waveform [N]`` (the audio the features came from, for vLLM engines; not a forward
argument). The learner and the transformers engine pass the media to every forward, so both score
exactly the tokens ``build_inputs`` made; vLLM engines rebuild the same tokens and features from
the frames and the waveform (:func:`diadem_ray.models.qwen2_5_omni.vllm_prompt`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from diadem_ray.models.qwen2_5_omni import ENGINE_ONLY_KEYS, MEDIA_KEYS, model_inputs


def learner_media(media: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """One prompt's media without the fields no forward takes (``ENGINE_ONLY_KEYS``), for the learners."""
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
    for k, v in model_inputs(dict(media)).items():
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
                done[id(m)] = model_inputs(dict(m))
            out.append(done[id(m)])
        else:
            out.append(m)
    return out
