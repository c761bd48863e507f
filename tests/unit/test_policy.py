"""Exported policies: written atomically, loadable by transformers as the same model, and every
wrong path refused with what to pass instead."""

import json

import pytest
import torch

from diadem_ray.models.policy import META_FILE, PolicyError, PolicyMeta, read_policy, write_policy

META = PolicyMeta(
    family="tiny_av",
    policy_version=2,
    stage="sft",
    learner_step=14,
    run="r",
    frontend_version="2",
    frames_per_clip=8,
    sample_rate_hz=16000,
    max_prompt_tokens=64,
    max_new_tokens=16,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from diadem_ray.models.tiny_lm import build_tiny_lm

    src = build_tiny_lm(tmp_path_factory.mktemp("src"), with_tokenizer=True)
    return src, AutoModelForCausalLM.from_pretrained(str(src), local_files_only=True).eval()


def test_export_round_trips_through_transformers(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    src, model = tiny
    tensors = list(model.state_dict().items()) + [("lm_head.weight", model.get_input_embeddings().weight.detach())]
    run = tmp_path / "run"
    write_policy(run / "policy", tensors, source_model_path=src, meta=META)
    d, meta = read_policy(run)  # a run directory resolves to its policy/
    assert d == run / "policy" and meta == META and (d / "tokenizer.json").is_file()
    back = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True).eval()
    ids = torch.tensor([[5, 9, 17, 33, 2]])
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)
    # exporting again replaces the folder whole, leaving no temporary folders behind
    write_policy(
        run / "policy", tensors, source_model_path=src, meta=PolicyMeta(**{**META.__dict__, "policy_version": 3})
    )
    assert read_policy(run)[1].policy_version == 3
    assert sorted(p.name for p in run.iterdir()) == ["policy"]


def test_wrong_paths_name_the_fix(tiny, tmp_path):
    with pytest.raises(PolicyError, match="no such file"):
        read_policy(tmp_path / "nope")
    ckpt = tmp_path / "run" / "checkpoints"
    (ckpt / "step_3").mkdir(parents=True)
    (ckpt / "latest").write_text("step_3")
    for p in (ckpt, ckpt / "step_3"):
        with pytest.raises(PolicyError, match="DeepSpeed training checkpoint"):
            read_policy(p)
    with pytest.raises(PolicyError, match="holds no diadem_policy.json"):
        read_policy(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / META_FILE).write_text(json.dumps({"family": "tiny_av"}))
    with pytest.raises(PolicyError, match="missing policy_version"):
        read_policy(bad)
    (bad / META_FILE).write_text(json.dumps({**META.__dict__, "family": "gpt"}))
    with pytest.raises(PolicyError, match="'gpt' has no captioning pipeline"):
        read_policy(bad)
    (bad / META_FILE).write_text(json.dumps(META.__dict__))
    with pytest.raises(PolicyError, match="model.safetensors or config.json is missing"):
        read_policy(bad)
