"""Every ArviZ call of ppgen lives here, so that the ArviZ version in use is one module's concern.

ArviZ 0.x returns ``InferenceData``; ArviZ 1.x moved to ``DataTree``. The rest of ppgen only
calls the functions below.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ppgen.inference.base import FitResult

__all__ = ["from_fit", "summary", "to_netcdf"]


def _az() -> Any:
    # ArviZ 0.2x warns about its coming 1.x refactor on import; ppgen isolates that here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def from_fit(result: FitResult, num_samples: int = 1000, seed: int = 0) -> Any:
    """Convert a fit to ArviZ data: posterior (chains for MCMC, one chain of guide draws for VI),
    sample stats for MCMC, and the observed data."""
    az = _az()

    if result.draws is not None:
        posterior = dict(result.draws)
        stats = dict(result.sample_stats)
    else:
        draws = result.posterior_samples(num_samples=num_samples, seed=seed)
        posterior = {k: v[None] for k, v in draws.items()}
        stats = {}
    observed = {}
    data = result.problem.data
    for i, arg in enumerate(data.args):
        if isinstance(arg, np.ndarray):
            observed[f"arg{i}"] = arg
    observed.update({k: v for k, v in data.kwargs.items() if isinstance(v, np.ndarray)})
    return az.from_dict(
        posterior=posterior,
        sample_stats=stats or None,
        observed_data=observed or None,
        attrs={"ppgen_method": result.method, "ppgen_backend": result.backend},
    )


def summary(idata: Any) -> Any:
    """ArviZ's summary table (pandas DataFrame) of the posterior."""
    az = _az()

    return az.summary(idata, kind="stats" if idata.posterior.sizes["chain"] == 1 else "all")


def to_netcdf(idata: Any, path: Path) -> None:
    """Write ArviZ data to ``path`` (netCDF4/HDF5)."""
    idata.to_netcdf(str(path))
