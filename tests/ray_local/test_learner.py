"""DeepSpeed learner ranks on gloo: split invariance, updates, LoRA, checkpoints, rank death."""

import random

import pytest
import torch

from diadem_ray.models.tiny_lm import build_tiny_lm


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny_lm")))


def batch(n=8, seed=0):
    rng = random.Random(seed)
    prompts = [[rng.randrange(3, 500) for _ in range(rng.randint(3, 7))] for _ in range(n)]
    responses = [[rng.randrange(3, 500) for _ in range(rng.randint(2, 9))] for _ in range(n)]
    advantages = [rng.uniform(-1.5, 1.5) for _ in range(n)]
    return prompts, responses, advantages


def group(model, **kw):
    from diadem_ray.cluster.learner_group import LearnerGroup

    args = dict(num_ranks=2, num_cpus_per_rank=0.5, model_path=model, zero_stage=2, lr=1e-2, micro_batch_size=2,
                collective_timeout_s=60, need_reference=False, grad_clip_norm=0.0)
    args.update(kw)
    return LearnerGroup(**args)


# ZeRO-3 with the default aggregation, ZeRO-2 with the sequence-level one (ZeRO-2 + token_mean, the
# demo's setting, is exercised by every other learner test and the demo itself).
@pytest.mark.parametrize("stage,mode", [(3, "token_mean"), (2, "seq_mean_token_sum_norm")])
def test_gradient_split_invariance(ray_local, tiny_model, stage, mode):
    """SGD(lr=1) makes the update equal the gradient: 1 rank x 1 micro-batch vs 2 ranks x 2. The
    2-rank run passes half the advantages as per-token rows (per-line credit's form) holding the
    same value: the update must not change."""
    p, r, a = batch()
    deltas = []
    for ranks, micro in ((1, 8), (2, 2)):
        if ranks == 2:
            a = [[v] * len(resp) if i % 2 else v for i, (v, resp) in enumerate(zip(a, r))]
        g = group(tiny_model, num_ranks=ranks, micro_batch_size=micro, zero_stage=stage, optimizer="sgd", lr=1.0)
        try:
            if stage == 3 and ranks == 2:  # NCCL path's WeightSource: full shapes from ds_shape, gathers in lockstep
                meta = g.run_all("export_metadata", True, timeout=120)
                assert meta[0] == meta[1] == [(n, "float32", tuple(t.shape)) for b in g.export_weights() for n, t in b]
            before = g.parameter_snapshot()
            g.grpo_step(p, r, a, kl_coef=0.0, loss_aggregation=mode)
            after = g.parameter_snapshot()
        finally:
            g.shutdown()
        deltas.append({k: after[k] - before[k] for k in before})
    for k in deltas[0]:
        assert torch.allclose(deltas[0][k], deltas[1][k], atol=1e-5), k
    assert any(d.abs().max() > 1e-4 for d in deltas[0].values())


def test_grpo_step_changes_every_parameter_and_sft_reduces_loss(ray_local, tiny_model):
    p, r, a = batch()
    g = group(tiny_model, need_reference=True, lr=3e-3)
    try:
        assert [i["backend"] for i in g.info] == ["gloo", "gloo"]
        before = g.parameter_snapshot()
        m = g.grpo_step(p, r, a, kl_coef=0.05, entropy_coef=0.01)
        after = g.parameter_snapshot()
        unchanged = [k for k in before if torch.equal(before[k], after[k])]
        assert unchanged == []
        assert {"learner/kl", "learner/entropy", "learner/grad_norm", "learner/clip_frac"} <= set(m)
        assert m["learner/ratio_mean"] == pytest.approx(1.0)  # old log-probs recomputed before the update
        losses = [g.sft_step(p, r)["learner/sft_loss"] for _ in range(5)]
        assert losses[-1] < losses[0]
    finally:
        g.shutdown()


def test_lora_changes_only_adapters(ray_local, tiny_model, tmp_path):
    p, r, a = batch()
    g = group(tiny_model, lora={"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
              need_reference=True, lr=1e-2)
    try:
        before = g.parameter_snapshot(trainable_only=False)
        g.grpo_step(p, r, a, kl_coef=0.1)
        after = g.parameter_snapshot(trainable_only=False)
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and all("lora_" in k for k in changed)
        assert all(k in changed for k in before if "lora_B" in k)  # B starts at 0; A has no gradient yet
        exported = [(n, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for b in g.export_weights() for n, t in b]
        names = [n for n, _, _ in exported]
        assert not any("lora" in n or "base_layer" in n for n in names)
        assert "model.layers.0.self_attn.q_proj.weight" in names and "lm_head.weight" in names
        # The NCCL path's vLLM WeightSource declares exactly what the object-store export sends
        # (on every rank; iteration checked by vLLM's own _checked_iter).
        assert g.run_all("export_metadata", True, timeout=120) == [exported, exported]
        # The servable export (LoRA merged) is the model the learner scores with.
        from transformers import AutoModelForCausalLM

        from diadem_ray.models.policy import read_policy

        meta = dict(family="tiny_av", policy_version=3, stage="grpo_stage1", learner_step=1, run="t", frontend_version="2",
                    frames_per_clip=8, sample_rate_hz=16000, max_prompt_tokens=64, max_new_tokens=16)
        d, got = read_policy(g.save_policy(str(tmp_path / "policy"), meta))
        assert got.policy_version == 3 and got.stage == "grpo_stage1"
        model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True, dtype=torch.float32).eval()
        want = g.compute_logprobs(p[:2], r[:2])
        for prompt, resp, lp in zip(p[:2], r[:2], want):
            ids = torch.tensor([prompt + resp])
            with torch.no_grad():
                logits = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
            mine = logits.gather(-1, torch.tensor(resp)[:, None])[:, 0]
            assert torch.allclose(mine, torch.tensor(lp), atol=1e-4)
    finally:
        g.shutdown()


def test_checkpoint_resume_is_exact_and_dead_rank_is_named(ray_local, tiny_model, tmp_path):
    from diadem_ray.cluster.learner_group import LearnerDied

    b1, b2 = batch(seed=1), batch(seed=2)
    g = group(tiny_model, zero_stage=2, lr=1e-2)
    try:
        g.grpo_step(*b1)
        g.save_checkpoint(str(tmp_path), {"stage": "grpo_stage1", "policy_version": 1, "reward_hash": "abc"})
        want_metrics = g.grpo_step(*b2)
        want = g.parameter_snapshot()
        import ray

        ray.kill(g.actors[1], no_restart=True)
        with pytest.raises(LearnerDied, match="learner rank 1 died at step 2"):
            g.grpo_step(*b1)
    finally:
        g.shutdown()
    g2 = group(tiny_model, zero_stage=2, lr=1e-2)
    try:
        meta = g2.load_checkpoint(str(tmp_path))
        assert meta["policy_version"] == 1 and meta["learner_step"] == 1
        got_metrics = g2.grpo_step(*b2)
        got = g2.parameter_snapshot()
        assert got_metrics["learner/loss"] == want_metrics["learner/loss"]
        for k in want:
            assert torch.equal(got[k], want[k]), k
    finally:
        g2.shutdown()


@pytest.mark.parametrize("lora,stage", [(False, 3), (True, 2)], ids=["full-zero3", "lora-zero2"])
def test_kl_reference_anchors_at_the_trained_policy_and_survives_resume(ray_local, tiny_model, tmp_path, lora, stage):
    """A run that trains (SFT) before GRPO must measure KL against the policy GRPO starts from, not
    the backbone it loaded: after anchoring, the KL of an unchanged policy is 0; a resumed group
    that restores the saved reference measures what the original measured, one without it does not.
    Full fine-tuning under ZeRO-3 gathers each partitioned parameter into the reference."""
    p, r, a = batch(seed=3)
    kw = dict(need_reference=True, lr=1e-2, zero_stage=stage)
    if lora:
        kw["lora"] = {"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}

    def kl(g):  # the step's KL with lr 0, so the policy does not move
        g.set_lr(0.0)
        out = g.grpo_step(p, r, a, kl_coef=0.1)["learner/kl"]
        g.set_lr(1e-2)
        return out

    ref_file = str(tmp_path / "kl_reference.safetensors")
    g = group(tiny_model, **kw)
    try:
        for _ in range(3):
            g.sft_step(p, r)
        assert kl(g) > 1e-4  # the reference is still the loaded backbone
        g.anchor_reference(ref_file)
        assert kl(g) == pytest.approx(0.0, abs=1e-7)
        for _ in range(2):
            g.sft_step(p, r)
        want = kl(g)
        assert want > 1e-5
        g.save_checkpoint(str(tmp_path / "ckpt"), {"stage": "grpo_stage1"})
    finally:
        g.shutdown()
    g2 = group(tiny_model, **kw)
    try:
        g2.load_checkpoint(str(tmp_path / "ckpt"))
        unanchored = kl(g2)
        g2.load_checkpoint(str(tmp_path / "ckpt"))
        g2.load_reference(ref_file)
        assert kl(g2) == pytest.approx(want, rel=1e-4, abs=1e-9)
        assert unanchored != pytest.approx(want, rel=1e-2)  # without it, the reference is the backbone again
        with pytest.raises(Exception, match="KL reference .*missing"):
            g2.load_reference(str(tmp_path / "nope.safetensors"))
    finally:
        g2.shutdown()
