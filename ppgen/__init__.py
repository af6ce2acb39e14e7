"""ppgen: write a generative model once, fit it with several inference methods on Pyro or
NumPyro, on CPU or GPU, and compare honestly what each method gets and costs.

The public face::

    import ppgen
    from ppgen import dist

    @ppgen.model
    def coin(flips):
        p = ppgen.sample("p", dist.Beta(10.0, 10.0))
        with ppgen.plate("flips", flips.shape[0]):
            ppgen.sample("obs", dist.Bernoulli(p), obs=flips)

    result = ppgen.fit(coin, flips, method="reparam", backend="numpyro")
"""

from ppgen import _xla  # noqa: F401  (sets XLA_FLAGS before JAX starts; see its docstring)
from ppgen.api import compare, fit, gradvar
from ppgen.diagnostics.compare import Comparison
from ppgen.errors import PPGenError
from ppgen.inference.base import FitResult
from ppgen.inference.gradvar import GradVarReport
from ppgen.modeling import (
    Model,
    current_backend,
    deterministic,
    dist,
    factor,
    get_method,
    get_model,
    implicit,
    list_methods,
    list_models,
    model,
    module,
    nn,
    ops,
    param,
    plate,
    sample,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "FitResult",
    "GradVarReport",
    "Model",
    "PPGenError",
    "__version__",
    "compare",
    "current_backend",
    "deterministic",
    "dist",
    "factor",
    "fit",
    "get_method",
    "get_model",
    "gradvar",
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
