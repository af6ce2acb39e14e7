"""NUTS, the reference posterior: NumPyro's or Pyro's No-U-Turn sampler.

References
----------
Hoffman, M. D. & Gelman, A. (2014). The No-U-Turn sampler: adaptively setting path lengths in
Hamiltonian Monte Carlo. JMLR 15, 1593-1623.
"""

from __future__ import annotations

import numpy as np

from ppgen.backends.base import NUTSConfig
from ppgen.inference.base import FitRequest, FitResult, Method

__all__ = ["METHOD", "NUTSConfig", "fit"]


def fit(request: FitRequest, config: NUTSConfig) -> FitResult:
    """Draw ``num_chains`` chains of ``num_samples`` after ``num_warmup`` adaptation steps."""
    outcome = request.backend.run_nuts(request.problem, config, request.seed, request.progress)
    return FitResult(
        model=request.model,
        method="nuts",
        backend=request.backend.name,
        device=request.problem.device,
        guide="none",
        losses=np.empty(0),
        params={},
        timings=outcome.timings,
        config=config,
        problem=request.problem,
        draws=outcome.samples,
        sample_stats=outcome.stats,
    )


METHOD = Method(
    name="nuts",
    config_type=NUTSConfig,
    run=fit,
    description="No-U-Turn sampler (reference posterior)",
    default_lr=None,
    resumable=False,
)
