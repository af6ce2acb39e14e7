"""``ppgen.ops`` under Pyro: a small array vocabulary shared with :mod:`ppgen.modeling._ops_jax`.

Both files define the same names with the same meaning, so a model written with ``ppgen.ops``
runs on either backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ppgen.modeling.context import current

__all__ = [
    "arange",
    "asarray",
    "clip",
    "concatenate",
    "exp",
    "expand_dims",
    "eye",
    "log",
    "log1p",
    "logsumexp",
    "matmul",
    "mean",
    "ones",
    "ones_like",
    "reshape",
    "sigmoid",
    "softplus",
    "sqrt",
    "square",
    "stack",
    "sum",
    "tanh",
    "where",
    "zeros",
    "zeros_like",
]


def _device() -> torch.device:
    return torch.device(current().device)


def asarray(x: Any, dtype: Any = None) -> torch.Tensor:
    """Convert ``x`` to a tensor on the active device (float32 unless ``dtype`` says otherwise)."""
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    arr = np.asarray(x)
    if dtype is None and arr.dtype.kind == "f":
        dtype = torch.float32
    elif dtype is None and arr.dtype.kind in "iub":
        dtype = torch.float32 if arr.dtype.kind == "b" else torch.int64
    return torch.as_tensor(arr, dtype=dtype, device=_device())


def zeros(shape: Any) -> torch.Tensor:
    return torch.zeros(shape, device=_device())


def ones(shape: Any) -> torch.Tensor:
    return torch.ones(shape, device=_device())


def eye(n: int) -> torch.Tensor:
    return torch.eye(n, device=_device())


def arange(n: int) -> torch.Tensor:
    return torch.arange(n, device=_device())


def zeros_like(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def ones_like(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def concatenate(xs: Any, axis: int = 0) -> torch.Tensor:
    return torch.cat(list(xs), dim=axis)


def stack(xs: Any, axis: int = 0) -> torch.Tensor:
    return torch.stack(list(xs), dim=axis)


def reshape(x: torch.Tensor, shape: Any) -> torch.Tensor:
    return x.reshape(shape)


def expand_dims(x: torch.Tensor, axis: int) -> torch.Tensor:
    return x.unsqueeze(axis)


def sum(x: torch.Tensor, axis: Any = None) -> torch.Tensor:
    return x.sum() if axis is None else x.sum(axis)


def mean(x: torch.Tensor, axis: Any = None) -> torch.Tensor:
    return x.mean() if axis is None else x.mean(axis)


def logsumexp(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    return torch.logsumexp(x, dim=axis)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b


def where(cond: Any, a: Any, b: Any) -> torch.Tensor:
    return torch.where(cond, a, b)


def clip(x: torch.Tensor, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    return torch.clamp(x, lo, hi)


def exp(x: Any) -> torch.Tensor:
    return torch.exp(asarray(x))


def log(x: Any) -> torch.Tensor:
    return torch.log(asarray(x))


def log1p(x: Any) -> torch.Tensor:
    return torch.log1p(asarray(x))


def sqrt(x: Any) -> torch.Tensor:
    return torch.sqrt(asarray(x))


def square(x: Any) -> torch.Tensor:
    return torch.square(asarray(x))


def tanh(x: Any) -> torch.Tensor:
    return torch.tanh(asarray(x))


def sigmoid(x: Any) -> torch.Tensor:
    return torch.sigmoid(asarray(x))


def softplus(x: Any) -> torch.Tensor:
    return torch.nn.functional.softplus(asarray(x))
