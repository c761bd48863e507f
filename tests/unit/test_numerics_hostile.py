"""GRPO numerics under hostile values: non-finite rewards, a temperature of 0 or below, NaN at
padded positions; and the reward worker's boundary for non-finite rewards."""

import math

import pytest
import torch

from diadem_ray import grpo
from diadem_ray.actors.reward import RewardWorker
from diadem_ray.types import Rollout, Turn


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_is_refused_before_advantages(bad):
    rewards = torch.tensor([[1.0, 0.0, bad, 0.5], [0.0, 1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"reward \[0, 2\]"):
        grpo.group_advantages(rewards, std_normalization="batch")


def test_reward_worker_marks_a_non_finite_reward_failed():
    w = RewardWorker({"name": "t", "components": [{"name": "asr_f1"}]}, reward_timeout_s=5.0)
    r = Rollout("p0", 0, (), (1, 2), (-0.1, -0.2), 'A: "hi there"', "stop", 3)

    class NaNScore:
        reward = float("nan")
        components = {"asr_f1": float("nan")}
        lines = ()

    w.composition.score = lambda *a, **k: NaNScore()
    out = w.score_batch([(r, (Turn("A", "hi there"),))], step=0)[0]
    assert out.reward == 0.0 and out.error.startswith("non_finite") and "reward" in out.error
    assert w.stats()["failures"] == {"non_finite": 1}


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_token_logprobs_refuses_a_temperature_that_is_not_positive(temperature):
    with pytest.raises(ValueError, match="temperature"):
        grpo.token_logprobs(torch.zeros(1, 2, 5), torch.zeros(1, 2, dtype=torch.long), temperature=temperature)


def test_config_refuses_a_zero_temperature():
    from diadem_ray.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="rollout.temperature"):
        load_config("configs/demo_cpu.yaml", ["rollout.temperature=0"])


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_nan_at_padded_positions_reaches_neither_loss_nor_gradient(mode):
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    lp = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, float("inf"), float("nan")]], requires_grad=True)
    old = torch.tensor([[-1.1, -2.0, float("nan")], [-0.4, 0.0, float("nan")]])
    ref = torch.tensor([[-1.0, -2.5, float("nan")], [-0.5, float("nan"), 0.0]])
    adv = torch.tensor([0.5, -1.0])
    loss, metrics = grpo.grpo_loss(
        lp, old, adv, mask, ref_logprobs=ref, kl_coef=0.1, loss_aggregation=mode, max_response_len=3
    )
    assert math.isfinite(float(loss.detach())) and all(math.isfinite(v) for v in metrics.values()), metrics
    loss.backward()
    assert torch.isfinite(lp.grad).all() and (lp.grad[mask == 0] == 0).all()
    clean = torch.where(mask > 0, lp.detach(), torch.zeros(()))
    want, _ = grpo.grpo_loss(
        clean,
        torch.where(mask > 0, old, torch.zeros(())),
        adv,
        mask,
        ref_logprobs=torch.where(mask > 0, ref, torch.zeros(())),
        kl_coef=0.1,
        loss_aggregation=mode,
        max_response_len=3,
    )
    assert float(loss.detach()) == pytest.approx(float(want))


def test_aggregate_selects_masked_positions_away():
    per_token = torch.tensor([[1.0, float("nan")], [2.0, float("inf")]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(grpo.aggregate(per_token, mask)) == pytest.approx(1.5)
