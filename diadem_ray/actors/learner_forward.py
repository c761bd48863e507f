"""The learner's forward passes: which sequences run together, and their log-probs.

Two paths (``Learner.shared_prefix``):

* **shared prefix** (default): the samples of one GRPO group share their prompt, so it runs once.
  The context (the prompt minus its last token) runs as one sequence; its keys and values are
  repeated for the group's tails (the prompt's last token followed by each response), which attend
  to them and to their own earlier tokens at the positions the full sequence would give them. Logits
  exist only for response tokens. Gradients reach the context once, summed over the group, so the
  loss and the gradient equal the per-sequence path's (``tests/ray_local/test_shared_prefix_ranks.py``);
  the prompt's share of the work is divided by the group size. A group larger than
  ``micro_batch_size`` is cut into pieces that each run the context.
* **per sequence**: each row is prompt + response, ``micro_batch_size`` rows per forward. Text-only
  rows ask for logits only from the first position any row scores; rows with media run one forward
  each on their unpadded length (the model builds each one's multimodal positions itself).

A mixin of :class:`diadem_ray.actors.learner.Learner`, which owns ``device``, ``family``, ``bf16``,
``micro_batch_size``, ``zero_stage``, ``world_size``, ``shared_prefix`` and ``response_logits``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch

from diadem_ray import grpo, packing


def _first_response_position(response_mask: torch.Tensor) -> int:
    """The first of the ``[B, L-1]`` positions that predicts a response token in any row (0 when
    no row has one)."""
    rows = response_mask.bool().any(dim=0).nonzero()
    return int(rows[0, 0]) if len(rows) else 0


@contextmanager
def _last_position_logits(model: Any) -> Iterator[None]:
    """Within the block the model's output head sees only the last position: a context pass needs
    no logits (its last position's come back from the tail pass), and Qwen2.5-Omni's thinker has
    no ``logits_to_keep`` to skip a ``[P, V]`` product over its media tokens."""
    head = getattr(model, "module", model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _m, args: (args[0][..., -1:, :],) + tuple(args[1:]))
    try:
        yield
    finally:
        handle.remove()


class ForwardMixin:
    # owned by Learner, declared here for the type checker
    device: Any
    family: Any
    bf16: bool
    micro_batch_size: int
    zero_stage: int
    world_size: int
    shared_prefix: bool
    response_logits: bool

    # ---- units ---------------------------------------------------------------------------------

    def _micro_batches(self, n: int) -> List[slice]:
        return [slice(i, min(i + self.micro_batch_size, n)) for i in range(0, n, self.micro_batch_size)]

    def _units(self, prompt_ids: Sequence[Sequence[int]], media: Optional[Sequence[Any]]) -> List[packing.Unit]:
        """The parts of a batch that run as one forward: a group's samples (shared prefix) or
        ``micro_batch_size`` sequences (per sequence)."""
        per_sequence = [packing.Unit(s, False) for s in self._micro_batches(len(prompt_ids))]
        if not self.shared_prefix:
            return per_sequence
        units = packing.prompt_groups(prompt_ids, media=media, max_size=self.micro_batch_size)
        if self.zero_stage == 3 and self.world_size > 1:
            # ZeRO-3 gathers each layer's parameters collectively at every forward and backward: the
            # ranks must run the same sequence of passes. Their shards can group differently (a
            # group cut by the even split, a lone prompt), so they compare plans first and fall back
            # to per-sequence units — the same count on every rank — when they differ.
            import torch.distributed as dist

            plan = [(u.shared, u.rows.stop - u.rows.start) for u in units]
            plans: List[Any] = [None] * self.world_size
            dist.all_gather_object(plans, plan)
            if any(p != plan for p in plans):
                return per_sequence
        return units

    def _pack(
        self,
        prompt_ids: Sequence[Sequence[int]],
        response_ids: Sequence[Sequence[int]],
        unit: packing.Unit,
        *,
        old_logprobs: Optional[Sequence[Sequence[float]]] = None,
        advantages: Optional[Sequence[Any]] = None,
    ) -> Dict[str, torch.Tensor]:
        """One unit of a batch as tensors (:mod:`diadem_ray.packing`)."""
        s = unit.rows
        kw: Dict[str, Any] = {
            "old_logprobs": old_logprobs[s] if old_logprobs is not None else None,
            "advantages": advantages[s] if advantages is not None else None,
            "first_index": s.start,
        }
        if unit.shared:
            return packing.pack_group(prompt_ids[s.start], response_ids[s], **kw)
        return packing.pack_sequences(prompt_ids[s], response_ids[s], **kw)

    # ---- logits --------------------------------------------------------------------------------

    def _media_kwargs(self, media: Any) -> Dict[str, Any]:
        from diadem_ray.models.media import media_kwargs

        float_dtype = torch.bfloat16 if self.bf16 else torch.float32
        return media_kwargs(media, device=self.device, float_dtype=float_dtype)

    def _logits(self, model, packed: Dict[str, torch.Tensor], media: Optional[Sequence[Any]] = None) -> torch.Tensor:
        """Logits aligned with ``packed["targets"]``: ``[G, R, V]`` for a shared-prefix group,
        ``[B, L-1, V]`` per sequence (positions that score nothing are zeros, which the response
        mask excludes)."""
        if "context_ids" in packed:
            return self._group_logits(model, packed, media[0] if media else None)
        ids = packed["input_ids"].to(self.device)
        mask = packed["attention_mask"].to(self.device)
        if media is None or not any(media):
            start = _first_response_position(packed["response_mask"]) if self.response_logits else 0
            # lm_head and the softmax over the vocabulary only from the first position any row scores:
            # the prompt's positions before it feed no loss and no log-prob (padded back with zeros)
            out = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=ids.shape[1] - start)
            return torch.nn.functional.pad(out.logits[:, :-1], (0, 0, start, 0))
        rows = []
        for i, m in enumerate(media):
            n = int(mask[i].sum())
            out = model(
                input_ids=ids[i : i + 1, :n],
                attention_mask=mask[i : i + 1, :n],
                use_cache=False,
                **self._media_kwargs(m),
            ).logits[:, :-1]
            rows.append(torch.nn.functional.pad(out, (0, 0, 0, ids.shape[1] - n)))
        return torch.cat(rows)

    def _group_logits(self, model, packed: Dict[str, torch.Tensor], media: Any) -> torch.Tensor:
        """``[G, R, V]`` logits of one group's tails after its context (see the module docstring)."""
        context = packed["context_ids"].to(self.device)
        tails, tail_mask = packed["tail_ids"].to(self.device), packed["tail_mask"].to(self.device)
        g, width = tails.shape
        start = context.shape[1]
        with _last_position_logits(model):
            out = model(
                input_ids=context,
                attention_mask=torch.ones_like(context),
                use_cache=True,
                **self._media_kwargs(media),
            )
        cache = out.past_key_values
        if g > 1:  # every tail attends to the same context: the gradient of each copy sums into it
            cache.batch_repeat_interleave(g)
        positions = self.family.continuation_position_ids(out, start=start, width=width, batch=g)
        extra = {} if positions is None else {"position_ids": positions.to(self.device)}
        attention = torch.cat([torch.ones((g, start), dtype=tail_mask.dtype, device=self.device), tail_mask], dim=1)
        return model(input_ids=tails, attention_mask=attention, past_key_values=cache, use_cache=True, **extra).logits

    def _forward(
        self,
        model,
        packed: Dict[str, torch.Tensor],
        need_entropy: bool = False,
        media: Optional[Sequence[Any]] = None,
        temperature: float = 1.0,
    ):
        """Log-probs (and entropies), shaped like ``packed["targets"]``, of the distribution the
        engine sampled from: ``logits / temperature``, as vLLM's ``processed_logprobs`` (trl#4159: a
        learner that scores temperature-1 log-probs of temperature-T samples biases the ratio and
        the KL)."""
        logits = self._logits(model, packed, media)
        lp = grpo.token_logprobs(logits, packed["targets"].to(self.device), temperature=temperature)
        ent = grpo.entropy_from_logits(logits / temperature if temperature != 1.0 else logits) if need_entropy else None
        return lp, ent
