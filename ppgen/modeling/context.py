"""The active backend and device, and the dispatch of ``ppgen`` primitives through ``pyro-api``.

``pyro-api`` routes its generic modules (``pyro``, ``distributions``, ``handlers``, ``ops``, ...)
to whichever implementation is active. ppgen registers two routings, one for Pyro and one for
NumPyro, and switches between them with :func:`use_backend`. Nothing here imports torch or JAX:
the target modules are imported the first time an attribute is looked up.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyroapi.dispatch import GenericModule

from ppgen.errors import ConfigError, suggest

__all__ = ["BACKENDS", "Context", "current", "current_backend", "use_backend"]

#: ``pyro-api`` routing for each backend ppgen supports.
BACKENDS: dict[str, dict[str, str]] = {
    "pyro": {
        "pyro": "pyro",
        "distributions": "pyro.distributions",
        "handlers": "pyro.poutine",
        "infer": "pyro.infer",
        "optim": "pyro.optim",
        "ops": "ppgen.modeling._ops_torch",
    },
    "numpyro": {
        "pyro": "numpyro",
        "distributions": "numpyro.distributions",
        "handlers": "numpyro.handlers",
        "infer": "numpyro.infer",
        "optim": "numpyro.optim",
        "ops": "ppgen.modeling._ops_jax",
    },
}


@dataclass
class Context:
    """What a model sees while it runs: the backend, the device, and the networks built so far.

    ``modules`` caches the torch modules that :func:`ppgen.module` builds, so that one fit
    builds each network once instead of at every step.
    """

    backend: str
    device: str = "cpu"
    modules: dict[str, Any] = field(default_factory=dict)


_CONTEXT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "ppgen_context", default=None
)


def current() -> Context:
    """Return the active context, or raise if no backend is active."""
    ctx = _CONTEXT.get()
    if ctx is None:
        raise ConfigError(
            "No ppgen backend is active; run the model through ppgen.fit or inside "
            "`with ppgen.use_backend('numpyro'):` (or 'pyro')."
        )
    return ctx


def current_backend() -> str | None:
    """Name of the active backend, or ``None`` outside any backend."""
    ctx = _CONTEXT.get()
    return None if ctx is None else ctx.backend


@contextlib.contextmanager
def use_backend(
    name: str, device: str = "cpu", modules: dict[str, Any] | None = None
) -> Iterator[Context]:
    """Run the enclosed code with ``ppgen`` primitives dispatching to backend ``name``.

    Parameters
    ----------
    name
        ``"pyro"`` or ``"numpyro"``.
    device
        A resolved device string (``"cpu"``, ``"cuda:0"``) that arrays made by ``ppgen.ops``
        and networks made by ``ppgen.module`` are placed on.
    modules
        A cache of built networks to reuse (fits pass their own so that nothing is shared
        between fits).
    """
    if name not in BACKENDS:
        raise ConfigError(f"Unknown backend {name!r}; {suggest(name, BACKENDS)}.")
    routing = BACKENDS[name]
    old = {key: GenericModule.current_backend.get(key) for key in routing}
    GenericModule.current_backend.update(routing)
    ctx = Context(name, device, {} if modules is None else modules)
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)
        for key, value in old.items():
            if value is not None:
                GenericModule.current_backend[key] = value
