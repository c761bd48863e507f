"""vLLM serving of the Qwen2.5-Omni thinker with the same inputs the learner sees.

vLLM's own Qwen2.5-Omni thinker is used unchanged for the network. This module adds two things
that vLLM does not do (hand-written; no library provides them):

* **a processor that needs no torchvision.** vLLM builds transformers' ``Qwen2_5OmniProcessor``,
  whose video processor requires torchvision — there is no torchvision for the CPU torch build
  used here. The processor built by :class:`_Info` is transformers' own class with its video
  processor replaced by :class:`NumpyVideoProcessor`, which cuts frames into patches with
  :func:`diadem_ray.models.qwen2_5_omni.patchify` — the function the learner's inputs come from.
  The audio goes through transformers' ``WhisperFeatureExtractor`` as before.
* **the learner's M-RoPE positions.** vLLM 0.32 gives ``<|audio_bos|>`` and every later token of
  an audio-in-video prompt a position one higher than transformers does (its offset-based
  rewrite of the position code lost the bos handling); :meth:`get_mrope_input_positions` calls
  transformers' ``get_rope_index`` instead, so engine and learner log-probs agree exactly.

vLLM loads this class under the architecture name :data:`~diadem_ray.models.qwen2_5_omni.VLLM_ARCH`
(registered by :func:`~diadem_ray.models.qwen2_5_omni.register_vllm`, also a ``vllm.general_plugins``
entry point so engine processes started by vLLM find it); the rollout worker selects it with
``hf_overrides``. The checkpoint is the published layout (``Qwen2_5OmniConfig``, ``thinker.*``
weights); learner weights (the thinker's own names) are mapped onto it as well.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Dict, List

import numpy as np

# vLLM's Qwen2-VL module imports ``smart_resize`` from transformers' torchvision-backed image
# processor module; without torchvision, that name comes from its PIL twin (the same function).
if importlib.util.find_spec("torchvision") is None:
    sys.modules.setdefault(
        "transformers.models.qwen2_vl.image_processing_qwen2_vl",
        importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"),
    )

import torch  # noqa: E402
from vllm.model_executor.models.qwen2_5_omni_thinker import (  # noqa: E402
    Qwen2_5OmniThinkerDummyInputsBuilder,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2_5OmniThinkerMultiModalProcessor,
    Qwen2_5OmniThinkerProcessingInfo,
)
from vllm.model_executor.models.utils import WeightsMapper  # noqa: E402
from vllm.multimodal import MULTIMODAL_REGISTRY  # noqa: E402

from diadem_ray.models import qwen2_5_omni as q  # noqa: E402

_PROCESSORS: Dict[tuple, Any] = {}  # (model path, pixel budget) -> processor; vLLM asks for it often


class NumpyVideoProcessor:
    """Stands in for transformers' ``Qwen2VLVideoProcessor``: videos (uint8 ``[T, H, W, 3]``)
    → ``pixel_values_videos [P, 1176]`` and ``video_grid_thw [n, 3]``. Frames whose sides are
    already multiples of 28 (the clips' ``video_frames``, resized by ``build_inputs``) are
    patchified as they are; others are resized first within the pixel budget. An odd frame
    count is padded by repeating the last frame, as transformers does."""

    def __init__(self, s: q.Settings):
        self.s = s
        self.patch_size, self.merge_size, self.temporal_patch_size = s.patch_size, s.merge_size, s.temporal_patch_size
        self.min_pixels, self.max_pixels = s.min_pixels, s.max_pixels
        self.size = {"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels}

    @property
    def valid_kwargs(self):
        from transformers.processing_utils import VideosKwargs

        return VideosKwargs

    def __call__(self, videos: Any = None, return_tensors: Any = None, **_: Any):
        from transformers import BatchFeature

        patches, grids = [], []
        for v in videos if isinstance(videos, (list, tuple)) else [videos]:
            frames = np.asarray(v[0] if isinstance(v, tuple) else v)
            if frames.dtype != np.uint8:
                frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
            tp = self.temporal_patch_size
            if len(frames) % tp:
                frames = np.concatenate([frames, np.repeat(frames[-1:], tp - len(frames) % tp, axis=0)])
            unit = self.patch_size * self.merge_size
            if frames.shape[1] % unit or frames.shape[2] % unit:
                frames = q.resize_frames(frames, self.s)
            p, g = q.patchify(frames, self.s)
            patches.append(p)
            grids.append(g)
        return BatchFeature(
            {"pixel_values_videos": np.concatenate(patches), "video_grid_thw": np.asarray(grids, np.int64)},
            tensor_type=return_tensors,
        )


def make_processor(tokenizer: Any, feature_extractor: Any, s: q.Settings):
    """transformers' ``Qwen2_5OmniProcessor`` with :class:`NumpyVideoProcessor` and the PIL image
    processor (its constructor insists on a torchvision video processor, so the instance is
    assembled attribute by attribute)."""
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import Qwen2_5OmniProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    p = Qwen2_5OmniProcessor.__new__(Qwen2_5OmniProcessor)
    p.image_processor = Qwen2VLImageProcessorPil(min_pixels=s.min_pixels, max_pixels=s.max_pixels)
    p.video_processor = NumpyVideoProcessor(s)
    p.feature_extractor = feature_extractor
    p.tokenizer = tokenizer
    p.chat_template = None
    for name, token in q.TOKENS.items():
        setattr(p, f"{name}_token", token)
    return p


class _Info(Qwen2_5OmniThinkerProcessingInfo):
    def get_hf_processor(self, **kwargs: object):
        mc = self.ctx.model_config
        budget = dict(mc.mm_processor_kwargs or {})  # type: ignore[attr-defined]
        pixels: Dict[str, Any] = {k: int(budget[k]) for k in ("min_pixels", "max_pixels") if k in budget}
        s = q.Settings(**pixels)
        key = (mc.model, s.min_pixels, s.max_pixels)
        if key not in _PROCESSORS:
            from transformers import WhisperFeatureExtractor

            fe = WhisperFeatureExtractor.from_pretrained(mc.model, local_files_only=True)
            _PROCESSORS[key] = make_processor(self.get_tokenizer(), fe, s)
        return _PROCESSORS[key]


class _RopeIndex:
    """transformers' position code for Qwen2.5-Omni (``get_rope_index`` and the two helpers it
    calls), bound to a vLLM thinker config instead of a transformers model."""

    def __init__(self, config: Any):
        import types

        from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as m

        hf = m.Qwen2_5OmniPreTrainedModelForConditionalGeneration
        self.config = config
        self.spatial_merge_size = config.vision_config.spatial_merge_size
        for name in ("get_rope_index", "get_llm_pos_ids_for_vision", "get_chunked_index"):
            setattr(self, name, types.MethodType(getattr(hf, name), self))


def _feature_values(mm_features: List[Any], key: str) -> List[torch.Tensor]:
    out = []
    for f in sorted(mm_features, key=lambda f: f.mm_position.offset):
        item = f.data.get(key) if f.data is not None else None
        if item is not None:
            out.append(torch.as_tensor(item.data))
    return out


@MULTIMODAL_REGISTRY.register_processor(
    Qwen2_5OmniThinkerMultiModalProcessor, info=_Info, dummy_inputs=Qwen2_5OmniThinkerDummyInputsBuilder
)
class DiademQwen2_5OmniThinker(Qwen2_5OmniThinkerForConditionalGeneration):
    # the published checkpoint's names (``thinker.*``) and the learner's (the thinker's own)
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            **Qwen2_5OmniThinkerForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix,
            "lm_head.": "language_model.lm_head.",
            "model.": "language_model.model.",
        }
    )

    def get_mrope_input_positions(self, input_tokens: List[int], mm_features: List[Any]) -> tuple[torch.Tensor, int]:
        """``([3, L] positions, delta)`` from transformers' ``get_rope_index`` (what the learner
        computes), with the grids, audio lengths and seconds per grid vLLM kept per item."""
        ids = torch.tensor([list(input_tokens)])
        videos, images = _feature_values(mm_features, "video_grid_thw"), _feature_values(mm_features, "image_grid_thw")
        audio = _feature_values(mm_features, "audio_feature_lengths")
        seconds = _feature_values(mm_features, "second_per_grid_ts")
        in_video = any(bool(t.reshape(-1)[0]) for t in _feature_values(mm_features, "use_audio_in_video") if t.numel())
        pos, delta = _RopeIndex(self.config).get_rope_index(  # type: ignore[attr-defined]
            ids,
            torch.stack([t.reshape(3) for t in images]) if images else None,
            torch.stack([t.reshape(3) for t in videos]) if videos else None,
            torch.ones_like(ids),
            in_video,
            torch.cat([t.reshape(-1) for t in audio]) if audio else None,
            torch.cat([t.reshape(-1).float() for t in seconds]) if seconds else None,
        )
        return pos[:, 0], int(delta.reshape(-1)[0])
