"""Learner pieces that need no process group."""

import pytest

from diadem_ray.actors.learner import _lr_lambda


def test_lr_schedules():
    const = _lr_lambda("constant", 0, 100)
    assert [const(s) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    warm = _lr_lambda("linear", 10, 110)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(10) == pytest.approx(1.0) and warm(60) == pytest.approx(0.5) and warm(110) == pytest.approx(0.0)
    cos = _lr_lambda("cosine", 0, 100)
    assert cos(0) == pytest.approx(1.0) and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        _lr_lambda("step", 0, 10)(5)
