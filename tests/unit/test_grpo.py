import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diadem_ray import grpo, packing


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_advantages_hand_computed_mean_group_bessel():
    adv, flat = grpo.group_advantages(t([[1.0, 0.0, 0.0, 1.0]]), eps=0.0)
    std = math.sqrt(sum((v - 0.5) ** 2 for v in (1, 0, 0, 1)) / 3)  # Bessel
    assert adv[0].tolist() == pytest.approx([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std])
    assert flat.tolist() == [False]


def test_advantages_leave_one_out_and_none():
    r = t([[3.0, 1.0, 2.0]])
    adv, _ = grpo.group_advantages(r, baseline="leave_one_out", std_normalization="none")
    assert adv[0].tolist() == pytest.approx([3 - 1.5, 1 - 2.5, 2 - 2.0])
    adv, _ = grpo.group_advantages(r, std_normalization="none")
    assert adv[0].tolist() == pytest.approx([1.0, -1.0, 0.0])


def test_advantages_batch_std():
    r = t([[0.0, 2.0], [1.0, 1.0]])
    adv, flat = grpo.group_advantages(r, std_normalization="batch", eps=0.0, unbiased_std=False)
    std = torch.tensor([0.0, 2.0, 1.0, 1.0], dtype=torch.float64).std(unbiased=False).item()
    assert adv.flatten().tolist() == pytest.approx([-1 / std, 1 / std, 0.0, 0.0])
    assert flat.tolist() == [False, True]


def test_advantages_reject_bad_shapes_and_modes():
    with pytest.raises(ValueError):
        grpo.group_advantages(t([1.0, 2.0]))
    with pytest.raises(ValueError):
        grpo.group_advantages(t([[1.0], [2.0]]))
    with pytest.raises(ValueError):
        grpo.group_advantages(t([[1.0, 2.0]]), baseline="median")


rewards = st.lists(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=8).map(tuple), min_size=1, max_size=6
)


@settings(max_examples=100, deadline=None)
@given(
    rewards, st.sampled_from(["mean", "leave_one_out"]), st.sampled_from(["group", "batch", "none"]), st.floats(-3, 3)
)
def test_advantage_properties(rows, baseline, norm, shift):
    g = min(len(r) for r in rows)
    r = t([list(row[:g]) for row in rows])
    adv, flat = grpo.group_advantages(r, baseline=baseline, std_normalization=norm)
    assert adv.sum(dim=1).abs().max() < 1e-6 * (1 + adv.abs().max())  # sums to ~0 per group
    shifted, _ = grpo.group_advantages(r + shift, baseline=baseline, std_normalization=norm)
    assert torch.allclose(adv, shifted, atol=1e-6)  # shift invariance
    assert (adv[flat] == 0).all()  # zero-variance groups give zero advantage


def test_clipped_loss_hand_computed():
    old = t([[0.0, 0.0, 0.0]])
    lp = t([[math.log(1.5), math.log(0.5), 0.0]])
    loss, clipped = grpo.clipped_policy_loss(lp, old, t([1.0]), clip_eps_low=0.2, clip_eps_high=0.28)
    # A>0: ratio 1.5 clipped at 1.28; ratio 0.5 not clipped (max picks -0.5); ratio 1 untouched.
    assert loss[0].tolist() == pytest.approx([-1.28, -0.5, -1.0])
    assert clipped[0].tolist() == [True, False, False]
    loss, _ = grpo.clipped_policy_loss(lp, old, t([-1.0]), clip_eps_low=0.2, clip_eps_high=0.28)
    assert loss[0].tolist() == pytest.approx([1.5, 0.8, 1.0])


def test_dual_clip_bounds_negative_advantage_loss():
    lp, old = t([[math.log(10.0)]]), t([[0.0]])
    loss, clipped = grpo.clipped_policy_loss(lp, old, t([-1.0]), dual_clip_c=3.0)
    assert loss.item() == pytest.approx(3.0) and clipped.item()
    loss, _ = grpo.clipped_policy_loss(lp, old, t([1.0]), dual_clip_c=3.0)
    assert loss.item() == pytest.approx(-1.28)  # positive advantages are not dual-clipped
    with pytest.raises(ValueError):
        grpo.clipped_policy_loss(lp, old, t([1.0]), dual_clip_c=1.0)


def test_kl_estimators_hand_computed():
    lp, ref = t([[math.log(0.5)]]), t([[math.log(0.25)]])
    d = math.log(0.25) - math.log(0.5)
    assert grpo.kl_per_token(lp, ref, estimator="k1").item() == pytest.approx(-d)
    assert grpo.kl_per_token(lp, ref, estimator="k2").item() == pytest.approx(d * d / 2)
    assert grpo.kl_per_token(lp, ref, estimator="k3").item() == pytest.approx(math.exp(d) - d - 1)
    assert grpo.kl_per_token(lp, lp, estimator="k3").item() == 0.0


def test_aggregation_modes_hand_computed():
    loss = t([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    assert grpo.aggregate(loss, mask, mode="token_mean").item() == pytest.approx(10 / 4)
    assert grpo.aggregate(loss, mask, mode="token_mean", num_tokens=8).item() == pytest.approx(10 / 8)
    assert grpo.aggregate(loss, mask, mode="seq_mean_token_mean").item() == pytest.approx((2 + 4) / 2)
    assert grpo.aggregate(loss, mask, mode="seq_mean_token_sum_norm", max_response_len=5).item() == pytest.approx(
        10 / (5 * 2)
    )


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_gradient_does_not_depend_on_split(mode):
    torch.manual_seed(0)
    b, tlen = 8, 6
    logits_param = torch.randn(b, tlen, dtype=torch.float64, requires_grad=True)
    old = torch.randn(b, tlen, dtype=torch.float64) * 0.1
    adv = torch.randn(b, dtype=torch.float64)
    mask = (torch.rand(b, tlen) > 0.3).to(torch.float64)
    mask[:, 0] = 1
    norms = dict(num_tokens=float(mask.sum()), num_sequences=float(b), max_response_len=tlen)

    def loss_of(rows):
        lp = torch.nn.functional.logsigmoid(logits_param[rows])
        return grpo.grpo_loss(lp, old[rows], adv[rows], mask[rows], loss_aggregation=mode, **norms)[0]

    full = torch.autograd.grad(loss_of(slice(0, b)), logits_param)[0]
    split = torch.zeros_like(full)
    for rows in (slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)):  # 2 ranks x 2 micro-batches
        split += torch.autograd.grad(loss_of(rows), logits_param)[0]
    assert torch.allclose(full, split, atol=1e-12)


def test_grpo_loss_combines_terms_and_reports_metrics():
    lp = t([[-1.0, -2.0]])
    old = lp.clone()
    ref = lp - 0.5
    mask = t([[1, 1]])
    ent = t([[0.3, 0.5]])
    loss, m = grpo.grpo_loss(lp, old, t([2.0]), mask, ref_logprobs=ref, entropy=ent, kl_coef=0.1, entropy_coef=0.01)
    kl = math.exp(-0.5) + 0.5 - 1
    assert loss.item() == pytest.approx(-2.0 + 0.1 * kl - 0.01 * 0.4)
    assert m["clip_frac"] == 0.0 and m["ratio_mean"] == pytest.approx(1.0) and m["kl"] == pytest.approx(kl)


def test_kl_in_reward_and_sft_loss():
    r = grpo.kl_penalised_rewards(t([1.0]), t([[-1.0, -1.0]]), t([[-1.5, -1.0]]), t([[1, 1]]), kl_coef=0.2)
    assert r.item() == pytest.approx(1.0 - 0.2 * 0.5)
    logits = torch.zeros(1, 3, 4, dtype=torch.float64)
    labels = torch.tensor([[1, 2, 3]])
    loss = grpo.sft_loss(logits, labels, t([[0, 1, 1]]))
    assert loss.item() == pytest.approx(math.log(4))  # uniform over 4, prompt token masked


def test_entropy_and_token_logprobs():
    logits = torch.log(t([[[0.5, 0.25, 0.25]]]))
    assert grpo.entropy_from_logits(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    assert grpo.token_logprobs(logits, torch.tensor([[0]])).item() == pytest.approx(math.log(0.5))


def test_empty_response_contributes_nothing():
    """A rollout that ended before its first token (vLLM drew a media placeholder and dropped it)
    enters the step as an empty row: no masked token, no loss, no engine-vs-learner difference."""
    prompts, responses = [[5, 6, 7], [5, 6], [8]], [[9, 10], [], [11, 12, 13]]
    packed = packing.pack_sequences(prompts, responses, old_logprobs=[[-1.0, -2.0], [], [-0.5] * 3])
    assert packed["response_mask"].sum(dim=1).tolist() == [2.0, 0.0, 3.0]
    assert packed["old_logprobs"][1].abs().sum().item() == 0.0
    torch.manual_seed(0)
    lp_param = torch.randn(packed["response_mask"].shape, dtype=torch.float64, requires_grad=True)
    adv = t([1.0, -3.0, 0.5])

    def loss_of(rows):
        lp = torch.nn.functional.logsigmoid(lp_param[rows])
        return grpo.grpo_loss(lp, lp.detach(), adv[rows], packed["response_mask"][rows], num_tokens=5.0)[0]

    with_empty = torch.autograd.grad(loss_of([0, 1, 2]), lp_param)[0]
    without = torch.autograd.grad(loss_of([0, 2]), lp_param)[0]
    assert torch.equal(with_empty, without)
    assert with_empty[1].abs().sum().item() == 0.0


def test_group_gate_refills_sets_flat_groups_aside_and_tops_up():
    from diadem_ray.grpo import GroupGate

    gate = GroupGate(wanted=3, dynamic_sampling=True, max_refill_rounds=2)
    assert gate.more() and gate.need() == 3
    gate.add(["a", "b", "c"], [False, True, True])  # two groups without signal: draw two more
    assert (gate.need(), gate.more(), gate.refills) == (2, True, 0)
    gate.add(["d", "e"], [True, False])
    assert (gate.need(), gate.more(), gate.refills) == (1, True, 1)
    gate.add(["f"], [True])  # the last refill round found nothing: the batch is topped up with flat groups
    assert not gate.more() and gate.refills == 2 and gate.zero_variance == 4
    assert gate.batch() == ["a", "e", "b"]

    done = GroupGate(wanted=2, dynamic_sampling=True, max_refill_rounds=5)
    done.add(["a", "b"], [False, False])
    assert not done.more() and done.refills == 0 and done.batch() == ["a", "b"]

    off = GroupGate(wanted=2, dynamic_sampling=False, max_refill_rounds=5)  # no gate: one round, all kept
    off.add(["a", "b"], [True, True])
    assert not off.more() and off.batch() == ["a", "b"] and off.flat == [] and off.zero_variance == 2
    with pytest.raises(ValueError, match="2 groups but 1 zero-variance flags"):
        off.add(["a", "b"], [True])
