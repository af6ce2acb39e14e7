"""Backends: one interface (:mod:`ppgen.backends.base`), two implementations, loaded lazily."""

from __future__ import annotations

import functools

from ppgen.backends.base import Backend
from ppgen.errors import ConfigError, suggest

__all__ = ["BACKEND_NAMES", "Backend", "get_backend"]

BACKEND_NAMES = ("numpyro", "pyro")


@functools.cache
def get_backend(name: str) -> Backend:
    """Return the backend ``name`` (``"numpyro"`` or ``"pyro"``), importing it on first use."""
    if name == "pyro":
        from ppgen.backends.pyro import PyroBackend

        return PyroBackend()
    if name == "numpyro":
        from ppgen.backends.numpyro import NumPyroBackend

        return NumPyroBackend()
    raise ConfigError(f"Unknown backend {name!r}; {suggest(name, BACKEND_NAMES)}.")
