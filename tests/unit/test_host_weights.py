"""HostWeights: the push's wire format. Copied, or viewed in place without a copy."""

import numpy as np
import torch

from diadem_ray.actors.host_weights import HostWeights


def _items():
    return [
        ("w", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
        ("b", torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16)),
        ("t", torch.arange(6, dtype=torch.float32).reshape(3, 2).t()),  # not contiguous
    ]


def test_copied_and_viewed_arrays_carry_the_same_tensors():
    items = _items()
    for copy in (True, False):
        got = HostWeights.of(items, copy=copy).tensors()
        assert [n for n, _ in got] == ["w", "b", "t"]
        for (_, want), (_, have) in zip(items, got):
            assert have.dtype == want.dtype and torch.equal(have, want)


def test_a_view_shares_the_tensors_memory_and_a_copy_does_not():
    items = _items()
    viewed, copied = HostWeights.of(items, copy=False), HostWeights.of(items, copy=True)
    w, b, t = (t for _, t in items)
    assert np.shares_memory(viewed.arrays[0], w.numpy()) and not np.shares_memory(copied.arrays[0], w.numpy())
    assert viewed.arrays[1].dtype == np.int16 and np.shares_memory(viewed.arrays[1], b.view(torch.int16).numpy())
    assert not np.shares_memory(viewed.arrays[2], t.numpy())  # a strided tensor is copied either way
    w.add_(1.0)  # what a later optimizer step does to the parameter
    assert float(viewed.tensors()[0][1][0, 0]) == 1.0 and float(copied.tensors()[0][1][0, 0]) == 0.0
