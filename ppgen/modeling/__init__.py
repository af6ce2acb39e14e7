"""Modeling layer: the decorator, backend-neutral primitives, networks, and the registry."""

from ppgen.modeling import nn
from ppgen.modeling.context import current_backend, use_backend
from ppgen.modeling.implicit import implicit
from ppgen.modeling.model import Guide, Marginal, Model, model
from ppgen.modeling.primitives import (
    deterministic,
    dist,
    factor,
    module,
    ops,
    param,
    plate,
    sample,
)
from ppgen.modeling.registry import get_method, get_model, list_methods, list_models

__all__ = [
    "Guide",
    "Marginal",
    "Model",
    "current_backend",
    "deterministic",
    "dist",
    "factor",
    "get_method",
    "get_model",
    "implicit",
    "list_methods",
    "list_models",
    "model",
    "module",
    "nn",
    "ops",
    "param",
    "plate",
    "sample",
    "use_backend",
]
