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
