"""Backend-neutral modeling primitives.

Each primitive forwards to ``pyro`` or ``numpyro`` through ``pyro-api``'s dispatch, converting
plain Python and numpy values to the backend's arrays on the active device on the way.
"""

from __future__ import annotations

from typing import Any

from pyroapi import distributions as dist
from pyroapi import ops
from pyroapi import pyro as _pyro

from ppgen.errors import ModelError
from ppgen.modeling.context import current
from ppgen.modeling.nn import Network

__all__ = ["deterministic", "dist", "factor", "module", "ops", "param", "plate", "sample"]


def sample(name: str, fn: Any, obs: Any = None, *, infer: dict[str, Any] | None = None) -> Any:
    """Draw (or, with ``obs``, observe) the random variable ``name`` from distribution ``fn``."""
    current()
    kwargs: dict[str, Any] = {"obs": obs}
    if infer is not None:
        kwargs["infer"] = infer
    return _pyro.sample(name, fn, **kwargs)


def param(
    name: str, init: Any = None, *, constraint: Any = None, event_dim: int | None = None
) -> Any:
    """Declare a learnable parameter with initial value ``init`` (a number or an array)."""
    ctx = current()
    kwargs: dict[str, Any] = {}
    if constraint is not None:
        kwargs["constraint"] = constraint
    if event_dim is not None:
        kwargs["event_dim"] = event_dim
    if init is not None and not callable(init):
        if ctx.backend == "pyro":
            # Pyro reads the initial value only when the parameter is new: converting it lazily
            # saves a tensor construction per parameter at every eager step.
            value = init

            def init() -> Any:
                return ops.asarray(value)
        else:
            init = ops.asarray(init)
    return _pyro.param(name, init, **kwargs)


def plate(name: str, size: int, subsample_size: int | None = None, dim: int | None = None) -> Any:
    """Conditional-independence context: ``size`` independent copies (optionally subsampled)."""
    current()
    return _pyro.plate(name, int(size), subsample_size=subsample_size, dim=dim)


def deterministic(name: str, value: Any) -> Any:
    """Record ``value`` as a deterministic site so that it appears in posterior draws."""
    current()
    return _pyro.deterministic(name, value)


def factor(name: str, log_factor: Any) -> Any:
    """Add ``log_factor`` to the model's log joint density."""
    current()
    return _pyro.factor(name, log_factor)


def module(name: str, net: Any) -> Any:
    """Register a network's weights as learnable parameters and return a callable network.

    ``net`` is a :mod:`ppgen.nn` description (runs on both backends), or a native
    ``torch.nn.Module`` under Pyro / Flax module under NumPyro.
    """
    ctx = current()
    if ctx.backend == "pyro":
        import pyro
        import torch

        if isinstance(net, Network):
            built = ctx.modules.get(name)
            if built is None:
                built = net.build_torch().to(torch.device(ctx.device))
                ctx.modules[name] = built
        elif isinstance(net, torch.nn.Module):
            built = net
        else:
            raise ModelError(
                f"ppgen.module({name!r}) under Pyro needs a ppgen.nn network or a torch.nn.Module, "
                f"got {type(net).__name__}."
            )
        return pyro.module(name, built, update_module_params=True)

    from numpyro.contrib.module import flax_module

    if isinstance(net, Network):
        return flax_module(name, net.build_flax(), input_shape=(1, net.in_features))
    if hasattr(net, "init") and hasattr(net, "apply"):
        raise ModelError(
            f"ppgen.module({name!r}) got a native Flax module; call "
            "numpyro.contrib.module.flax_module yourself (it needs the input shape) or describe "
            "the network with ppgen.nn."
        )
    raise ModelError(
        f"ppgen.module({name!r}) under NumPyro needs a ppgen.nn network, got {type(net).__name__}."
    )
