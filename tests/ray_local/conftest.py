import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """One private local Ray cluster for the whole ray tier (about 4 s to start)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=300_000_000,
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_train():
    """:func:`tiny_train_overrides`, for tests to call with their LM folder."""
    return tiny_train_overrides


def tiny_train_overrides(lm) -> list:
    """`train` overrides that make a run take seconds: a tiny LM as the tiny_av backbone, the
    transformers engine, one learner rank, two SFT steps and one GRPO step of two clips each."""
    return [
        f"model.path={lm}",
        "model.max_prompt_tokens=256",
        "data.frames_per_clip=16",
        "rollout.backend=hf",
        "rollout.samples_per_prompt=2",
        "rollout.max_new_tokens=8",
        "rollout.cpu_threads=1",
        "learner.num_ranks=1",
        "stages.sft.steps=2",
        "stages.sft.prompts_per_step=2",
        "stages.profile.quantiles=true",
        "stages.profile.samples_per_prompt=2",
        "stages.grpo_stage1.steps=1",
        "stages.grpo_stage1.prompts_per_step=2",
        "stages.eval.max_new_tokens=8",
    ]
