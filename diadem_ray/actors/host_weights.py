"""Exported weights as host arrays: the object-store wire format of a weight push.

Ray stores numpy arrays as out-of-band buffers: putting one is one copy into the object store and
getting one on the same node maps it without a copy, where a torch tensor is pickled (copied) on
both sides. So the learner writes each weight once into a numpy array, and a replica reads the
arrays in place as tensors and copies them once into its engine. Dtypes numpy lacks (bfloat16)
travel as same-width integers and are viewed back.

Example:
    >>> import torch
    >>> w = HostWeights.of([("a", torch.ones(2, 3)), ("b", torch.zeros(4, dtype=torch.bfloat16))])
    >>> [(n, t.dtype, tuple(t.shape)) for n, t in w.tensors()], w.nbytes
    ([('a', torch.float32, (2, 3)), ('b', torch.bfloat16, (4,))], 32)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, List, Tuple

import numpy as np
import torch

_CARRIER = {torch.bfloat16: torch.int16, torch.float8_e4m3fn: torch.uint8, torch.float8_e5m2: torch.uint8}


@dataclass(frozen=True)
class HostWeights:
    """``names[i]`` has dtype ``dtypes[i]`` (torch dtype name) and values ``arrays[i]``."""

    names: Tuple[str, ...]
    dtypes: Tuple[str, ...]
    arrays: Tuple[np.ndarray, ...]

    @staticmethod
    def of(items: Iterable[Tuple[str, torch.Tensor]], copy: bool = True) -> "HostWeights":
        """Each tensor as a host array. ``copy``: written into a new array (needed when the tensor
        changes or is freed before Ray stores the arrays: a ZeRO-3 gather, merged LoRA deltas);
        without it a contiguous CPU tensor is viewed in place, so the only copy is Ray's, into the
        object store, when the learner returns the arrays."""
        names, dtypes, arrays = [], [], []
        for name, t in items:
            t = t.detach()
            carrier = _CARRIER.get(t.dtype, t.dtype)
            src = t.view(carrier) if carrier is not t.dtype else t
            if copy or t.device.type != "cpu" or not t.is_contiguous():
                arr = np.empty(tuple(t.shape), dtype=torch.empty(0, dtype=carrier).numpy().dtype)
                torch.from_numpy(arr).copy_(src)
            else:
                arr = src.numpy()
            names.append(name)
            dtypes.append(str(t.dtype).removeprefix("torch."))
            arrays.append(arr)
        return HostWeights(tuple(names), tuple(dtypes), tuple(arrays))

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays))

    def tensors(self) -> List[Tuple[str, torch.Tensor]]:
        """(name, tensor) views of the arrays, no copy (read-only when the arrays came from Ray's
        object store: the engine copies them into its own weights)."""
        out = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for name, dtype, arr in zip(self.names, self.dtypes, self.arrays):
                t = torch.from_numpy(arr)
                want = getattr(torch, dtype)
                out.append((name, t.view(want) if t.dtype != want else t))
        return out
