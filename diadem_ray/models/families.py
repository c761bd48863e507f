"""Model families: everything the rest of the system asks of a model, one registered implementation
per family (:class:`ModelFamily`; :func:`get_family` looks one up by ``model.family``).

* ``tiny_av`` (:class:`TinyAV`): a frozen perception front-end writes evidence text; a plain causal
  LM (the SmolLM2 backbone) turns it into a caption. Prompts are token ids only.
* ``qwen2_5_omni`` (:class:`QwenOmni`): the thinker of Qwen2.5-Omni. A prompt is token ids (video
  and audio placeholders already expanded) plus the clip's media, which travel by reference
  (:class:`~diadem_ray.types.MediaRef`); :mod:`diadem_ray.models.media` turns media into forward
  arguments.

Nothing outside ``models/`` branches on a family name: the driver, actors, decode workers, config
validation and serving call these methods. This module imports only the standard library at its
top (config validation reads it); each method imports its family's code when called.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from diadem_ray.models.encoder import ClipEncoder
    from diadem_ray.models.tokens import Tokens
    from diadem_ray.types import Clip, EncodedClip


class ModelFamily(ABC):
    """What a model family provides. Class attributes are facts; methods load code lazily."""

    name: ClassVar[str]
    takes_media: ClassVar[bool]  # prompts carry media besides token ids
    default_cache: ClassVar[str]  # ``data.cache: auto`` resolves to this
    cache_ext: ClassVar[str]  # file suffix of one cached clip
    exports_module_config: ClassVar[bool]  # a policy holds the trained module's own config, not the source's

    # ---- configuration -------------------------------------------------------------------------

    def config_problems(self, *, model_path: str, max_pixels_per_frame: int) -> List[str]:
        """What is wrong with the ``model`` section for this family (config validation)."""
        return []

    def checkpoint(self, model_path: str) -> str:
        """The local checkpoint directory to train and serve (``model.path``, or the family's own
        default when it has one)."""
        return model_path

    def decode_options(
        self, *, frames_per_clip: int, max_pixels_per_frame: int, video_fps: float, sample_rate_hz: int
    ) -> Optional[Dict[str, Any]]:
        """Keyword arguments the family's clip encoder takes besides the checkpoint (``None``: none)."""
        return None

    def engine_pixels(self, max_pixels_per_frame: int) -> int:
        """The per-frame pixel budget a rollout engine sizes its encoder cache for (0: no media)."""
        return 0

    # ---- data ------------------------------------------------------------------------------------

    @abstractmethod
    def input_version(self, model_path: str = "", options: Optional[Dict[str, Any]] = None) -> str:
        """What an encoded clip depends on besides the video: the cache version of a decode worker."""

    @abstractmethod
    def policy_input_version(self) -> str:
        """The input version written into an exported policy (:class:`~diadem_ray.models.policy.PolicyMeta`)."""

    @abstractmethod
    def clip_encoder(self, *, model_path: str, options: Optional[Dict[str, Any]], cpu_threads: int) -> "ClipEncoder":
        """The decode worker's encoder for this family (loads its front-end or processors)."""

    # ---- prompts and targets ---------------------------------------------------------------------

    def tokens(self, model_path: str) -> "Tokens":
        """Prompt and target tokenisation with the checkpoint's tokenizer."""
        from diadem_ray.models.tokens import Tokens

        return Tokens(model_path)

    @abstractmethod
    def prompt_ids(self, enc: "EncodedClip", tokens: "Tokens", *, max_prompt_tokens: int) -> Tuple[int, ...]:
        """One encoded clip's prompt token ids, at most ``max_prompt_tokens``; raises ``ValueError``
        naming the clip and the setting when the prompt cannot be cut."""

    def sft_target(self, clip: "Clip") -> str:
        """The SFT target of a clip: its reference dialogue as a caption."""
        from diadem_ray.models.captions import caption_of

        return caption_of(clip.dialogue)

    # ---- model and engines -----------------------------------------------------------------------

    @abstractmethod
    def load_causal_lm(self, path: str, *, dtype: Any) -> Any:
        """The trainable text-generating model from a local directory (nothing downloaded)."""

    def continuation_position_ids(self, context_output: Any, *, start: int, width: int, batch: int) -> Any:
        """Position ids of ``width`` text tokens that follow a context of ``start`` tokens, for
        ``batch`` rows sharing that context (the learner's shared-prefix pass; ``context_output``
        is the model's output for the context). ``None``: the model counts on from its cache."""
        return None

    def media_token_ids(self, tokenizer: Any) -> List[int]:
        """Token ids no response may contain (media placeholders and markers)."""
        return []

    def special_token_ids(self, tokenizer: Any) -> Dict[str, int]:
        """Placeholder ids a vLLM prompt of this family is built with."""
        return {}

    def vllm_engine_kwargs(self, max_pixels_per_frame: int) -> Dict[str, Any]:
        """Extra ``vllm.LLM`` arguments (registering the family's vLLM model first if it needs one)."""
        return {}

    def vllm_prompt(self, prompt_ids: Any, media: Any, special: Dict[str, int]) -> Dict[str, Any]:
        """``vllm.TokensPrompt`` fields of a prompt with media."""
        raise ValueError(f"model family {self.name} does not take media; pass raw 'multi_modal_data' instead")


class TinyAV(ModelFamily):
    """``tiny_av``: evidence text from the frozen front-end, the SmolLM2 backbone (:mod:`.tiny_av`)."""

    name = "tiny_av"
    takes_media = False
    default_cache = "shared"
    cache_ext = "txt"
    exports_module_config = False

    def checkpoint(self, model_path: str) -> str:
        # The converted backbone is cached per user (DIADEM_CACHE or ~/.cache/diadem-ray), so jobs
        # submitted from another working directory reuse it.
        if model_path:
            return model_path
        from diadem_ray.models.tiny_av import checkpoint

        return str(checkpoint())

    def input_version(self, model_path: str = "", options: Optional[Dict[str, Any]] = None) -> str:
        from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION

        return FRONTEND_VERSION

    def policy_input_version(self) -> str:
        return self.input_version()

    def clip_encoder(self, *, model_path: str, options: Optional[Dict[str, Any]], cpu_threads: int) -> "ClipEncoder":
        from diadem_ray.models.tiny_av import EvidenceEncoder

        return EvidenceEncoder(cpu_threads=cpu_threads)

    def prompt_ids(self, enc: "EncodedClip", tokens: "Tokens", *, max_prompt_tokens: int) -> Tuple[int, ...]:
        from diadem_ray.models.tiny_av import prompt_text

        return tuple(tokens.prompt(prompt_text(enc.evidence))[:max_prompt_tokens])

    def load_causal_lm(self, path: str, *, dtype: Any) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)


class QwenOmni(ModelFamily):
    """``qwen2_5_omni``: the Qwen2.5-Omni thinker with video and audio (:mod:`.qwen2_5_omni`)."""

    name = "qwen2_5_omni"
    takes_media = True
    default_cache = "none"  # media are large: decode again rather than store them
    cache_ext = "npz"
    exports_module_config = True  # the thinker's own config, not the whole Omni model's

    def config_problems(self, *, model_path: str, max_pixels_per_frame: int) -> List[str]:
        p = []
        if not model_path:
            p.append(f"model.path: model.family {self.name} needs a local checkpoint directory (nothing is downloaded)")
        if max_pixels_per_frame < 4 * 28 * 28:
            p.append(
                f"model.max_pixels_per_frame: at least {4 * 28 * 28} (four 28-pixel patches), got "
                f"{max_pixels_per_frame}"
            )
        return p

    def decode_options(
        self, *, frames_per_clip: int, max_pixels_per_frame: int, video_fps: float, sample_rate_hz: int
    ) -> Optional[Dict[str, Any]]:
        return {
            "max_frames": frames_per_clip,
            "max_pixels": max_pixels_per_frame,
            "fps": video_fps,
            "sample_rate_hz": sample_rate_hz,
        }

    def engine_pixels(self, max_pixels_per_frame: int) -> int:
        return max_pixels_per_frame

    def input_version(self, model_path: str = "", options: Optional[Dict[str, Any]] = None) -> str:
        from diadem_ray.models import qwen2_5_omni as q

        return q.inputs_version(model_path, q.Settings(**(options or {})))

    def policy_input_version(self) -> str:
        from diadem_ray.models.qwen2_5_omni import INPUTS_VERSION

        return INPUTS_VERSION

    def clip_encoder(self, *, model_path: str, options: Optional[Dict[str, Any]], cpu_threads: int) -> "ClipEncoder":
        from diadem_ray.models.qwen2_5_omni import MediaEncoder

        return MediaEncoder(model_path, options)

    def prompt_ids(self, enc: "EncodedClip", tokens: "Tokens", *, max_prompt_tokens: int) -> Tuple[int, ...]:
        if len(enc.prompt_token_ids) > max_prompt_tokens:  # cutting would drop placeholders the media must fill
            raise ValueError(
                f"clip {enc.clip_id}: its prompt is {len(enc.prompt_token_ids)} tokens (video + audio + "
                f"instruction), over model.max_prompt_tokens {max_prompt_tokens}; raise "
                "model.max_prompt_tokens or lower model.max_pixels_per_frame / data.frames_per_clip"
            )
        return enc.prompt_token_ids

    def load_causal_lm(self, path: str, *, dtype: Any) -> Any:
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dtype, local_files_only=True)

    def continuation_position_ids(self, context_output: Any, *, start: int, width: int, batch: int) -> Any:
        """``[3, batch, width]`` multimodal (temporal, height, width) positions: text after the
        context continues one past its largest position in all three, i.e. at ``index + rope_deltas``
        (the thinker's output for the context carries ``rope_deltas [1, 1]``)."""
        import torch

        delta = context_output.rope_deltas.reshape(-1)[0]
        pos = torch.arange(start, start + width, device=delta.device) + delta
        return pos.view(1, 1, -1).expand(3, batch, -1)

    def media_token_ids(self, tokenizer: Any) -> List[int]:
        """A sampled ``<|audio_bos|>`` would make Qwen2.5-Omni look for another audio segment when
        it computes positions for the response (a crash, or silently wrong positions). A sample of
        either engine that draws one ends there, without it; masking them instead would renormalise
        the sampling distribution away from the one whose log-probs the engines report and the
        learner scores."""
        if tokenizer is None:
            return []
        from diadem_ray.models.qwen2_5_omni import TOKENS

        ids = [tokenizer.convert_tokens_to_ids(t) for t in TOKENS.values()]
        return sorted({int(i) for i in ids if i is not None and i != tokenizer.unk_token_id})

    def special_token_ids(self, tokenizer: Any) -> Dict[str, int]:
        if tokenizer is None:
            return {}
        from diadem_ray.models.qwen2_5_omni import special_token_ids

        return special_token_ids(tokenizer)

    def vllm_engine_kwargs(self, max_pixels_per_frame: int) -> Dict[str, Any]:
        from diadem_ray.models import qwen2_5_omni as q

        q.register_vllm()
        budget: Dict[str, Any] = {"max_pixels": max_pixels_per_frame} if max_pixels_per_frame else {}
        return q.vllm_engine_kwargs(q.Settings(**budget))

    def vllm_prompt(self, prompt_ids: Any, media: Any, special: Dict[str, int]) -> Dict[str, Any]:
        from diadem_ray.models.qwen2_5_omni import vllm_prompt

        return vllm_prompt(prompt_ids, media, special)


REGISTRY: Dict[str, ModelFamily] = {f.name: f for f in (TinyAV(), QwenOmni())}
FAMILIES: Tuple[str, ...] = tuple(REGISTRY)


def get_family(name: str) -> ModelFamily:
    """The registered family called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"model family must be one of {', '.join(FAMILIES)}; got {name!r}")
    return REGISTRY[name]
