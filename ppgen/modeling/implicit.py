"""Implicit observations: data produced by a generator from noise, with no usable likelihood.

An implicit model (a GAN's generator) declares its observed site with :func:`implicit` instead
of :func:`ppgen.sample`: it hands over the generated batch and the real batch it stands for.
Methods that can train such models (``method="gan"``) run the model inside
:func:`capture_implicit` to read both; every other method gets a clear error, because there is
no log-density to put in an ELBO or a Hamiltonian.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from ppgen.errors import ModelError
from ppgen.modeling.context import current

__all__ = ["capture_implicit", "implicit"]

_CAPTURE: contextvars.ContextVar[dict[str, tuple[Any, Any]] | None] = contextvars.ContextVar(
    "ppgen_implicit", default=None
)


def implicit(name: str, generated: Any, obs: Any = None) -> Any:
    """Declare the observed site ``name`` as the output of a generator.

    Parameters
    ----------
    name
        Site name (``"x"``).
    generated
        The generated batch, shape ``(batch, *features)``.
    obs
        The real batch it is compared with (same shape), or ``None`` when only generating.

    Returns
    -------
    The generated batch, unchanged.

    Raises
    ------
    ppgen.errors.ModelError
        Outside a method that trains implicit models (``method="gan"``).

    Examples
    --------
    >>> import ppgen
    >>> from ppgen import dist
    >>> @ppgen.model
    ... def gen(x):
    ...     g = ppgen.module("generator", ppgen.nn.mlp([1, 16, 1]))
    ...     with ppgen.plate("data", x.shape[0], subsample_size=64) as idx:
    ...         z = ppgen.sample("z", dist.Normal(0.0, 1.0))
    ...         ppgen.implicit("x", g(z[..., None]), obs=x[idx])
    """
    current()
    captured = _CAPTURE.get()
    if captured is None:
        raise ModelError(
            f"Site {name!r} is implicit (a generator's output with no likelihood), so the model "
            "has no log-density to fit; use method='gan'."
        )
    if name in captured:
        raise ModelError(f"Implicit site {name!r} is declared twice; give each site its own name.")
    captured[name] = (generated, obs)
    return generated


@contextlib.contextmanager
def capture_implicit() -> Iterator[dict[str, tuple[Any, Any]]]:
    """Collect ``{name: (generated, obs)}`` of the :func:`implicit` sites run inside."""
    captured: dict[str, tuple[Any, Any]] = {}
    token = _CAPTURE.set(captured)
    try:
        yield captured
    finally:
        _CAPTURE.reset(token)
