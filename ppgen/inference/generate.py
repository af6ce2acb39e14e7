"""Drawing new data from a fitted generative model (``ppgen sample``, sample grids).

A model that can generate declares a ``generate`` extra: a program written with ppgen
primitives, ``generate(n, shapes, **arguments) -> array of n samples``, that declares its networks
under the same names as the model, so the fitted parameters apply. ``arguments`` are the model's
scalar keyword arguments of the fit (``z_dim=8``, ``preset="tutorial"``) and ``shapes`` the
shapes of its array arguments (``{"x": (1437, 64)}``): enough to rebuild the networks without
the data, as a run directory records them.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np

from ppgen.backends.base import Backend, SVIProblem
from ppgen.errors import ModelError
from ppgen.modeling.model import BoundData, Model

__all__ = ["ModelArguments", "generate", "generate_problem", "model_arguments"]


@dataclasses.dataclass(frozen=True)
class ModelArguments:
    """A model's bound arguments without the data: scalars by name, array shapes by name."""

    scalars: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]


def model_arguments(model: Model, data: BoundData) -> ModelArguments:
    """Split bound data into scalar arguments and array shapes, by parameter name."""
    try:
        named = inspect.signature(model.fn).bind_partial(*data.args, **data.kwargs).arguments
    except TypeError:
        named = {**{f"arg{i}": a for i, a in enumerate(data.args)}, **data.kwargs}
    scalars: dict[str, Any] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name, value in named.items():
        if isinstance(value, np.ndarray):
            shapes[name] = tuple(int(s) for s in value.shape)
        elif value is None or isinstance(value, (bool, int, float, str)):
            scalars[name] = value
    return ModelArguments(scalars, shapes)


def _no_guide(*args: Any, **kwargs: Any) -> None:
    """Generating needs no guide."""


def generate_problem(model: Model, arguments: ModelArguments, n: int, device: str) -> SVIProblem:
    """A problem whose program returns ``n`` samples of ``model``'s ``generate`` extra."""
    fn = model.extras.get("generate")
    if fn is None:
        raise ModelError(
            f"Model {model.name!r} has no generate program, so ppgen cannot draw new data from "
            "it; give it one with model.extras['generate'] = fn(n, shapes, **arguments)."
        )

    def program() -> Any:
        return fn(n, arguments.shapes, **arguments.scalars)

    return SVIProblem(
        model=program,
        guide=_no_guide,
        data=BoundData((), {}),
        device=device,
        name=f"{model.name}.generate",
    )


def generate(
    model: Model,
    backend: Backend,
    state: Any,
    arguments: ModelArguments,
    n: int,
    seed: int = 0,
    device: str = "cpu",
) -> np.ndarray:
    """``n`` fresh samples from a fitted model (``state`` from a fit or
    :meth:`~ppgen.backends.base.Backend.load_state`)."""
    problem = generate_problem(model, arguments, n, device)
    return np.asarray(backend.run_program(problem, state, seed))
