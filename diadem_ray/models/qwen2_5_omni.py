"""``qwen2_5_omni``: the thinker of Qwen2.5-Omni (DiaDem's base model) for GPU clusters.

``build_inputs`` turns one decoded clip (:class:`~diadem_ray.data.decode.Media`) and a prompt
into the thinker's inputs with DiaDem's inference settings — the audio track interleaved with the
video in 2-second chunks (``use_audio_in_video``), frames at 2 fps under a per-frame pixel budget —
and is the one function both the rollout engines and the learner use, so both see the same
tokens. It needs no torchvision (CPU machines run without it):

* frames: resized with PIL (bicubic) to the nearest 28-pixel multiple within the pixel budget
  (transformers' ``smart_resize``), scaled and normalised with the CLIP statistics, and cut into
  14×14×2 patches in the order of Qwen2-VL's processors — hand-written here because transformers'
  video processor for this model requires torchvision; a test checks it against transformers'
  torchvision-free image processor on still frames;
* audio: transformers' ``WhisperFeatureExtractor`` (128 mel bins, 30 s window);
* text: the ChatML prompt with one ``<|VIDEO|>`` placeholder, expanded into per-chunk video and
  audio tokens by transformers' own ``Qwen2_5OmniProcessor.replace_multimodal_special_tokens``.

Loading the thinker (``load_thinker``) reads a local path or a cluster's model store; nothing is
downloaded. In a run, a decode worker calls :class:`MediaEncoder` (:class:`ClipInputs`) on each
decoded clip, optionally caching the result as one ``.npz`` per clip (``save_inputs`` /
``load_inputs``); the token ids and a reference to the media go to the transformers rollout
engine and to the learner (:mod:`diadem_ray.models.media`; tested on CPU with ``build_tiny_thinker``, a tiny random
checkpoint of the same architecture in the published layout). vLLM engines get the same clip
through :func:`vllm_prompt` — the prompt with its single ``<|VIDEO|>`` placeholder, the resized
frames and the audio track — and expand and encode it with :mod:`.qwen2_5_omni_vllm`, which
patchifies with this module's code and positions tokens as transformers does.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from diadem_ray.models.encoder import ClipEncoder
from diadem_ray.types import EncodedClip

FAMILY = "qwen2_5_omni"
SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)
TOKENS = {
    "audio": "<|AUDIO|>",
    "image": "<|IMAGE|>",
    "video": "<|VIDEO|>",
    "vision_bos": "<|vision_bos|>",
    "vision_eos": "<|vision_eos|>",
    "audio_bos": "<|audio_bos|>",
    "audio_eos": "<|audio_eos|>",
}
CLIP_MEAN = np.asarray([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.asarray([0.26862954, 0.26130258, 0.27577711], np.float32)
# The user turn of every clip (DiaDem samples one of 7 paraphrases of a "describe everything" request;
# this one asks for the dialogue explicitly, in the caption form the rewards parse).
INSTRUCTION = (
    "Describe the video in detail. Quote every spoken line word for word in double quotes, and say who "
    "speaks it by describing the speaker as a viewer sees or hears them."
)
INPUTS_VERSION = "qwen2_5_omni-inputs-3"  # bump when build_inputs changes what it makes (invalidates caches)
MEDIA_KEYS = (
    "video_frames",
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
    "input_features",
    "feature_attention_mask",
    "use_audio_in_video",
    "audio_waveform",
)
ENGINE_ONLY_KEYS = ("audio_waveform",)  # media fields no forward takes
VLLM_ARCH = "DiademQwen2_5OmniThinker"  # the architecture name vLLM loads qwen2_5_omni_vllm's thinker under


@dataclass(frozen=True)
class Settings:
    """DiaDem's inference settings for Qwen2.5-Omni (the DiaDem paper): audio in video, 2 fps, a
    per-frame pixel budget, greedy evaluation with up to 2,048 new tokens."""

    use_audio_in_video: bool = True
    fps: float = 2.0
    max_pixels: int = 512 * 28 * 28  # per frame
    min_pixels: int = 4 * 28 * 28
    max_frames: int = 64
    max_new_tokens: int = 2048
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    position_id_per_seconds: int = 25
    seconds_per_chunk: float = 2.0
    sample_rate_hz: int = 16000


def sample_frames(frames: np.ndarray, times_s: np.ndarray, *, fps: float, max_frames: int) -> np.ndarray:
    """Frames nearest to ``0, 1/fps, 2/fps, …`` (at most ``max_frames``, evenly thinned), padded
    by repeating the last to a multiple of 2 (the temporal patch). ``frames`` uint8 ``[T, H, W, 3]``."""
    if len(frames) == 0:
        raise ValueError("the clip has no frames")
    end = float(times_s[-1]) if len(times_s) else 0.0
    wanted = np.arange(0.0, end + 1e-6, 1.0 / fps)
    if len(wanted) > max_frames:
        wanted = np.linspace(0.0, end, max_frames)
    idx = [int(np.argmin(np.abs(times_s - t))) for t in wanted]
    out = frames[idx]
    if len(out) % 2:
        out = np.concatenate([out, out[-1:]])
    return out


def resize_frames(frames: np.ndarray, s: Settings = Settings()) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` → uint8 ``[T, h, w, 3]``: PIL bicubic to the nearest 28-pixel multiple
    within ``s.max_pixels`` (transformers' ``smart_resize``). This is what a clip's media carry:
    a quarter of the bytes of the float32 patches made from it (:func:`patchify`)."""
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) % s.temporal_patch_size:
        raise ValueError(
            f"frames must be [T, H, W, 3] with T a multiple of {s.temporal_patch_size}, got {frames.shape}"
        )
    height, width = frames.shape[1:3]
    rh, rw = smart_resize(
        height, width, factor=s.patch_size * s.merge_size, min_pixels=s.min_pixels, max_pixels=s.max_pixels
    )
    return np.stack([np.asarray(Image.fromarray(f).resize((rw, rh), Image.Resampling.BICUBIC)) for f in frames])


def patchify(resized: np.ndarray, s: Settings = Settings()) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    """Resized uint8 ``[T, h, w, 3]`` (:func:`resize_frames`) → (patches float32 ``[t·h'·w',
    3·2·14·14]``, grid (t, h', w')) in Qwen2-VL's order: merge windows of 2×2 patches contiguous,
    channel-major within a patch, CLIP-normalised."""
    p, m, tp = s.patch_size, s.merge_size, s.temporal_patch_size
    if (
        resized.ndim != 4
        or resized.shape[-1] != 3
        or len(resized) % tp
        or resized.shape[1] % (p * m)
        or resized.shape[2] % (p * m)
    ):
        raise ValueError(
            f"resized frames must be [T, h, w, 3] with T a multiple of {tp} and h, w multiples of {p * m}, "
            f"got {resized.shape}"
        )
    x = ((resized.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)  # [T, C, h, w]
    gt, gh, gw = len(x) // tp, resized.shape[1] // p, resized.shape[2] // p
    x = x.reshape(gt, tp, 3, gh // m, m, p, gw // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, 3 * tp * p * p)), (gt, gh, gw)


def video_patches(frames: np.ndarray, s: Settings = Settings()) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    """uint8 ``[T, H, W, 3]`` (T even) → (patches, grid): :func:`resize_frames` then :func:`patchify`."""
    return patchify(resize_frames(frames, s), s)


def model_inputs(inputs: Dict[str, Any]) -> Dict[str, Any]:
    """``build_inputs`` output (or a clip's media) with the compact ``video_frames`` turned into the
    thinker's ``pixel_values_videos``; the grid it yields must be the one the token ids were
    expanded for. Anything without ``video_frames`` is returned as is."""
    if "video_frames" not in inputs:
        return dict(inputs)
    out = {k: v for k, v in inputs.items() if k != "video_frames"}
    patches, grid = patchify(np.asarray(inputs["video_frames"]))
    want = tuple(int(g) for g in np.asarray(inputs.get("video_grid_thw", [grid])).reshape(-1, 3)[0])
    if want != grid:
        raise ValueError(
            f"video_frames {np.asarray(inputs['video_frames']).shape} make grid {grid}, but the prompt was "
            f"built for {want}; rebuild the clip's inputs (clear the data cache)"
        )
    out["pixel_values_videos"] = patches
    return out


def audio_features(audio: np.ndarray, feature_extractor: Any, s: Settings = Settings()) -> Dict[str, np.ndarray]:
    """``input_features`` ``[1, 128, 3000]`` and ``feature_attention_mask`` ``[1, 3000]`` of the
    first 30 s (the extractor's window), plus that audio itself, ``audio_waveform`` float32
    ``[N]`` (N ≤ 480,000 at 16 kHz): vLLM engines compute the same features from it."""
    wave = np.ascontiguousarray(np.asarray(audio, np.float32).reshape(-1)[: int(feature_extractor.n_samples)])
    out = feature_extractor(
        wave, sampling_rate=s.sample_rate_hz, return_attention_mask=True, padding="max_length", return_tensors="np"
    )
    return {
        "input_features": out["input_features"],
        "feature_attention_mask": out["attention_mask"],
        "audio_waveform": wave,
    }


def _expand(text: str, *, audio_len: int, grid: Tuple[int, int, int], second_per_grid: float, s: Settings) -> str:
    """Expand the placeholders with transformers' own Qwen2.5-Omni processor logic (pure text)."""
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import Qwen2_5OmniProcessor

    merge = types.SimpleNamespace(merge_size=s.merge_size)
    shim = types.SimpleNamespace(
        **{f"{k}_token": v for k, v in TOKENS.items()},
        image_processor=merge,
        video_processor=merge,
        get_chunked_index=lambda idx, n: Qwen2_5OmniProcessor.get_chunked_index(None, idx, n),  # type: ignore[arg-type]
    )
    # the method reads only the shim's attributes
    expanded = Qwen2_5OmniProcessor.replace_multimodal_special_tokens(
        shim,  # type: ignore[arg-type]
        [text],
        iter([audio_len]),
        iter([]),
        iter([np.asarray(grid)]),
        video_second_per_grid=iter([second_per_grid]),
        use_audio_in_video=s.use_audio_in_video,
        position_id_per_seconds=s.position_id_per_seconds,
        seconds_per_chunk=s.seconds_per_chunk,
    )
    return str(expanded[0])


def prompt_text(prompt: str, system: str = SYSTEM_PROMPT) -> str:
    """The ChatML conversation: the system prompt, then the clip and the instruction from the user."""
    t = TOKENS
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{t['vision_bos']}{t['video']}{t['vision_eos']}"
        f"{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )


def build_inputs(
    frames: np.ndarray,
    times_s: np.ndarray,
    audio: np.ndarray,
    prompt: str,
    *,
    tokenizer: Any,
    feature_extractor: Any,
    s: Settings = Settings(),
) -> Dict[str, Any]:
    """The thinker's inputs for one clip (numpy arrays; ``input_ids`` ``[1, L]``), as both the
    rollout engines and the learner consume them. ``audio`` float32 mono at ``s.sample_rate_hz``.
    The video travels compact, as the resized uint8 frames ``video_frames`` ``[T, h, w, 3]``;
    :func:`model_inputs` (called by :func:`to_torch` and :func:`diadem_ray.models.media.media_kwargs`) makes the
    float32 patches where the model runs. ``audio_waveform`` is the audio the features were
    computed from (vLLM engines take audio, not features)."""
    resized = resize_frames(sample_frames(frames, times_s, fps=s.fps, max_frames=s.max_frames), s)
    grid = (len(resized) // s.temporal_patch_size, resized.shape[1] // s.patch_size, resized.shape[2] // s.patch_size)
    feats = audio_features(audio, feature_extractor, s)
    input_lengths = (int(feats["feature_attention_mask"].sum()) - 1) // 2 + 1
    audio_len = (input_lengths - 2) // 2 + 1
    second_per_grid = s.temporal_patch_size / s.fps
    text = _expand(prompt_text(prompt), audio_len=audio_len, grid=grid, second_per_grid=second_per_grid, s=s)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="np")["input_ids"]
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "video_frames": resized,
        "video_grid_thw": np.asarray([grid], np.int64),
        "video_second_per_grid": np.asarray([second_per_grid], np.float32),
        **feats,
        "use_audio_in_video": s.use_audio_in_video,
    }


def load_thinker(path: str, *, dtype: str = "bfloat16", device: Optional[str] = None):
    """The thinker (text-generating part) of a local Qwen2.5-Omni checkpoint; nothing downloaded."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    dt = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dt, local_files_only=True)
    return model.to(device) if device else model  # type: ignore[arg-type]


def to_torch(inputs: Dict[str, Any], device: Any = "cpu", float_dtype: Any = None) -> Dict[str, Any]:
    """``build_inputs`` output as tensors for a transformers forward (floats cast to ``float_dtype``)."""
    import torch

    out: Dict[str, Any] = {}
    for k, v in model_inputs(inputs).items():
        if isinstance(v, np.ndarray):
            t = torch.from_numpy(v)
            if t.is_floating_point() and float_dtype is not None and k != "video_second_per_grid":
                t = t.to(float_dtype)
            out[k] = t.to(device)
        else:
            out[k] = v
    return out


def special_token_ids(tokenizer: Any, names: Sequence[str] = tuple(TOKENS)) -> Dict[str, int]:
    """Token ids of the placeholders (for a config's ``*_token_index`` fields)."""
    return {n: int(tokenizer.convert_tokens_to_ids(TOKENS[n])) for n in names}


def build_tiny_thinker(out_dir: Any, *, vocab_size: int = 400, seed: int = 0):
    """Save a randomly initialised thinker of Qwen2.5-Omni's architecture (vision, audio and text
    towers a few hundred kB each) with a tiny tokenizer holding the placeholder tokens, for CPU
    tests. The directory has the published checkpoint's layout — a ``Qwen2_5OmniConfig`` (no
    talker weights: ``enable_audio_output`` off) with ``thinker.*`` weights, the tokenizer and
    ``preprocessor_config.json`` — so transformers and vLLM load it like the real one.
    Returns ``(path, tokenizer, feature_extractor)``."""
    from pathlib import Path

    import torch
    from safetensors.torch import save_file
    from transformers import (
        Qwen2_5OmniConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    from diadem_ray.models.tiny_lm import build_tiny_tokenizer

    out = Path(out_dir)
    tok = build_tiny_tokenizer(out, vocab_size=vocab_size)
    tok.add_special_tokens({"additional_special_tokens": list(TOKENS.values())})
    ids = special_token_ids(tok)
    cfg = Qwen2_5OmniThinkerConfig(  # type: ignore[call-arg]  # token ids go to the text config's kwargs
        audio_config=dict(
            d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, output_dim=64, n_window=50
        ),
        vision_config=dict(
            depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[0]
        ),
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
            tie_word_embeddings=False,  # as the 7B: a separate lm_head (vLLM reads the flag from here)
            eos_token_id=int(tok.eos_token_id),
            pad_token_id=int(tok.pad_token_id),
        ),
        audio_token_index=ids["audio"],
        image_token_index=ids["image"],
        video_token_index=ids["video"],
        audio_start_token_id=ids["audio_bos"],
        audio_end_token_id=ids["audio_eos"],
        vision_start_token_id=ids["vision_bos"],
        eos_token_id=int(tok.eos_token_id),
        pad_token_id=int(tok.pad_token_id),
    )
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(cfg).eval()
    full = Qwen2_5OmniConfig(thinker_config=cfg.to_dict(), enable_audio_output=False)
    full.architectures = ["Qwen2_5OmniModel"]  # the published checkpoint's name
    full.save_pretrained(out)
    save_file(
        {f"thinker.{k}": v.contiguous() for k, v in model.state_dict().items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    tok.save_pretrained(out)
    fe = WhisperFeatureExtractor(feature_size=128)  # Qwen2.5-Omni's audio front-end settings
    fe.save_pretrained(out)
    return out, tok, fe


def register_vllm() -> None:
    """Register :class:`~diadem_ray.models.qwen2_5_omni_vllm.DiademQwen2_5OmniThinker` with vLLM
    as :data:`VLLM_ARCH` (lazily: vLLM imports it only when an engine loads it). Also the
    package's ``vllm.general_plugins`` entry point, so engine processes vLLM starts have it."""
    from vllm import ModelRegistry

    if VLLM_ARCH not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(VLLM_ARCH, "diadem_ray.models.qwen2_5_omni_vllm:DiademQwen2_5OmniThinker")


def vllm_engine_kwargs(s: Settings = Settings()) -> Dict[str, Any]:
    """``vllm.LLM`` arguments for this family: the thinker of :func:`register_vllm`, one clip
    (video with its audio track) per prompt, and the per-frame pixel budget (used by vLLM to size
    its encoder cache; the frames themselves arrive resized)."""
    return {
        "hf_overrides": {"architectures": [VLLM_ARCH]},
        "limit_mm_per_prompt": {"video": 1, "audio": 1, "image": 0},
        "mm_processor_kwargs": {"min_pixels": s.min_pixels, "max_pixels": s.max_pixels},
    }


def vllm_prompt(prompt_ids: Sequence[int], media: Mapping[str, Any], token_ids: Mapping[str, int]) -> Dict[str, Any]:
    """A prompt as ``prompt_token_ids`` (expanded by :func:`build_inputs`) plus its media → the
    ``vllm.TokensPrompt`` fields: the ids with the clip collapsed back to ``<|vision_bos|>
    <|VIDEO|> <|vision_eos|>`` (vLLM expands it again from the media, to the same ids — the
    rollout worker checks), the resized frames, the audio track and ``use_audio_in_video``.
    ``token_ids``: :func:`special_token_ids` of the checkpoint's tokenizer."""
    missing = [k for k in ("video_frames", "audio_waveform") if k not in media]
    if missing:
        raise KeyError(
            f"media without {missing}: vLLM engines need the resized frames and the audio track; the clip's "
            f"inputs were cached by an older version — clear the data cache (features/) to rebuild them"
        )
    ids = [int(t) for t in prompt_ids]
    bos, eos = token_ids["vision_bos"], token_ids["vision_eos"]
    if ids.count(bos) != 1 or ids.count(eos) != 1 or ids.index(bos) > ids.index(eos):
        raise ValueError(
            f"prompt must hold one clip between <|vision_bos|> ({bos}) and <|vision_eos|> ({eos}); "
            f"found {ids.count(bos)} and {ids.count(eos)}"
        )
    collapsed = ids[: ids.index(bos) + 1] + [token_ids["video"]] + ids[ids.index(eos) :]
    s = Settings()
    wave = np.asarray(media["audio_waveform"], np.float32)
    seconds = float(np.asarray(media.get("video_second_per_grid", [s.temporal_patch_size / s.fps])).reshape(-1)[0])
    return {
        "prompt_token_ids": collapsed,
        "multi_modal_data": {"video": np.asarray(media["video_frames"]), "audio": (wave, s.sample_rate_hz)},
        # the frame rate the frames were sampled at: the processor derives the seconds per grid (and so
        # the positions) from it; vLLM's placeholder expansion reads them directly (else assumes 1.0)
        "mm_processor_kwargs": {
            "use_audio_in_video": bool(media.get("use_audio_in_video", True)),
            "fps": s.temporal_patch_size / seconds,
            "second_per_grid_ts": [seconds],
        },
    }


def inputs_version(model_path: str, s: Settings = Settings(), prompt: str = INSTRUCTION) -> str:
    """The cache version of :class:`ClipInputs` for these arguments: a hash of this code's
    ``INPUTS_VERSION``, the settings, the prompt and the checkpoint's tokenizer and feature-extractor
    files (read as bytes; nothing is loaded, so the driver can look up cached clips cheaply)."""
    import hashlib
    from pathlib import Path

    root = Path(model_path)
    h = hashlib.sha1(f"{INPUTS_VERSION}|{s}|{prompt}".encode())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "preprocessor_config.json"):
        if (root / name).is_file():
            h.update((root / name).read_bytes())
    return f"{INPUTS_VERSION}-{h.hexdigest()[:10]}"


class ClipInputs:
    """``build_inputs`` for decoded clips with a checkpoint's own tokenizer and Whisper feature
    extractor (``preprocessor_config.json``), as the data pipeline runs it once per clip.

    ``version`` names everything the result depends on (this code, the settings, the prompt, the
    checkpoint's tokenizer files), for cache keys."""

    def __init__(self, model_path: str, s: Settings = Settings(), prompt: str = INSTRUCTION):
        from pathlib import Path

        from transformers import AutoTokenizer, WhisperFeatureExtractor

        root = Path(model_path)
        if not (root / "preprocessor_config.json").is_file():
            raise FileNotFoundError(
                f"{root}: no preprocessor_config.json (the Whisper feature extractor's settings); point "
                "model.path at a full Qwen2.5-Omni checkpoint directory"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(str(root), local_files_only=True)
        self.s, self.prompt = s, prompt
        self.version = inputs_version(model_path, s, prompt)

    def __call__(
        self, frames: np.ndarray, times_s: np.ndarray, audio: np.ndarray, sample_rate_hz: int
    ) -> Dict[str, Any]:
        if sample_rate_hz != self.s.sample_rate_hz:
            raise ValueError(
                f"audio at {sample_rate_hz} Hz; Qwen2.5-Omni's feature extractor needs {self.s.sample_rate_hz} Hz "
                f"(set data.audio_sample_rate_hz: {self.s.sample_rate_hz})"
            )
        return build_inputs(
            frames,
            times_s,
            audio,
            self.prompt,
            tokenizer=self.tokenizer,
            feature_extractor=self.feature_extractor,
            s=self.s,
        )


def split_inputs(inputs: Mapping[str, Any]) -> Tuple[List[int], Dict[str, Any]]:
    """``build_inputs`` output → (prompt token ids, media) as prompts carry them."""
    ids = inputs["input_ids"]
    ids = ids[0] if getattr(ids, "ndim", 1) == 2 else ids
    return [int(t) for t in ids], {k: inputs[k] for k in MEDIA_KEYS if k in inputs}


class MediaEncoder(ClipEncoder):
    """The decode worker's encoder for ``qwen2_5_omni``: decoded media → (prompt token ids, media)
    with :class:`ClipInputs`; cached as one uncompressed ``.npz`` per clip."""

    def __init__(self, model_path: str, options: Optional[Dict[str, Any]] = None):
        self.inputs = ClipInputs(model_path, Settings(**(options or {})))

    def encode(
        self, clip_id: str, frames: Any, times_s: Any, audio: Any, sample_rate_hz: int
    ) -> Tuple[EncodedClip, Any]:
        ids, media = split_inputs(self.inputs(frames, times_s, audio, sample_rate_hz))
        return EncodedClip(clip_id, prompt_token_ids=tuple(ids)), media

    def write(self, path: Path, enc: EncodedClip, media: Any) -> None:
        import os

        # numpy appends ``.npz`` to any other suffix: write under that name, then rename exactly
        save_inputs(str(path) + ".npz", {"input_ids": np.asarray(enc.prompt_token_ids, np.int64), **media})
        os.replace(str(path) + ".npz", path)

    def read(self, clip_id: str, path: Path) -> Tuple[EncodedClip, Any]:
        ids, media = load_inputs(path)
        return EncodedClip(clip_id, prompt_token_ids=tuple(ids)), media


def save_inputs(path: Any, inputs: Dict[str, Any]) -> None:
    """One clip's ``build_inputs`` as an uncompressed ``.npz`` (written to a temporary name, then
    renamed: a reader never sees half a file)."""
    import os
    from pathlib import Path

    p = Path(path)
    tmp = p.with_name(f"{p.stem}.tmp{os.getpid()}.npz")
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, p)


def load_inputs(path: Any) -> Tuple[list, Dict[str, Any]]:
    """(prompt token ids, media) of a clip saved by ``save_inputs``, as prompts carry them."""
    with np.load(path) as z:
        inputs: Dict[str, Any] = {k: z[k] for k in z.files}
    inputs["use_audio_in_video"] = bool(inputs.get("use_audio_in_video", True))
    return split_inputs(inputs)
