"""Packing a learner micro-batch into tensors: pure torch, no model.

Two layouts:

* **per sequence** (:func:`pack_sequences`): each row is prompt + response, right-padded; outputs
  are ``[B, L-1]`` over every position, the response's positions marked by ``response_mask``.
* **shared prefix** (:func:`pack_group`): the samples of one GRPO group share their prompt, so the
  prompt is encoded once. The *context* ``prompt[:-1]`` runs as one sequence whose keys and values
  every sample attends to; each sample's *tail* is the prompt's last token followed by its response
  without the response's last token, so tail position ``t`` predicts response token ``t``. Outputs
  are ``[G, R]`` over response positions only (``R`` = the longest response of the group, at least 1).
  A causal model gives the same logits either way (Prefix Grouper, arXiv 2506.05433): a tail token
  sees exactly the context plus its own earlier tokens, at the same positions.

:func:`prompt_groups` cuts a batch into the :class:`Unit` s the shared-prefix path runs: runs of
consecutive sequences with the same prompt (and the same media), at most ``max_size`` each; lone
sequences are batched per sequence.

Example:
    >>> g = pack_group([1, 2, 3], [[7, 8], [9]])
    >>> g["context_ids"].tolist(), g["tail_ids"].tolist(), g["targets"].tolist()
    ([[1, 2]], [[3, 7], [3, 0]], [[7, 8], [9, 0]])
    >>> g["response_mask"].tolist(), g["tail_mask"].tolist()
    ([[1.0, 1.0], [1.0, 0.0]], [[1, 1], [1, 0]])
    >>> [(u.rows.start, u.rows.stop, u.shared) for u in prompt_groups([[1, 2]] * 3 + [[5], [6]], max_size=2)]
    [(0, 2, True), (2, 4, False), (4, 5, False)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Unit:
    """Sequences of a batch that run as one forward: ``rows`` of the batch, in the shared-prefix
    layout (``shared``: they share one prompt) or one row per sequence."""

    rows: slice
    shared: bool


def prompt_groups(
    prompt_ids: Sequence[Sequence[int]], *, media: Optional[Sequence[Any]] = None, max_size: int
) -> List[Unit]:
    """Cut a batch into units of at most ``max_size`` sequences. Consecutive sequences with one
    prompt (equal token ids and, when ``media`` is given, the very same media object: two clips can
    expand to the same placeholder ids) form a shared unit; a run longer than ``max_size`` is cut
    into pieces that each encode the prompt once. Sequences that share their prompt with no
    neighbour (and one-token prompts, which have no context to share) are batched per sequence.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    runs: List[slice] = []
    start = 0
    for i in range(1, len(prompt_ids) + 1):
        same = (
            i < len(prompt_ids)
            and i - start < max_size
            and len(prompt_ids[start]) > 1
            and list(prompt_ids[i]) == list(prompt_ids[start])
            and (media is None or media[i] is media[start])
        )
        if not same:
            runs.append(slice(start, i))
            start = i
    out: List[Unit] = []
    for run in runs:
        single = run.stop - run.start == 1
        last = out[-1] if out else None
        if single and last is not None and not last.shared and last.rows.stop - last.rows.start < max_size:
            out[-1] = Unit(slice(last.rows.start, run.stop), False)
        else:
            out.append(Unit(run, not single))
    return out


def pack_group(
    prompt: Sequence[int],
    response_ids: Sequence[Sequence[int]],
    *,
    old_logprobs: Optional[Sequence[Sequence[float]]] = None,
    advantages: Optional[Sequence[Any]] = None,
    first_index: int = 0,
) -> Dict[str, Tensor]:
    """One group's samples in the shared-prefix layout (see the module docstring).

    Args:
        prompt: the group's prompt, at least 2 tokens (the context must not be empty).
        response_ids: ``G`` responses (any may be empty).
        old_logprobs / advantages: per-token rows, one value per response token.
        first_index: the group's offset in its batch, for error messages.

    Returns:
        ``context_ids [1, P-1]``, ``tail_ids [G, R]`` and ``tail_mask [G, R]`` (the model's inputs),
        ``targets [G, R]``, ``response_mask [G, R]`` (1.0 on response tokens), and
        ``old_logprobs`` / ``advantages`` ``[G, R]`` when given; ``R = max(1, longest response)``.
    """
    if len(prompt) < 2:
        raise ValueError(f"sequence {first_index}: a shared prefix needs a prompt of >= 2 tokens, got {len(prompt)}")
    g = len(response_ids)
    width = max([1] + [len(r) for r in response_ids])
    tail = torch.zeros((g, width), dtype=torch.long)  # padding: token 0, masked out
    tail_mask = torch.zeros((g, width), dtype=torch.long)
    targets = torch.zeros((g, width), dtype=torch.long)
    response_mask = torch.zeros((g, width))
    for i, r in enumerate(response_ids):
        n = max(1, len(r))
        tail[i, :n] = torch.tensor([prompt[-1]] + list(r[:-1]), dtype=torch.long)
        tail_mask[i, :n] = 1
        targets[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        response_mask[i, : len(r)] = 1.0
    out = {
        "context_ids": torch.tensor([list(prompt[:-1])], dtype=torch.long),
        "tail_ids": tail,
        "tail_mask": tail_mask,
        "targets": targets,
        "response_mask": response_mask,
    }
    starts = [0] * g
    out.update(_token_rows(response_ids, starts, width, first_index, old_logprobs=old_logprobs, advantages=advantages))
    return out


def _token_rows(
    response_ids: Sequence[Sequence[int]],
    starts: Sequence[int],
    width: int,
    first_index: int,
    **rows: Optional[Sequence[Sequence[float]]],
) -> Dict[str, Tensor]:
    """Per-token rows (one value per response token) as ``[B, width]`` tensors, sequence ``i``'s
    values at ``starts[i] …``, zeros elsewhere; rows given as ``None`` are left out."""
    out: Dict[str, Tensor] = {}
    for name, values in rows.items():
        if values is None:
            continue
        if len(values) != len(response_ids):
            raise ValueError(f"{len(values)} rows of {name.replace('_', ' ')} for {len(response_ids)} sequences")
        t = torch.zeros((len(response_ids), width))
        for i, (row, r, s) in enumerate(zip(values, response_ids, starts)):
            row = list(row)
            if len(row) != len(r):
                raise ValueError(
                    f"sequence {first_index + i}: {len(row)} {name.replace('_', ' ')} for {len(r)} response tokens"
                )
            t[i, s : s + len(r)] = torch.tensor(row, dtype=t.dtype)
        out[name] = t
    return out


def pack_sequences(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    *,
    old_logprobs: Optional[Sequence[Sequence[float]]] = None,
    advantages: Optional[Sequence[Any]] = None,
    pad_id: int = 0,
    first_index: int = 0,
) -> Dict[str, Tensor]:
    """Right-pad (prompt + response) sequences for one forward pass.

    ``first_index`` numbers the sequences in error messages (a micro-batch's offset in its batch).

    Position ``t`` of every ``[B, L-1]`` output refers to predicting token ``t + 1`` from tokens
    ``0 … t``, so ``token_logprobs(logits[:, :-1], input_ids[:, 1:])`` lines up with them.

    Returns:
        ``input_ids [B, L]`` (long), ``attention_mask [B, L]``, ``targets [B, L-1]`` (=
        ``input_ids[:, 1:]``), ``response_mask [B, L-1]`` (1.0 where the target is a response
        token), and ``old_logprobs [B, L-1]`` / ``advantages [B, L-1]`` (per-token rows, 0 outside
        the response) when given.
    """
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    seqs = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every sequence needs at least one prompt token")
    width = max(len(s) for s in seqs)
    b = len(seqs)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    response_mask = torch.zeros((b, max(width - 1, 1)))
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        n = len(p) + len(r)
        input_ids[i, :n] = torch.tensor(seqs[i], dtype=torch.long)
        attention[i, :n] = 1
        response_mask[i, len(p) - 1 : n - 1] = 1.0
    out = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "targets": input_ids[:, 1:],
        "response_mask": response_mask,
    }
    starts = [len(p) - 1 for p in prompt_ids]
    out.update(
        _token_rows(
            response_ids, starts, max(width - 1, 1), first_index, old_logprobs=old_logprobs, advantages=advantages
        )
    )
    return out
