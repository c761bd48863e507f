"""vLLM rollout replicas and weight sync from DeepSpeed learners (tiny model, CPU)."""

import os
import threading
import time

import pytest

from diadem_ray.cluster.worker_env import MMAP_THRESHOLD_BYTES, MMAP_THRESHOLD_VAR
from diadem_ray.models.tiny_lm import build_tiny_lm
from diadem_ray.types import GrpoBatch, Prompt

PROMPTS = [Prompt(f"p{i}", (5 + i, 17, 42, 99, 3 + 7 * i)) for i in range(4)]


@pytest.fixture(scope="module")
def stack(ray_local, tmp_path_factory):
    from diadem_ray.cluster.learner_group import LearnerGroup
    from diadem_ray.cluster.rollout_group import RolloutGroup

    model = str(build_tiny_lm(tmp_path_factory.mktemp("tiny_lm_rollout"), seed=3))
    learners = LearnerGroup(
        num_ranks=2,
        num_cpus_per_rank=0.5,
        model_path=model,
        zero_stage=3,
        lr=2e-2,
        micro_batch_size=4,
        need_reference=False,
        collective_timeout_s=60,
    )
    rollouts = RolloutGroup(
        num_replicas=1, num_cpus_per_replica=0.5, model_path=model, max_model_len=256, max_num_seqs=16
    )
    yield learners, rollouts
    rollouts.shutdown()
    learners.shutdown()


def _replica_attr(rollouts, name, value=None):
    """Read (or, given ``value``, set) an attribute of replica 0."""
    import ray

    if value is None:
        return ray.get(rollouts.replicas[0].__ray_call__.remote(lambda self: getattr(self, name)))
    return ray.get(rollouts.replicas[0].__ray_call__.remote(lambda self: setattr(self, name, value)))


def _max_abs_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def test_rollouts_then_sync_match_learner_logprobs(stack):
    from diadem_ray.cluster.weight_sync import WeightSync

    learners, rollouts = stack
    # CPU workers start keeping freed blocks for reuse (cluster.reuse_freed_memory, on by default)
    for actor in (rollouts.replicas[0], *learners.actors):
        threshold = __import__("ray").get(actor.__ray_call__.remote(lambda self: os.environ.get(MMAP_THRESHOLD_VAR)))
        assert threshold == str(MMAP_THRESHOLD_BYTES)
    out, metrics = rollouts.generate(PROMPTS, samples_per_prompt=4, max_new_tokens=12, seed=1)
    assert len(out) == 16 and [r.prompt_id for r in out[:4]] == ["p0"] * 4
    assert all(r.policy_version == 0 and len(r.logprobs) == len(r.token_ids) for r in out)
    assert metrics["rollout/tokens_per_s"] > 0
    p = [list(r.prompt_token_ids) for r in out]
    resp = [list(r.token_ids) for r in out]
    # The sampling log-probs of the engine equal the learner's for the same weights.
    assert _max_abs_diff(learners.compute_logprobs(p, resp), [list(r.logprobs) for r in out]) < 1e-4
    adv = [1.0, -1.0, 0.5, -0.5] * 4
    step = learners.grpo_step(GrpoBatch.of(p, resp, adv, rollout_logprobs=[list(r.logprobs) for r in out]))
    assert step["learner/rollout_logprob_abs_diff"] < 1e-4
    sync = WeightSync(learners, rollouts, timeout_s=120).push()  # host arrays, read in place
    # loaded into kept plain weights and repacked, not by vLLM's reload (actors/vllm_cpu_load.py)
    assert _replica_attr(rollouts, "load_path") == "staged"

    # the LM head is repacked; the input embedding's packed copy is dropped (it is only looked up)
    def gemm_forms(worker):  # inside the engine (nested: pickled by value); vLLM's packed kernels are lambdas
        kinds = ("VocabParallelEmbedding", "ParallelLMHead")
        model = worker.model_runner.model
        return {type(m).__name__: m.cpu_linear.__name__ for m in model.modules() if type(m).__name__ in kinds}

    forms = __import__("ray").get(
        rollouts.replicas[0].__ray_call__.remote(lambda self: self.llm.collective_rpc(gemm_forms))
    )
    assert forms[0] == {"VocabParallelEmbedding": "_plain_linear", "ParallelLMHead": "<lambda>"}
    assert sync["sync/policy_version"] == 1 and sync["sync/buckets"] == 1 and sync["sync/bytes"] > 0
    after_learner = learners.compute_logprobs(p, resp)
    after_engine = __import__("ray").get(rollouts.replicas[0].sequence_logprobs.remote(p, resp))
    assert _max_abs_diff(after_learner, after_engine) < 1e-4
    assert _max_abs_diff(after_learner, [list(r.logprobs) for r in out]) > 1e-3  # the weights did change
    # the earlier wire (pickled torch buckets: the benchmark's baseline) loads the same weights
    old = WeightSync(learners, rollouts, wire="torch_buckets", bucket_bytes=64 << 10, timeout_s=120).push()
    assert old["sync/policy_version"] == 2 and old["sync/buckets"] > 1 and old["sync/bytes"] == sync["sync/bytes"]
    again = __import__("ray").get(rollouts.replicas[0].sequence_logprobs.remote(p, resp))
    assert _max_abs_diff(after_learner, again) < 1e-4
    again, _ = rollouts.generate(PROMPTS[:1], samples_per_prompt=2, max_new_tokens=4)
    assert {r.policy_version for r in again} == {2}


def test_tempered_rollout_logprobs_match_the_learner_at_that_temperature(stack):
    # The engine reports log-probs of the distribution it sampled from (logits / T); the learner
    # must score the same, or the ratio and the KL are biased (trl#4159).
    learners, rollouts = stack
    out, _ = rollouts.generate(PROMPTS, samples_per_prompt=2, max_new_tokens=10, temperature=0.6, seed=5)
    p = [list(r.prompt_token_ids) for r in out]
    resp = [list(r.token_ids) for r in out]
    engine = [list(r.logprobs) for r in out]
    assert _max_abs_diff(learners.compute_logprobs(p, resp, temperature=0.6), engine) < 1e-4
    assert _max_abs_diff(learners.compute_logprobs(p, resp), engine) > 1e-2  # temperature 1 is another distribution
    # plus two rollouts that ended before their first token (empty rows, as a dropped placeholder leaves)
    batch = GrpoBatch.of(p + p[:2], resp + [[], []], [0.0] * len(out) + [1.0, -1.0], rollout_logprobs=engine + [[], []])
    step = learners.grpo_step(batch, temperature=0.6)
    assert step["learner/rollout_logprob_abs_diff"] < 1e-4 and step["learner/tokens"] == sum(map(len, resp))
    with pytest.raises(Exception, match="temperature must be > 0"):
        learners.compute_logprobs(p[:2], resp[:2], temperature=0.0)


def test_a_seed_fixes_the_samples_of_a_call(stack):
    # On CPU the in-process engine's sampler is reseeded per call: the same seed draws the same
    # samples whatever ran before (a resumed run repeats the uninterrupted one), another seed others.
    _, rollouts = stack

    def draw(seed):
        out, _ = rollouts.generate(PROMPTS, samples_per_prompt=2, max_new_tokens=8, seed=seed)
        return [list(r.token_ids) for r in out]

    first = draw(9)
    other = draw(10)
    assert draw(9) == first and other != first


def test_version_mismatch_and_sync_timeout_fail_loudly(stack):
    import ray

    from diadem_ray.actors.rollout import VersionMismatch
    from diadem_ray.cluster.weight_sync import WeightSync, WeightSyncTimeout

    learners, rollouts = stack
    replica = rollouts.replicas[0]
    held = ray.get(replica.get_version.remote())
    with pytest.raises(
        VersionMismatch, match=f"rollout replica 0 holds policy_version {held}, the batch expects {held + 5}"
    ):
        ray.get(replica.generate.remote(PROMPTS[:1], samples_per_prompt=1, max_new_tokens=2, expected_version=held + 5))
    with pytest.raises(VersionMismatch, match=f"refusing policy_version {held}"):
        ray.get(replica.update_weights.remote(held))
    with pytest.raises(
        WeightSyncTimeout, match=rf"replica\(s\) \[0\] did not load policy_version {held + 1} within 1e-06 s"
    ):
        WeightSync(learners, rollouts, timeout_s=1e-6).push()


def test_a_push_missing_weights_fails_naming_them_and_a_whole_push_then_loads(stack):
    import ray

    learners, rollouts = stack
    replica = rollouts.replicas[0]
    p, resp = [list(PROMPTS[0].prompt_token_ids)], [[7, 8, 9]]
    before = ray.get(replica.sequence_logprobs.remote(p, resp))  # the learner's current weights
    held = ray.get(replica.get_version.remote())
    full = learners.export_weights()
    partial = [[(n, t * 2) for n, t in bucket if n != "model.norm.weight"] for bucket in full]
    missing = r"weight push misses 1 engine weights, e\.g\. \['model\.norm\.weight'\]"
    with pytest.raises(Exception, match=missing):
        ray.get(replica.update_weights.remote(held + 1, *partial))
    assert ray.get(replica.get_version.remote()) == held  # the version does not move
    ray.get(replica.update_weights.remote(held + 1, *full))  # a whole push repacks every layer from it
    assert _max_abs_diff(ray.get(replica.sequence_logprobs.remote(p, resp)), before) < 1e-6
    rollouts.loaded(held + 1)


def test_vllms_own_reload_loads_the_same_weights_and_the_engine_stays_on_it(stack):
    # rollout.cpu_staged_load=false (the baseline of bench/vllm_reload.py); runs last on this stack
    from diadem_ray.cluster.weight_sync import WeightSync

    learners, rollouts = stack
    out, _ = rollouts.generate(PROMPTS, samples_per_prompt=2, max_new_tokens=8, seed=3)
    p, resp = [list(r.prompt_token_ids) for r in out], [list(r.token_ids) for r in out]
    learners.grpo_step(GrpoBatch.of(p, resp, [1.0, -1.0] * 4))  # weights the engine does not hold yet
    _replica_attr(rollouts, "cpu_staged_load", False)
    WeightSync(learners, rollouts, timeout_s=120).push()
    assert _replica_attr(rollouts, "load_path") == "reload"
    engine = __import__("ray").get(rollouts.replicas[0].sequence_logprobs.remote(p, resp))
    assert _max_abs_diff(learners.compute_logprobs(p, resp), engine) < 1e-4
    _replica_attr(rollouts, "cpu_staged_load", True)
    WeightSync(learners, rollouts, timeout_s=120).push()
    assert _replica_attr(rollouts, "load_path") == "reload"


def test_dead_replica_loses_and_duplicates_no_prompt(ray_local, tmp_path):
    import ray

    from diadem_ray.cluster.rollout_group import RolloutGroup

    model = str(build_tiny_lm(tmp_path / "m", seed=4))
    # The group's bookkeeping is what is under test, not the engine: the transformers engine starts
    # (and restarts after the kill) in a second where vLLM takes ~15 s per replica.
    group = RolloutGroup(num_replicas=2, num_cpus_per_replica=0.25, model_path=model, backend="hf", chunk_size=2)
    try:
        prompts = [Prompt(f"q{i}", (3 + i, 11, 12)) for i in range(24)]
        killer = threading.Timer(0.5, lambda: ray.kill(group.replicas[1], no_restart=False))
        killer.start()
        out, metrics = group.generate(prompts, samples_per_prompt=2, max_new_tokens=48)
        killer.join()
        ids = [(r.prompt_id, r.sample_index) for r in out]
        assert ids == [(f"q{i}", s) for i in range(24) for s in range(2)]
        assert metrics["rollout/requeued_prompts"] >= 1

        # A replica that dies between calls (an out-of-memory kill during a learner step) comes back
        # without its engine: a weight push sets it up first, and a batch that reaches it before any
        # push is answered by the others while it is set up and given the last weights.
        import torch
        from transformers import AutoModelForCausalLM

        sd = AutoModelForCausalLM.from_pretrained(model).state_dict()
        buckets = [[(k, torch.full_like(v, 0.01) if k.endswith("norm.weight") else v) for k, v in sd.items()]]
        ref = ray.put(buckets)
        ray.get([r.load_weight_buckets.remote(1, ref) for r in group.replicas])
        group.loaded(1, ref)
        ray.kill(group.replicas[0], no_restart=False)
        out, metrics = group.generate(prompts[:8], samples_per_prompt=1, max_new_tokens=4)
        assert [r.prompt_id for r in out] == [f"q{i}" for i in range(8)] and {r.policy_version for r in out} == {1}
        assert ray.get(group.replicas[0].get_version.remote()) == 1  # restored with the last weights
        ray.kill(group.replicas[1], no_restart=False)
        for _ in range(200):  # ray.kill is asynchronous: wait until the old process is gone
            try:
                ray.get(group.replicas[1].ping.remote())
                time.sleep(0.05)
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
                break
        else:
            raise AssertionError("replica 1 did not go down after ray.kill")
        # as WeightSync.push calls it: waits for the restart, then the fresh process sets its engine up
        done = ray.get(group.replicas[1].load_weight_buckets.options(max_task_retries=-1).remote(2, group.last_buckets))
        assert done["version"] == 2.0 and ray.get(group.replicas[1].get_version.remote()) == 2
    finally:
        group.shutdown()
