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


def test_bad_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown component"):
        RewardWorker({"name": "t", "components": [{"name": "asr"}]})
    with pytest.raises(ConfigError, match="unknown key"):
        RewardWorker({"name": "t", "componentz": []})
