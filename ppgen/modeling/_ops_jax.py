"""``ppgen.ops`` under NumPyro: the same vocabulary as :mod:`ppgen.modeling._ops_torch`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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


def asarray(x: Any, dtype: Any = None) -> jax.Array:
    """Convert ``x`` to a JAX array (float32 unless ``dtype`` says otherwise).

    The device is JAX's default device, which ppgen sets for the duration of a fit.
    """
    if isinstance(x, jax.Array) and dtype is None:
        return x
    if dtype is None and not isinstance(x, jax.Array):
        kind = np.asarray(x).dtype.kind
        dtype = jnp.float32 if kind in "fb" else (jnp.int32 if kind in "iu" else None)
    return jnp.asarray(x, dtype=dtype)


zeros = jnp.zeros
ones = jnp.ones
eye = jnp.eye
arange = jnp.arange
zeros_like = jnp.zeros_like
ones_like = jnp.ones_like
reshape = jnp.reshape
expand_dims = jnp.expand_dims
matmul = jnp.matmul
where = jnp.where
exp = jnp.exp
log = jnp.log
log1p = jnp.log1p
sqrt = jnp.sqrt
square = jnp.square
tanh = jnp.tanh
sigmoid = jax.nn.sigmoid
softplus = jax.nn.softplus


def concatenate(xs: Any, axis: int = 0) -> jax.Array:
    return jnp.concatenate(list(xs), axis=axis)


def stack(xs: Any, axis: int = 0) -> jax.Array:
    return jnp.stack(list(xs), axis=axis)


def sum(x: Any, axis: Any = None) -> jax.Array:
    return jnp.sum(x, axis=axis)


def mean(x: Any, axis: Any = None) -> jax.Array:
    return jnp.mean(x, axis=axis)


def logsumexp(x: Any, axis: int = -1) -> jax.Array:
    return jax.scipy.special.logsumexp(x, axis=axis)


def clip(x: Any, lo: float | None = None, hi: float | None = None) -> jax.Array:
    return jnp.clip(x, lo, hi)
