"""The GRPO core gives the same loss and gradients on CUDA as on CPU (skipped without CUDA)."""

import torch

from diadem_ray import grpo


def _loss_and_grad(device):
    torch.manual_seed(0)
    logits = torch.randn(8, 16, 50, dtype=torch.float32)
    tokens = torch.randint(0, 50, (8, 16))
    old = torch.randn(8, 16) * 0.1 - 3.0
    ref = torch.randn(8, 16) * 0.1 - 3.0
    mask = (torch.rand(8, 16) > 0.2).float()
    adv, _ = grpo.group_advantages(torch.randn(2, 4))
    x = logits.to(device).requires_grad_(True)
    lp = grpo.token_logprobs(x, tokens.to(device))
    loss, _ = grpo.grpo_loss(
        lp,
        old.to(device),
        adv.flatten().to(device),
        mask.to(device),
        ref_logprobs=ref.to(device),
        entropy=grpo.entropy_from_logits(x),
        kl_coef=0.05,
        entropy_coef=0.01,
        dual_clip_c=3.0,
    )
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach().cpu(), grad.cpu()


def test_grpo_loss_cuda_matches_cpu():
    cpu_loss, cpu_grad = _loss_and_grad("cpu")
    gpu_loss, gpu_grad = _loss_and_grad("cuda")
    assert torch.allclose(cpu_loss, gpu_loss, atol=1e-5)
    assert torch.allclose(cpu_grad, gpu_grad, atol=1e-6)
