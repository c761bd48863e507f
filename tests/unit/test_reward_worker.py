import pytest

from diadem_ray.actors.reward import RewardWorker
from diadem_ray.config import ConfigError
from diadem_ray.types import Rollout, Turn

SPEC = {"name": "t", "components": [{"name": "asr_f1", "weight": 1.0}]}


def rollout(text, i=0):
    return Rollout(f"p{i}", 0, (), (1, 2, 3), (-1.0, -1.0, -1.0), text, "stop", 0)


def test_failures_become_zero_reward_with_reason_never_dropped():
    w = RewardWorker({"name": "t", "components": [{"name": "tcpwer"}]})
    ref = (Turn("A", "hello"),)  # no times: tcpwer raises in pure code
    out = w.score_batch([(rollout('A: "hello"'), ref), (rollout("x", 1), ref)], step=0)
    assert len(out) == 2 and all(o.reward == 0.0 for o in out)
    assert out[0].error.startswith("ValueError: tcpwer needs reference turns")
    assert w.stats()["failures"] == {"ValueError": 2}


def test_per_caption_timeout():
    w = RewardWorker(SPEC, reward_timeout_s=0.05)
    ref = tuple(Turn("A", f"word{i} other{i} thing") for i in range(400))
    cap = "\n".join(f'A: "word{i} other{i}"' for i in range(400))
    fast = (rollout('A: "word0 other0 thing"', 1), ref[:1])
    out = w.score_batch([(rollout(cap), ref), fast], step=0)
    assert out[0].reward == 0.0 and out[0].error.startswith("timeout")
    assert out[1].error is None and out[1].reward == pytest.approx(1.0)


def test_timeout_that_python_swallows_still_fails_the_caption():
    """An interrupt landing in a GC/weakref callback is swallowed by Python (seen in CI): the timer
    keeps firing, and a caption that finishes after its deadline is still a timeout."""
    import time

    from diadem_ray.actors.reward import CaptionTimeout

    w = RewardWorker(SPEC, reward_timeout_s=0.05)
    real = w.composition.score
    swallowed = []

    def stubborn(*args, **kwargs):
        end = time.perf_counter() + 0.4
        while True:
            # Every call in the spin loop is inside the try, so a tick cannot escape from it (a
            # clock check outside the try would let a tick that lands there escape as an ordinary
            # timeout); only the handler runs outside, for microseconds.
            try:
                while time.perf_counter() < end:
                    sum(range(1000))
                break
            except CaptionTimeout:  # what a weakref callback does with an exception
                swallowed.append(time.perf_counter())
        return real(*args, **kwargs)

    w.composition.score = stubborn
    (out,) = w.score_batch([(rollout('A: "hello"'), (Turn("A", "hello"),))], step=0)
    assert out.reward == 0.0 and out.error.startswith("timeout") and "swallowed" in out.error
    assert len(swallowed) >= 3  # the timer repeats after the first interrupt
    w.composition.score = real
    time.sleep(0.15)  # the timer is disarmed: nothing fires after the block
    (ok,) = w.score_batch([(rollout('A: "hello"'), (Turn("A", "hello"),))], step=0)
    assert ok.error is None and ok.reward == pytest.approx(1.0)


def test_bad_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown component"):
        RewardWorker({"name": "t", "components": [{"name": "asr"}]})
    with pytest.raises(ConfigError, match="unknown key"):
        RewardWorker({"name": "t", "componentz": []})
