"""The user-facing functions: glue between the registry, the data, the backends and the methods.

No numerics live here: this module validates and resolves what the user asked for (so that bad
input fails before any long work starts) and hands a :class:`~ppgen.inference.base.FitRequest`
to the method.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ppgen.backends import BACKEND_NAMES, get_backend
from ppgen.backends.base import SVIProblem
from ppgen.errors import ConfigError, suggest
from ppgen.inference.base import FitRequest, FitResult, Method, make_config
from ppgen.modeling.model import Guide, Model
from ppgen.modeling.registry import get_method, get_model

__all__ = ["fit", "resolve"]


def _check_options(
    steps: int, lr: float | None, particles: int, seed: int, threads: int | None
) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}; try steps=2000.")
    if lr is not None and (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or not lr > 0
        or not math.isfinite(lr)
    ):
        raise ConfigError(f"lr must be a positive number, got {lr!r}; try lr=0.01.")
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ConfigError(f"particles must be a positive integer, got {particles!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer, got {threads!r}.")


def resolve(
    model: str | Model,
    data: Any = None,
    *,
    method: str = "reparam",
    backend: str = "numpyro",
    device: str = "auto",
    guide: str | None = None,
) -> tuple[Model, Method, SVIProblem, str]:
    """Look up the model and method, check the backend and device, bind the data, pick the guide.

    Returns ``(model, method, problem, guide_name)``; raises a ppgen error on any bad input.
    """
    m = get_model(model)
    meth: Method = get_method(method)
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"Unknown backend {backend!r}; {suggest(backend, BACKEND_NAMES)}.")
    m.check_backend(backend)
    be = get_backend(backend)
    dev = be.resolve_device(device)
    bound = m.bind(data)
    chosen = m.resolve_guide(guide)
    if isinstance(chosen, Guide):
        guide_fn, guide_name = chosen.fn, chosen.name
    else:
        guide_fn, guide_name = be.auto_guide(m.fn, chosen), f"auto_{chosen}"
    problem = SVIProblem(model=m.fn, guide=guide_fn, data=bound, device=dev, name=m.name)
    return m, meth, problem, guide_name


def fit(
    model: str | Model,
    data: Any = None,
    *,
    method: str = "reparam",
    backend: str = "numpyro",
    device: str = "auto",
    steps: int = 2000,
    lr: float | None = None,
    particles: int = 1,
    seed: int = 0,
    progress: bool = True,
    guide: str | None = None,
    threads: int | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> FitResult:
    """Fit ``model`` to ``data`` with an inference method on a backend.

    Parameters
    ----------
    model
        A :class:`~ppgen.modeling.model.Model` or a registered name (``"coin"``).
    data
        The model's arguments: one array (one-argument model), a tuple, or a dict of keyword
        arguments, as numpy arrays or Python numbers. ``None`` uses the model's default data.
    method
        A registered method: ``"reparam"`` (pathwise SVI), ``"nuts"``, and any plugin's.
    backend
        ``"numpyro"`` (JAX) or ``"pyro"`` (PyTorch).
    device
        ``"auto"`` (a GPU if there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    steps, lr, particles, seed
        Optimization steps, learning rate (method default if ``None``), Monte Carlo particles per
        step (vectorized), random seed. The same seed gives the same result.
    progress
        Show a progress bar.
    guide
        Name of an attached guide, ``"auto"`` / ``"auto_normal"`` / ``"auto_mvn"`` for an
        automatic guide, or ``None`` for the model's default.
    threads
        Number of torch threads (Pyro backend); ``None`` leaves torch's setting alone.
    out
        If given, write a run directory there (config, metrics, parameters, posterior, plots).
    **options
        Method options (``ReparamConfig``, ``NUTSConfig`` fields such as ``num_samples``).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import ppgen
    >>> result = ppgen.fit("coin", steps=200, progress=False)  # doctest: +SKIP
    >>> result.posterior_samples(1000)["p"].mean()  # doctest: +SKIP
    """
    _check_options(steps, lr, particles, seed, threads)
    m, meth, problem, guide_name = resolve(
        model, data, method=method, backend=backend, device=device, guide=guide
    )
    config = make_config(meth.config_type, options, meth.name)
    if threads is not None and backend == "pyro":
        import torch

        torch.set_num_threads(threads)
    request = FitRequest(
        model=m,
        problem=problem,
        backend=get_backend(backend),
        guide_name=guide_name,
        steps=steps,
        lr=lr if lr is not None else meth.default_lr,
        particles=particles,
        seed=seed,
        progress=progress,
    )
    result = meth.run(request, config)
    if out is not None:
        from ppgen.runs import write_run

        write_run(result, Path(out))
    return result
