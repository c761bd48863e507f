"""GRPO core: pure torch functions with flat keyword arguments (no config objects, no Ray).

Shapes: ``P`` prompts, ``G`` samples per prompt, ``B`` sequences (= P·G in a full step, or a
micro-batch of them), ``T`` response tokens (right-padded), ``V`` vocabulary. ``mask`` is 1.0 on
real response tokens and 0.0 on padding. Log-probabilities are natural-log (nats).

Formulas (each function's docstring repeats its own):

* advantage, baseline ``mean``:           A_i = r_i − mean_g(r)
* advantage, baseline ``leave_one_out``:  A_i = r_i − (Σ_g r − r_i)/(G − 1) = G/(G−1)·(r_i − mean_g(r))
* std normalisation ``group``: A / (std_g(r) + eps); ``batch``: A / (std_all(r) + eps); ``none``
  (Dr. GRPO). ``std`` uses Bessel's correction (n − 1) by default. Groups whose rewards are all
  equal get A = 0 exactly and are flagged for the dynamic-sampling gate.
* per-line credit (optional): a caption line matched to reference line j gets
  a_{g,k} = hit_{g,k} − mean of the hits of the group's lines matched to j (each reference line is
  its own group); its speaker tokens get A_g + w·a_{g,k}, every other token A_g.
* ratio ρ = exp(logπ − logπ_old); clipped loss ℓ = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high));
  dual-clip (A < 0): ℓ = min(ℓ, −A·c).
* KL to the reference, per token, with δ = logπ_ref − logπ:  k1 = −δ,  k2 = δ²/2,  k3 = e^δ − δ − 1.
* aggregation ``token_mean``: Σ_{b,t} ℓ·m / N_tok (N_tok = the step's token count over every
  data-parallel rank and micro-batch, so the gradient does not depend on the split);
  ``seq_mean_token_mean``: Σ_b (Σ_t ℓ·m / Σ_t m) / N_seq; ``seq_mean_token_sum_norm``:
  Σ_{b,t} ℓ·m / (L_max · N_seq) with a constant L_max (Dr. GRPO).

Example:
    >>> import torch
    >>> adv, flat = group_advantages(torch.tensor([[1., 0., 0., 1.], [2., 2., 2., 2.]]))
    >>> adv.tolist()[1], flat.tolist()
    ([0.0, 0.0, 0.0, 0.0], [False, True])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def group_advantages(
    rewards: Tensor,
    *,
    baseline: str = "mean",
    std_normalization: str = "group",
    eps: float = 1e-6,
    unbiased_std: bool = True,
) -> Tuple[Tensor, Tensor]:
    """Group-relative advantages.

    Args:
        rewards: ``[P, G]`` scalar rewards.
        baseline: ``mean`` (A = r − mean_g r) or ``leave_one_out`` (A = r − mean of the other G−1).
        std_normalization: ``group`` (÷ std_g + eps), ``batch`` (÷ std over all P·G + eps) or
            ``none`` (Dr. GRPO).
        eps: added to the std (dimensionless, same unit as rewards).
        unbiased_std: Bessel's correction (n − 1) in the std.

    Returns:
        ``(advantages [P, G], zero_variance [P] bool)``; zero-variance groups have A = 0 exactly.

    Raises ``ValueError`` for a non-finite reward (one NaN would turn its group's advantages, or
    with ``batch`` the whole batch's, into NaN): the reward worker marks such rollouts failed first.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [num_prompts, samples_per_prompt >= 2], got {tuple(rewards.shape)}")
    finite = torch.isfinite(rewards)
    if not bool(finite.all()):
        p, g = (int(x) for x in (~finite).nonzero()[0])
        raise ValueError(f"reward [{p}, {g}] is {float(rewards[p, g])}: rewards must be finite")
    r = rewards.to(torch.float64)
    g = r.shape[1]
    centred = r - r.mean(dim=1, keepdim=True)
    if baseline == "mean":
        adv = centred
    elif baseline == "leave_one_out":
        adv = centred * (g / (g - 1))
    else:
        raise ValueError(f"baseline must be 'mean' or 'leave_one_out', got {baseline!r}")
    zero_var = (r == r[:, :1]).all(dim=1)
    if std_normalization == "group":
        adv = adv / (r.std(dim=1, keepdim=True, unbiased=unbiased_std) + eps)
    elif std_normalization == "batch":
        adv = adv / (r.std(unbiased=unbiased_std) + eps)
    elif std_normalization != "none":
        raise ValueError(f"std_normalization must be 'group', 'batch' or 'none', got {std_normalization!r}")
    adv = torch.where(zero_var[:, None], torch.zeros_like(adv), adv)
    return adv.to(rewards.dtype), zero_var


def line_advantages(lines: Sequence[Sequence[Tuple[int, bool]]]) -> List[List[float]]:
    """Per-line advantages within one group (the G samples of one clip).

    Args:
        lines: for each sample ``g``, its matched lines as ``(reference line index, speaker hit)``.

    Returns:
        Advantages shaped like ``lines``: ``a_{g,k} = hit_{g,k} − mean(hits of every line in the
        group matched to the same reference line)``, in [−1, 1]. A reference line that only one
        sample's lines matched gets 0 (there is nothing to compare it with).

    Example:
        >>> line_advantages([[(0, True), (1, False)], [(0, False), (1, False)], [(1, True)]])
        [[0.5, -0.3333333333333333], [-0.5, -0.3333333333333333], [0.6666666666666667]]
    """
    totals: Dict[int, List[float]] = {}
    for sample in lines:
        for ref, hit in sample:
            acc = totals.setdefault(ref, [0.0, 0.0])
            acc[0] += float(hit)
            acc[1] += 1.0
    return [[float(hit) - totals[ref][0] / totals[ref][1] for ref, hit in sample] for sample in lines]


def char_spans_to_tokens(
    prefix_chars: Callable[[int], int], num_tokens: int, spans: Sequence[Tuple[int, int]]
) -> List[Tuple[int, int]]:
    """Token ranges ``[ts, te)`` that cover character spans ``[start, end)`` of a decoded response.

    Args:
        prefix_chars: ``i -> len(decode(tokens[:i]))`` for ``0 <= i <= num_tokens`` (non-decreasing).
        num_tokens: the response length.
        spans: character spans in the decoded response.

    ``ts`` is the last token boundary at or before ``start`` and ``te`` the first at or after ``end``,
    so a token that straddles the span's edge belongs to it. Binary search: O(log n) decodes per edge.
    """

    def first_at_least(chars: int) -> int:
        lo, hi = 0, num_tokens
        while lo < hi:
            mid = (lo + hi) // 2
            if prefix_chars(mid) >= chars:
                hi = mid
            else:
                lo = mid + 1
        return lo

    out = []
    for start, end in spans:
        ts = first_at_least(start + 1) - 1 if start > 0 else 0  # last boundary <= start
        out.append((max(0, ts), max(first_at_least(end), ts + 1)))
    return out


def token_advantages(
    advantage: float,
    num_tokens: int,
    token_spans: Sequence[Tuple[int, int]],
    line_advantage: Sequence[float],
    *,
    weight: float,
) -> List[float]:
    """``[T]`` advantages of one response: ``advantage`` everywhere, plus ``weight · a_k`` on the
    tokens ``[ts, te)`` of line ``k``'s speaker phrase (see :func:`line_advantages`)."""
    if len(token_spans) != len(line_advantage):
        raise ValueError(f"{len(token_spans)} token spans but {len(line_advantage)} line advantages")
    out = [float(advantage)] * num_tokens
    for (ts, te), a in zip(token_spans, line_advantage):
        for t in range(max(0, ts), min(num_tokens, te)):
            out[t] += weight * a
    return out


def line_credit(
    group: Sequence[Any],
    advantages: Sequence[float],
    *,
    decode: Callable[[Sequence[int]], str],
    weight: float,
    counts: Dict[str, float],
) -> List[Any]:
    """Per-line credit for one group of scored rollouts (``ScoredRollout`` with ``lines``).

    Each rollout's advantage becomes one per response token: its group advantage everywhere, plus
    ``weight`` x its lines' :func:`line_advantages` on the tokens that spell each line's speaker
    phrase. A rollout whose tokens do not ``decode`` to the scored text keeps its scalar advantage.
    ``counts`` accumulates ``lines`` (matched lines), ``credited`` (non-zero line advantages) and
    ``unmapped`` (rollouts that kept their scalar because of the decode mismatch).
    """
    line_adv = line_advantages([[(h.ref_index, h.hit) for h in x.lines] for x in group])
    out: List[Any] = []
    for x, a, la in zip(group, advantages, line_adv):
        ids = list(x.rollout.token_ids)
        counts["lines"] += len(la)
        if ids and decode(ids) != x.rollout.text:
            counts["unmapped"] += 1
            out.append(a)
            continue
        if not ids or not any(la):
            out.append(a)
            continue
        spans = char_spans_to_tokens(_prefix_chars(decode, ids), len(ids), [(h.start, h.end) for h in x.lines])
        out.append(token_advantages(a, len(ids), spans, la, weight=weight))
        counts["credited"] += sum(1 for v in la if v != 0)
    return out


def _prefix_chars(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> Callable[[int], int]:
    """``i -> len(decode(ids[:i]))``, memoised (:func:`char_spans_to_tokens` asks O(log n) of them)."""
    seen: Dict[int, int] = {}

    def prefix(i: int) -> int:
        if i not in seen:
            seen[i] = len(decode(ids[:i])) if i > 0 else 0
        return seen[i]

    return prefix


@dataclass
class GroupGate:
    """Dynamic sampling (DAPO's gate) over one step's prompt groups, as a pure object.

    A group whose rewards all tie has advantage 0 everywhere and teaches nothing. With
    ``dynamic_sampling`` such groups are set aside (``flat``) and more prompts are drawn, at most
    ``max_refill_rounds`` extra rounds, until ``wanted`` groups with signal are ``kept``; the batch is
    the kept groups, topped up with set-aside ones (their advantage is 0) if the rounds ran out.
    Without it every group is kept and there is one round.

    Example:
        >>> gate = GroupGate(wanted=2, dynamic_sampling=True, max_refill_rounds=1)
        >>> gate.add(["a", "b"], [False, True]); gate.need(), gate.more()
        (1, True)
        >>> gate.add(["c"], [True]); gate.more(), gate.batch(), gate.refills
        (False, ['a', 'b'], 1)
    """

    wanted: int
    dynamic_sampling: bool
    max_refill_rounds: int
    kept: List[Any] = field(default_factory=list)
    flat: List[Any] = field(default_factory=list)
    rounds: int = 0
    zero_variance: int = 0

    def need(self) -> int:
        """Groups still wanted with signal."""
        return max(0, self.wanted - len(self.kept))

    def more(self) -> bool:
        """Whether to draw another round (of :meth:`need` prompts)."""
        limit = self.max_refill_rounds if self.dynamic_sampling else 0
        return self.need() > 0 and self.rounds <= limit

    def add(self, groups: Sequence[Any], zero_variance: Sequence[bool]) -> None:
        """One round's groups and, for each, whether its rewards all tie."""
        if len(groups) != len(zero_variance):
            raise ValueError(f"{len(groups)} groups but {len(zero_variance)} zero-variance flags")
        for group, flat in zip(groups, zero_variance):
            (self.flat if flat and self.dynamic_sampling else self.kept).append(group)
        self.zero_variance += sum(bool(z) for z in zero_variance)
        self.rounds += 1

    @property
    def refills(self) -> int:
        """Rounds drawn after the first."""
        return max(0, self.rounds - 1)

    def batch(self) -> List[Any]:
        """The step's groups: kept ones first, set-aside ones after, ``wanted`` at most."""
        return (self.kept + self.flat)[: self.wanted]


def kl_per_token(logprobs: Tensor, ref_logprobs: Tensor, *, estimator: str = "k3") -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from samples of π; ``[B, T]`` → ``[B, T]``.

    With δ = logπ_ref − logπ: k1 = −δ (unbiased, high variance), k2 = δ²/2, k3 = e^δ − δ − 1
    (unbiased, non-negative; Schulman's estimator).
    """
    delta = ref_logprobs - logprobs
    if estimator == "k1":
        return -delta
    if estimator == "k2":
        return 0.5 * delta.pow(2)
    if estimator == "k3":
        return torch.exp(delta) - delta - 1.0
    raise ValueError(f"kl estimator must be k1, k2 or k3, got {estimator!r}")


def clipped_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.28,
    dual_clip_c: Optional[float] = None,
) -> Tuple[Tensor, Tensor]:
    """Per-token PPO/GRPO surrogate loss (to minimise).

    ρ = exp(logπ − logπ_old); ℓ = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high)); with dual-clip
    and A < 0, ℓ = min(ℓ, −A·c) (c > 1 bounds the loss of very off-policy tokens).

    Args:
        logprobs, old_logprobs: ``[B, T]``.
        advantages: ``[B]`` (one per sequence) or ``[B, T]``.

    Returns:
        ``(loss [B, T], clipped [B, T] bool)`` — ``clipped`` marks tokens where a clip was active.
    """
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    loss = torch.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if dual_clip_c is not None:
        if dual_clip_c <= 1.0:
            raise ValueError(f"dual_clip_c must be > 1, got {dual_clip_c}")
        bound = -adv * dual_clip_c
        dual = (adv < 0) & (loss > bound)
        loss = torch.where(dual, bound, loss)
        was_clipped = was_clipped | dual
    return loss, was_clipped


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    *,
    mode: str = "token_mean",
    num_tokens: Optional[float] = None,
    num_sequences: Optional[float] = None,
    max_response_len: Optional[int] = None,
) -> Tensor:
    """Reduce ``[B, T]`` per-token values of one micro-batch to the scalar to backpropagate.

    Normalisers are the whole optimizer step's, so summing micro-batch losses over ranks and
    accumulation steps gives the gradient of the full batch regardless of the split:

    * ``token_mean``: Σ ℓ·m / ``num_tokens`` (default: this micro-batch's Σm).
    * ``seq_mean_token_mean``: Σ_b (Σ_t ℓ·m / Σ_t m) / ``num_sequences`` (default: B).
    * ``seq_mean_token_sum_norm``: Σ ℓ·m / (``max_response_len`` · ``num_sequences``).
    """
    m = mask.to(per_token.dtype)
    # Masked positions are selected away, not multiplied by 0: a NaN or inf there (a padded
    # position's logit) would survive a multiplication (NaN · 0 = NaN) and poison the sum.
    kept = torch.where(m > 0, per_token * m, torch.zeros_like(per_token))
    if mode == "token_mean":
        denom = float(m.sum().item()) if num_tokens is None else float(num_tokens)
        return kept.sum() / max(denom, 1.0)
    n_seq = float(per_token.shape[0]) if num_sequences is None else float(num_sequences)
    if mode == "seq_mean_token_mean":
        per_seq = kept.sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return per_seq.sum() / max(n_seq, 1.0)
    if mode == "seq_mean_token_sum_norm":
        length = per_token.shape[1] if max_response_len is None else max_response_len
        return kept.sum() / (float(length) * max(n_seq, 1.0))
    raise ValueError(
        f"loss aggregation must be token_mean, seq_mean_token_mean or seq_mean_token_sum_norm, got {mode!r}"
    )


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Per-token entropy (nats) of the categorical over ``V``: ``[B, T, V]`` → ``[B, T]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def token_logprobs(logits: Tensor, tokens: Tensor, *, temperature: float = 1.0) -> Tensor:
    """log π(token) under ``logits / temperature``: ``[B, T, V]``, ``[B, T]`` → ``[B, T]``.

    ``logits[:, t]`` must be the prediction for ``tokens[:, t]`` (shift before calling).
    ``temperature`` must be finite and > 0 (greedy decoding has no log-probabilities).
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ref_logprobs: Optional[Tensor] = None,
    entropy: Optional[Tensor] = None,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.28,
    dual_clip_c: Optional[float] = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    entropy_coef: float = 0.0,
    loss_aggregation: str = "token_mean",
    num_tokens: Optional[float] = None,
    num_sequences: Optional[float] = None,
    max_response_len: Optional[int] = None,
) -> Tuple[Tensor, Dict[str, float]]:
    """Total per-micro-batch loss: policy + kl_coef·KL − entropy_coef·H, each aggregated alike.

    All per-token inputs are ``[B, T]``; ``advantages`` is ``[B]`` or ``[B, T]``. Returns the scalar loss and
    float metrics (``pg_loss``, ``kl``, ``entropy``, ``clip_frac``, ``ratio_mean``), every metric
    aggregated with the same normaliser.
    """
    agg = partial(
        aggregate,
        mode=loss_aggregation,
        num_tokens=num_tokens,
        num_sequences=num_sequences,
        max_response_len=max_response_len,
    )
    # Padded positions are selected away before any arithmetic, so a NaN there reaches neither the
    # loss nor the gradient of these inputs (both are exactly 0 at masked positions).
    on = mask > 0

    def keep(x: Optional[Tensor]) -> Optional[Tensor]:
        return None if x is None or x.dim() != mask.dim() else torch.where(on, x, torch.zeros_like(x))

    logprobs, old_logprobs = keep(logprobs), keep(old_logprobs)  # type: ignore[assignment]
    ref_logprobs, entropy = keep(ref_logprobs), keep(entropy)
    if advantages.dim() == mask.dim():
        advantages = keep(advantages)  # type: ignore[assignment]
    pg, was_clipped = clipped_policy_loss(
        logprobs,
        old_logprobs,
        advantages,
        clip_eps_low=clip_eps_low,
        clip_eps_high=clip_eps_high,
        dual_clip_c=dual_clip_c,
    )
    loss = agg(pg, mask)
    m = mask.to(logprobs.dtype)
    n = m.sum().clamp(min=1.0)
    on = m > 0
    ratio = torch.exp(logprobs - old_logprobs).detach()
    metrics = {
        "pg_loss": float(loss.detach()),
        "clip_frac": float((was_clipped & on).to(m.dtype).sum() / n),
        "ratio_mean": float(torch.where(on, ratio * m, torch.zeros_like(ratio)).sum() / n),
    }
    if ref_logprobs is not None and kl_coef != 0.0:
        kl = agg(kl_per_token(logprobs, ref_logprobs, estimator=kl_estimator), mask)
        loss = loss + kl_coef * kl
        metrics["kl"] = float(kl.detach())
    if entropy is not None and entropy_coef != 0.0:
        ent = agg(entropy, mask)
        loss = loss - entropy_coef * ent
        metrics["entropy"] = float(ent.detach())
    return loss, metrics


def kl_penalised_rewards(
    rewards: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, *, kl_coef: float, estimator: str = "k1"
) -> Tensor:
    """KL in the reward instead of the loss: r_b − kl_coef · Σ_t KL_t·m (``[B]`` → ``[B]``)."""
    kl = kl_per_token(logprobs, ref_logprobs, estimator=estimator) * mask.to(logprobs.dtype)
    return rewards - kl_coef * kl.sum(dim=1)


def sft_loss(logits: Tensor, labels: Tensor, loss_mask: Tensor, *, num_tokens: Optional[float] = None) -> Tensor:
    """Cross-entropy over caption tokens only (prompt and media tokens have ``loss_mask`` 0).

    ``logits [B, T, V]`` predict ``labels [B, T]`` (already shifted); normalised by ``num_tokens``
    (the step's caption-token count across ranks and micro-batches; default: this batch's).
    """
    nll = -token_logprobs(logits, labels)
    return aggregate(nll, loss_mask, mode="token_mean", num_tokens=num_tokens)
