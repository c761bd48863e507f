"""The transformers generate backend of a rollout replica (rollout.backend=hf, the reference engine):
greedy at temperature 0 (as vLLM), n samples otherwise, stop token kept in the ids but not in the
text, and log-probs equal to the replica's own scoring of the same sequence."""

import pytest

from diadem_ray.actors.rollout import RolloutWorker
from diadem_ray.models.tiny_lm import build_tiny_lm
from diadem_ray.types import Prompt


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = RolloutWorker(model_path=str(build_tiny_lm(tmp_path_factory.mktemp("m"), with_tokenizer=True)), backend="hf")
    w.setup()
    return w


def test_greedy_and_sampled(worker):
    prompt = Prompt("p", tuple(worker.tokenizer("The man said:")["input_ids"]))
    greedy = worker.generate([prompt], samples_per_prompt=2, max_new_tokens=12, temperature=0.0)
    assert len(greedy) == 2 and greedy[0].token_ids == greedy[1].token_ids and greedy[0].text == greedy[1].text
    assert "<|im_end|>" not in greedy[0].text
    want = worker.sequence_logprobs([list(prompt.prompt_token_ids)], [list(greedy[0].token_ids)])[0]
    assert greedy[0].logprobs == pytest.approx(want, abs=1e-5)
    sampled = worker.generate([prompt], samples_per_prompt=3, max_new_tokens=12, temperature=1.0, seed=3)
    assert len(sampled) == 3 and all(r.policy_version == 0 and len(r.logprobs) == len(r.token_ids) for r in sampled)


def test_a_placeholder_ends_the_sample_without_it(worker):
    # as on vLLM: a sample that draws a media placeholder stops there and the placeholder is dropped,
    # so the sampling distribution stays the one whose log-probs are reported (never renormalised)
    prompt = Prompt("p", tuple(worker.tokenizer("The man said:")["input_ids"]))
    free = worker.generate([prompt], samples_per_prompt=1, max_new_tokens=12, temperature=0.0)[0]
    assert len(free.token_ids) >= 4 and free.finish_reason == "length"
    cut = free.token_ids.index(free.token_ids[3])  # its first occurrence
    worker.suppressed = [free.token_ids[3]]
    try:
        ended = worker.generate([prompt], samples_per_prompt=1, max_new_tokens=12, temperature=0.0)[0]
    finally:
        worker.suppressed = []
    assert ended.token_ids == free.token_ids[:cut] and ended.finish_reason == "stop"
    assert ended.logprobs == pytest.approx(free.logprobs[:cut], abs=1e-6)
