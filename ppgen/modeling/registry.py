"""The registry of models and inference methods, fed by Python entry points.

Built-in models and methods register through the same entry-point groups (``ppgen.models`` and
``ppgen.inference``, declared in ``pyproject.toml``) that a third-party plugin package uses, so a
plugin installed beside ppgen appears in ``ppgen list`` with no change to ppgen.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ppgen.errors import ModelError, UnknownNameError, suggest
from ppgen.modeling.model import Model

__all__ = ["Entry", "get_method", "get_model", "list_methods", "list_models", "refresh"]

MODEL_GROUP = "ppgen.models"
METHOD_GROUP = "ppgen.inference"


@dataclass(frozen=True)
class Entry:
    """One registered name: where it comes from (distribution) and the loaded object."""

    name: str
    source: str
    value: Any


_cache: dict[str, dict[str, Entry]] = {}


def refresh() -> None:
    """Forget loaded entry points, so that newly installed plugins are found."""
    _cache.clear()


def _load(group: str) -> dict[str, Entry]:
    if group in _cache:
        return _cache[group]
    found: dict[str, Entry] = {}
    for ep in entry_points(group=group):
        if ep.name in found:
            continue  # the first distribution on sys.path wins, as with imports
        try:
            value = ep.load()
        except Exception as err:
            raise ModelError(
                f"Plugin entry point {ep.name!r} ({ep.value}) in group {group!r} failed to load "
                f"({type(err).__name__}: {err}); fix or uninstall that package."
            ) from err
        dist = getattr(ep, "dist", None)
        found[ep.name] = Entry(ep.name, dist.name if dist is not None else "?", value)
    if group == MODEL_GROUP:
        for entry in found.values():
            if not isinstance(entry.value, Model):
                raise ModelError(
                    f"Entry point {entry.name!r} in {group!r} is a {type(entry.value).__name__}, "
                    "not a model declared with @ppgen.model."
                )
    _cache[group] = found
    return found


def list_models() -> dict[str, Entry]:
    """All registered models, by name."""
    return dict(sorted(_load(MODEL_GROUP).items()))


def list_methods() -> dict[str, Entry]:
    """All registered inference methods, by name."""
    return dict(sorted(_load(METHOD_GROUP).items()))


def get_model(name: str | Model) -> Model:
    """Return the registered model ``name`` (a :class:`Model` passes through)."""
    if isinstance(name, Model):
        return name
    models = _load(MODEL_GROUP)
    if name not in models:
        raise UnknownNameError(f"Unknown model {name!r}; {suggest(name, models)}.")
    model: Model = models[name].value
    return model


def get_method(name: str) -> Any:
    """Return the registered inference method ``name``."""
    methods = _load(METHOD_GROUP)
    if name not in methods:
        raise UnknownNameError(f"Unknown method {name!r}; {suggest(name, methods)}.")
    return methods[name].value
