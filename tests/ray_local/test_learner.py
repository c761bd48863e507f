"""DeepSpeed learner ranks on gloo: split invariance, updates, LoRA, checkpoints, rank death."""

import random

import pytest
import torch

from diadem_ray.models.tiny_lm import build_tiny_lm
from diadem_ray.types import GrpoBatch


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

    args = dict(
        num_ranks=2,
        num_cpus_per_rank=0.5,
        model_path=model,
        zero_stage=2,
        lr=1e-2,
        micro_batch_size=2,
        collective_timeout_s=60,
        need_reference=False,
        grad_clip_norm=0.0,
    )
    args.update(kw)
    return LearnerGroup(**args)


def test_gradient_split_invariance(ray_local, tiny_model, tmp_path):
    """SGD(lr=1) makes the update equal the gradient: 1 rank x 1 micro-batch against 2 ranks x 2,
    under ZeRO-3 with the default aggregation and under ZeRO-2 with the sequence-level one (ZeRO-2
    + token_mean, the demo's setting, is exercised by every other learner test and the demo). The
    2-rank runs pass half the advantages as per-token rows (per-line credit's form) holding the same
    value: the update must not change. The 1-rank group takes both reference updates from the same
    weights (its checkpoint restores them in between)."""
    p, r, a = batch()
    rows = [[v] * len(resp) if i % 2 else v for i, (v, resp) in enumerate(zip(a, r))]
    modes = {"token_mean": 3, "seq_mean_token_sum_norm": 2}  # loss aggregation -> ZeRO stage of the 2-rank run

    def delta(g, adv, mode):
        before = g.parameter_snapshot()
        g.grpo_step(GrpoBatch.of(p, r, adv), kl_coef=0.0, loss_aggregation=mode)
        after = g.parameter_snapshot()
        return {k: after[k] - before[k] for k in before}

    want = {}
    g = group(tiny_model, num_ranks=1, micro_batch_size=8, zero_stage=2, optimizer="sgd", lr=1.0)
    try:
        g.save_checkpoint(str(tmp_path), {})
        for mode in modes:
            g.load_checkpoint(str(tmp_path))
            want[mode] = delta(g, a, mode)
    finally:
        g.shutdown()
    assert any(d.abs().max() > 1e-4 for d in want["token_mean"].values())
    assert any(not torch.allclose(want["token_mean"][k], d) for k, d in want["seq_mean_token_sum_norm"].items())
    for mode, stage in modes.items():
        g = group(tiny_model, num_ranks=2, micro_batch_size=2, zero_stage=stage, optimizer="sgd", lr=1.0)
        try:
            if stage == 3:  # NCCL path's WeightSource: full shapes from ds_shape, gathers in lockstep
                meta = g.run_all("export_metadata", True, timeout=120)
                assert meta[0] == meta[1] == [(n, "float32", tuple(t.shape)) for b in g.export_weights() for n, t in b]
            got = delta(g, rows, mode)
        finally:
            g.shutdown()
        for k in want[mode]:
            assert torch.allclose(got[k], want[mode][k], atol=1e-5), (mode, k)


def test_lora_changes_only_adapters(ray_local, tiny_model, tmp_path):
    p, r, a = batch()
    g = group(
        tiny_model,
        lora={"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        need_reference=True,
        lr=1e-2,
    )
    try:
        before = g.parameter_snapshot(trainable_only=False)
        g.grpo_step(GrpoBatch.of(p, r, a), kl_coef=0.1)
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

        meta = dict(
            family="tiny_av",
            policy_version=3,
            stage="grpo_stage1",
            learner_step=1,
            run="t",
            frontend_version="2",
            frames_per_clip=8,
            sample_rate_hz=16000,
            max_prompt_tokens=64,
            max_new_tokens=16,
        )
        d, got = read_policy(g.save_policy(str(tmp_path / "policy"), meta))
        assert got.policy_version == 3 and got.stage == "grpo_stage1"
        model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True, dtype=torch.float32).eval()
        want = g.compute_logprobs(p[:2], r[:2])
        for prompt, resp, lp in zip(p[:2], r[:2], want):
            ids = torch.tensor([prompt + resp])
            with torch.no_grad():
                logits = model(ids).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
            mine = logits.gather(-1, torch.tensor(resp)[:, None])[:, 0]
            assert torch.allclose(mine, torch.tensor(lp), atol=1e-4)
    finally:
        g.shutdown()


@pytest.mark.parametrize("lora,stage", [(False, 3), (True, 2)], ids=["full-zero3", "lora-zero2"])
def test_sft_then_grpo_with_the_kl_reference_resumes_exactly_and_a_dead_rank_is_named(
    ray_local, tiny_model, tmp_path, lora, stage
):
    """A learner's life in a run: SFT lowers the loss; GRPO then measures KL against the policy it
    starts from, not the backbone it loaded (after anchoring, the KL of an unchanged policy is 0),
    and a GRPO step changes every trainable parameter. A group resumed from the checkpoint with the
    saved reference repeats the next step exactly (loss, KL, every parameter); without the reference
    it measures against the backbone again. Full fine-tuning under ZeRO-3 gathers each partitioned
    parameter into the reference. A killed rank is named."""
    import ray

    from diadem_ray.cluster.learner_group import LearnerDied

    p, r, a = batch(seed=3)
    nxt = batch(seed=2)  # the step after the checkpoint
    kw = dict(need_reference=True, lr=1e-2, zero_stage=stage)
    if lora:
        kw["lora"] = {"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}

    def kl(g):  # the step's KL with lr 0, so the policy does not move
        g.set_lr(0.0)
        out = g.grpo_step(GrpoBatch.of(p, r, a), kl_coef=0.1)["learner/kl"]
        g.set_lr(1e-2)
        return out

    ref_file, ckpt = str(tmp_path / "kl_reference.safetensors"), str(tmp_path / "ckpt")
    step = dict(kl_coef=0.1, entropy_coef=0.01)
    g = group(tiny_model, **kw)
    try:
        assert [i["backend"] for i in g.info] == ["gloo", "gloo"]
        losses = [g.sft_step(p, r)["learner/sft_loss"] for _ in range(3)]
        assert kl(g) > 1e-4  # the reference is still the loaded backbone
        g.anchor_reference(ref_file)
        assert kl(g) == pytest.approx(0.0, abs=1e-7)
        losses += [g.sft_step(p, r)["learner/sft_loss"] for _ in range(2)]  # (lr-0 GRPO steps between: no move)
        assert losses[-1] < losses[0], losses
        saved_at = g.step
        g.save_checkpoint(ckpt, {"stage": "grpo_stage1", "policy_version": 1})
        before = g.parameter_snapshot()
        want_metrics = g.grpo_step(GrpoBatch.of(*nxt), **step)
        want = g.parameter_snapshot()
        assert [k for k in before if torch.equal(before[k], want[k])] == []
        assert {"learner/kl", "learner/entropy", "learner/grad_norm", "learner/clip_frac"} <= set(want_metrics)
        assert want_metrics["learner/ratio_mean"] == pytest.approx(1.0)  # old log-probs recomputed before the update
        assert want_metrics["learner/kl"] > 1e-5
        ray.kill(g.actors[1], no_restart=True)
        with pytest.raises(LearnerDied, match=f"learner rank 1 died at step {saved_at + 1}"):
            g.grpo_step(GrpoBatch.of(*nxt))
    finally:
        g.shutdown()
    g2 = group(tiny_model, **kw)
    try:
        meta = g2.load_checkpoint(ckpt)
        assert meta["policy_version"] == 1 and meta["learner_step"] == saved_at
        unanchored = g2.grpo_step(GrpoBatch.of(*nxt), **step)
        g2.load_checkpoint(ckpt)
        g2.load_reference(ref_file)
        got_metrics = g2.grpo_step(GrpoBatch.of(*nxt), **step)
        got = g2.parameter_snapshot()
        assert got_metrics["learner/loss"] == want_metrics["learner/loss"]
        assert got_metrics["learner/kl"] == want_metrics["learner/kl"]
        for k in want:
            assert torch.equal(got[k], want[k]), k
        # without the saved reference, the reference is the backbone again
        assert unanchored["learner/kl"] != pytest.approx(want_metrics["learner/kl"], rel=1e-2)
        with pytest.raises(Exception, match="KL reference .*missing"):
            g2.load_reference(str(tmp_path / "nope.safetensors"))
    finally:
        g2.shutdown()


def test_logits_from_the_first_response_position_change_no_log_prob_and_no_gradient(ray_local, tiny_model):
    """Text-only batches compute logits only from the first position that predicts a response token
    (the prompts here differ in length, so rows start at different places): the log-probs, the loss
    and the gradient norm equal those of logits at every position (``set_response_logits(False)``).
    lr 0 keeps the weights, so both paths score the same model."""
    p, r, a = batch(seed=5)
    assert len({len(x) for x in p}) > 1
    g = group(tiny_model, lr=0.0)
    try:
        short = g.compute_logprobs(p, r)
        s_step = g.grpo_step(GrpoBatch.of(p, r, a), kl_coef=0.0)
        g.run_all("set_response_logits", False)
        full = g.compute_logprobs(p, r)
        f_step = g.grpo_step(GrpoBatch.of(p, r, a), kl_coef=0.0)
        assert max(abs(x - y) for u, v in zip(short, full) for x, y in zip(u, v)) < 1e-6
        assert [len(u) for u in short] == [len(x) for x in r]
        assert s_step["learner/loss"] == pytest.approx(f_step["learner/loss"], abs=1e-6)
        assert s_step["learner/grad_norm"] == pytest.approx(f_step["learner/grad_norm"], rel=1e-5)
    finally:
        g.shutdown()
