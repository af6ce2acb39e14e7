"""The ``@ppgen.model`` decorator and the :class:`Model` it returns."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np

from ppgen.errors import ConfigError, DataError, ModelError, suggest

__all__ = ["AUTO_GUIDES", "BoundData", "Guide", "Marginal", "Model", "model"]

AUTO_GUIDES = ("normal", "mvn", "delta")
BACKEND_NAMES = ("pyro", "numpyro")


@dataclass(frozen=True)
class Guide:
    """A guide attached to a model: its name, its function, and whether it is implicit."""

    name: str
    fn: Callable[..., Any]
    implicit: bool = False


@dataclass(frozen=True)
class Marginal:
    """An exact posterior marginal: mean and sd (same shape as the site) and a sampler.

    ``sample(n, seed)`` returns an array of shape ``(n, *site_shape)``.
    """

    mean: np.ndarray
    sd: np.ndarray
    sample: Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class BoundData:
    """A model's arguments as numpy values: positional ``args`` and keyword ``kwargs``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def map(self, fn: Callable[[Any], Any]) -> BoundData:
        """Apply ``fn`` to every array-like argument (numbers and ``None`` pass through)."""

        def conv(x: Any) -> Any:
            return fn(x) if isinstance(x, np.ndarray) else x

        return BoundData(
            tuple(conv(a) for a in self.args), {k: conv(v) for k, v in self.kwargs.items()}
        )


@dataclass
class Model:
    """A generative model declared with :func:`model`.

    Attributes
    ----------
    name
        Registry name.
    fn
        The model function.
    backends
        Backends the model can run on (both, unless it calls one backend's API directly).
    data
        Zero-argument callable returning the default data, or ``None``.
    guides
        Named guides, in the order they were attached; the first is the default.
    auto
        Automatic guide used when no guide is attached (or ``guide="auto"`` is asked for).
    """

    name: str
    fn: Callable[..., Any]
    backends: tuple[str, ...] = BACKEND_NAMES
    data: Callable[[], Any] | None = None
    description: str = ""
    auto: str = "normal"
    guides: dict[str, Guide] = field(default_factory=dict)
    _exact: Callable[..., dict[str, Marginal]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, backends={self.backends}, guides={list(self.guides)})"

    # -- guides -------------------------------------------------------------------------------
    @overload
    def guide(self, fn: Callable[..., Any]) -> Callable[..., Any]: ...

    @overload
    def guide(
        self, fn: None = None, *, name: str | None = None, implicit: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def guide(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        implicit: bool = False,
    ) -> Any:
        """Attach a guide. Use bare (``@m.guide``) or with options (``@m.guide(name="mf")``).

        The first guide attached is the default. The decorated function is returned unchanged.
        """

        def attach(f: Callable[..., Any]) -> Callable[..., Any]:
            gname = name or f.__name__
            if gname == "auto":
                raise ModelError("'auto' names the automatic guide; give your guide another name.")
            self.guides[gname] = Guide(gname, f, implicit)
            return f

        return attach(fn) if fn is not None else attach

    def exact(self, fn: Callable[..., dict[str, Marginal]]) -> Callable[..., dict[str, Marginal]]:
        """Decorator: attach a function ``fn(*args, **kwargs) -> {site: Marginal}``."""
        self._exact = fn
        return fn

    @property
    def has_exact(self) -> bool:
        return self._exact is not None

    def exact_posterior(self, data: Any = None) -> dict[str, Marginal]:
        """The exact posterior marginals for ``data`` (default data if ``None``)."""
        if self._exact is None:
            raise ModelError(
                f"Model {self.name!r} has no exact posterior; use a NUTS reference instead."
            )
        bound = self.bind(data)
        return self._exact(*bound.args, **bound.kwargs)

    def resolve_guide(self, guide: str | None) -> Guide | str:
        """Return the guide called ``guide`` (default guide if ``None``) or an auto-guide name.

        Returns the auto-guide kind (``"normal"``, ``"mvn"``, ...) when an automatic guide is meant.
        """
        if guide is None:
            return next(iter(self.guides.values())) if self.guides else self.auto
        if guide == "auto":
            return self.auto
        if guide in AUTO_GUIDES:
            return guide
        if guide.startswith("auto_") and guide[5:] in AUTO_GUIDES:
            return guide[5:]
        if guide not in self.guides:
            choices = [*self.guides, *(f"auto_{a}" for a in AUTO_GUIDES)]
            raise ModelError(
                f"Model {self.name!r} has no guide {guide!r}; {suggest(guide, choices)}."
            )
        return self.guides[guide]

    # -- data --------------------------------------------------------------------------------
    def check_backend(self, backend: str) -> None:
        """Raise a clear error if the model cannot run on ``backend``."""
        if backend not in self.backends:
            raise ModelError(
                f"Model {self.name!r} is written for {' and '.join(self.backends)} only (it calls "
                f"that backend directly); use backend={self.backends[0]!r} or rewrite it with "
                "ppgen primitives to run it on both."
            )

    def bind(self, data: Any = None) -> BoundData:
        """Turn ``data`` (array, tuple, dict, or ``None`` for the default) into model arguments.

        Arrays are converted to numpy and checked for NaN/inf; the arguments are checked
        against the model function's signature.
        """
        if data is None:
            if self.data is None:
                raise DataError(
                    f"Model {self.name!r} has no default data; pass data=... to fit it."
                )
            data = self.data()
        if isinstance(data, BoundData):
            bound = data
        elif isinstance(data, Mapping):
            bound = BoundData((), dict(data))
        elif isinstance(data, tuple):
            bound = BoundData(data, {})
        else:
            bound = BoundData((data,), {})
        bound = BoundData(
            tuple(_to_numpy(a, f"argument {i}") for i, a in enumerate(bound.args)),
            {k: _to_numpy(v, f"argument {k!r}") for k, v in bound.kwargs.items()},
        )
        try:
            inspect.signature(self.fn).bind(*bound.args, **bound.kwargs)
        except TypeError as err:
            raise DataError(
                f"Data for model {self.name!r} does not match its signature "
                f"{self.name}{inspect.signature(self.fn)}: {err}; pass one array, a tuple of "
                "positional arguments, or a dict of keyword arguments."
            ) from None
        return bound


def _to_numpy(x: Any, what: str) -> Any:
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    try:
        arr = np.asarray(x)
    except Exception as err:
        raise DataError(
            f"{what} of type {type(x).__name__} is not array-like; pass a numpy array."
        ) from err
    if arr.dtype == object:
        raise DataError(
            f"{what} is not a numeric array (dtype object); pass a numeric numpy array."
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise DataError(
                f"{what} contains {bad} NaN or infinite value(s); remove or impute them "
                "before fitting."
            )
        arr = arr.astype(np.float32)
    return arr


@overload
def model(fn: Callable[..., Any], /) -> Model: ...


@overload
def model(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    backend: str | tuple[str, ...] | None = None,
    data: Callable[[], Any] | Any = None,
    description: str | None = None,
    auto: Literal["normal", "mvn", "delta"] = "normal",
) -> Callable[[Callable[..., Any]], Model]: ...


def model(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    backend: str | tuple[str, ...] | None = None,
    data: Any = None,
    description: str | None = None,
    auto: Literal["normal", "mvn", "delta"] = "normal",
) -> Any:
    """Declare a generative model.

    Use bare (``@ppgen.model``) or with options. A model written with ppgen primitives runs on
    both backends; ``backend="pyro"`` (or ``"numpyro"``) marks a model that calls one backend's
    API directly, so that asking for the other one is a clear error.

    Parameters
    ----------
    name
        Registry name (default: the function's name).
    backend
        The backend(s) the model is restricted to, or ``None`` for both.
    data
        Default data: a zero-argument callable (evaluated lazily) or the data itself.
    description
        One line for ``ppgen list`` (default: the docstring's first line).
    auto
        Automatic guide used when no guide is attached: ``"normal"`` (mean-field),
        ``"mvn"`` (full-rank) or ``"delta"`` (MAP).

    Examples
    --------
    >>> import ppgen
    >>> from ppgen import dist
    >>> @ppgen.model(data=lambda: [0.0, 1.0])
    ... def m(x):
    ...     mu = ppgen.sample("mu", dist.Normal(0.0, 1.0))
    ...     with ppgen.plate("n", len(x)):
    ...         ppgen.sample("x", dist.Normal(mu, 1.0), obs=x)
    >>> m.name
    'm'
    """
    if auto not in AUTO_GUIDES:
        raise ConfigError(f"Unknown auto guide {auto!r}; choose one of {', '.join(AUTO_GUIDES)}.")
    backends: tuple[str, ...]
    if backend is None:
        backends = BACKEND_NAMES
    else:
        backends = (backend,) if isinstance(backend, str) else tuple(backend)
        for b in backends:
            if b not in BACKEND_NAMES:
                raise ConfigError(f"Unknown backend {b!r}; {suggest(b, BACKEND_NAMES)}.")

    def wrap(f: Callable[..., Any]) -> Model:
        loader = data if (data is None or callable(data)) else (lambda: data)
        doc = (inspect.getdoc(f) or "").strip().splitlines()
        return Model(
            name=name or f.__name__,
            fn=f,
            backends=backends,
            data=loader,
            description=description or (doc[0] if doc else ""),
            auto=auto,
        )

    return wrap(fn) if fn is not None else wrap
