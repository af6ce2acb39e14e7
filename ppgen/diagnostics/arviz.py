"""Every ArviZ call of ppgen lives here, so that the ArviZ version in use is one module's concern.

ArviZ 0.x returns ``InferenceData``; ArviZ 1.x moved to ``DataTree``. The rest of ppgen only
calls the functions below and reads results through the small typed records they return.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ppgen.inference.base import FitResult

__all__ = [
    "POINTWISE_LIMIT",
    "LOOResult",
    "McmcDiagnostics",
    "divergences",
    "forest_figure",
    "from_draws",
    "from_fit",
    "loo",
    "mcmc_diagnostics",
    "psis_khat",
    "summary",
    "to_netcdf",
]

#: Draws x observed values above which :func:`from_fit` leaves out the pointwise groups unless
#: asked for them (a VAE on images would otherwise hold gigabytes of log-likelihoods).
POINTWISE_LIMIT = 50_000_000


def _az() -> Any:
    # ArviZ 0.2x warns about its coming 1.x refactor on import; ppgen isolates that here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


@dataclass(frozen=True)
class LOOResult:
    """PSIS-LOO estimate of the expected log pointwise predictive density.

    Attributes
    ----------
    elpd, se
        ``elpd_loo`` and its standard error.
    p_loo
        Effective number of parameters.
    khat_max
        Largest Pareto k of the per-observation importance ratios.
    bad
        Observations with Pareto k above ArviZ's threshold for the number of draws (their
        LOO estimate is unreliable).
    """

    elpd: float
    se: float
    p_loo: float
    khat_max: float
    bad: int


@dataclass(frozen=True)
class McmcDiagnostics:
    """Bulk ESS and rank-normalized split R-hat per scalar parameter (labels like ``theta[0]``)."""

    ess_bulk: dict[str, float]
    r_hat: dict[str, float]


def _argument_names(result: FitResult) -> dict[str, Any]:
    """The model's array arguments by their parameter names in the model's signature."""
    data = result.problem.data
    try:
        bound = inspect.signature(result.model.fn).bind_partial(*data.args, **data.kwargs)
        named = dict(bound.arguments)
    except TypeError:
        named = {f"arg{i}": a for i, a in enumerate(data.args)} | dict(data.kwargs)
    return {k: v for k, v in named.items() if isinstance(v, np.ndarray)}


def from_fit(
    result: FitResult, num_samples: int = 1000, seed: int = 0, pointwise: bool | None = None
) -> Any:
    """Convert a fit to ArviZ data.

    Groups: ``posterior`` (chains for MCMC, one chain of ``num_samples`` guide draws for VI,
    deterministic sites included), ``sample_stats`` for MCMC, and, per observed site,
    ``log_likelihood`` (pointwise, for LOO), ``posterior_predictive`` and ``observed_data``;
    the model's other array arguments go to ``constant_data``.

    Parameters
    ----------
    result
        Any :class:`~ppgen.inference.base.FitResult`.
    num_samples, seed
        Guide draws for VI results (MCMC results keep their draws) and the random seed.
    pointwise
        Compute ``log_likelihood`` and ``posterior_predictive``: ``True``, ``False``, or
        ``None`` for "when draws x observed values stay below :data:`POINTWISE_LIMIT`, and
        leave them out with a warning if the model cannot be run that way" (what run
        directories use, so that writing one never fails for want of a log-likelihood).
    """
    from ppgen.backends import get_backend

    az = _az()
    if result.draws is not None:
        posterior = dict(result.draws)
        stats = dict(result.sample_stats)
    else:
        draws = result.posterior_samples(num_samples=num_samples, seed=seed)
        posterior = {k: v[None] for k, v in draws.items()}
        stats = {}
    chains, ndraws = next(iter(posterior.values())).shape[:2]
    arguments = _argument_names(result)
    size = chains * ndraws * sum(a.size for a in arguments.values())
    log_likelihood: dict[str, np.ndarray] = {}
    predictive: dict[str, np.ndarray] = {}
    observed: dict[str, np.ndarray] = {}
    auto = pointwise is None
    pred = None
    if pointwise is None:
        pointwise = size <= POINTWISE_LIMIT
        if not pointwise:
            warnings.warn(
                f"Leaving log_likelihood and posterior_predictive out of the ArviZ data of "
                f"{result.model.name!r} ({size:.3g} values); pass pointwise=True to compute them.",
                stacklevel=2,
            )
    if pointwise:
        flat = {k: v.reshape(chains * ndraws, *v.shape[2:]) for k, v in posterior.items()}
        backend = get_backend(result.backend)
        try:
            pred = backend.predictive(result.problem, result.state, flat, seed + 1)
        except Exception as err:
            if not auto:
                raise
            warnings.warn(
                f"Leaving log_likelihood and posterior_predictive out of the ArviZ data of "
                f"{result.model.name!r}: running the model on the posterior draws failed "
                f"({type(err).__name__}: {err}).",
                stacklevel=2,
            )
    if pred is not None:

        def by_chain(x: np.ndarray) -> np.ndarray:
            return x.reshape(chains, ndraws, *x.shape[1:])

        log_likelihood = {k: by_chain(v) for k, v in pred.log_likelihood.items()}
        predictive = {k: by_chain(v) for k, v in pred.replicates.items()}
        observed = dict(pred.observed)
    constant = {k: v for k, v in arguments.items() if k not in observed}
    return az.from_dict(
        posterior=posterior,
        sample_stats=stats or None,
        log_likelihood=log_likelihood or None,
        posterior_predictive=predictive or None,
        observed_data=observed or None,
        constant_data=constant or None,
        attrs={
            "ppgen_model": result.model.name,
            "ppgen_method": result.method,
            "ppgen_backend": result.backend,
            "ppgen_guide": result.guide,
        },
    )


def from_draws(draws: Mapping[str, np.ndarray], attrs: Mapping[str, str] | None = None) -> Any:
    """ArviZ data with a one-chain posterior from draws by name, leading axis the draw (used for
    exact reference posteriors)."""
    az = _az()
    return az.from_dict(posterior={k: np.asarray(v)[None] for k, v in draws.items()}, attrs=attrs)


def summary(idata: Any) -> Any:
    """ArviZ's summary table (pandas DataFrame) of the posterior."""
    az = _az()

    return az.summary(idata, kind="stats" if idata.posterior.sizes["chain"] == 1 else "all")


def mcmc_diagnostics(idata: Any, var_names: Sequence[str] | None = None) -> McmcDiagnostics:
    """Bulk ESS and R-hat of every scalar parameter, from ArviZ's summary.

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
    of MCMC. Bayesian Analysis 16(2), 667-718.
    """
    az = _az()
    with warnings.catch_warnings():
        # One-chain data makes ArviZ warn that R-hat needs several chains; R-hat is NaN then.
        warnings.simplefilter("ignore", UserWarning)
        table = az.summary(
            idata,
            var_names=list(var_names) if var_names else None,
            kind="diagnostics",
            round_to="none",
        )
    return McmcDiagnostics(
        ess_bulk={str(k): float(v) for k, v in table["ess_bulk"].items()},
        r_hat={str(k): float(v) for k, v in table["r_hat"].items()},
    )


def divergences(idata: Any) -> int:
    """Number of divergent transitions in ``sample_stats`` (0 when there are none recorded)."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "diverging" not in stats:
        return 0
    return int(np.asarray(stats["diverging"]).sum())


def loo(idata: Any) -> LOOResult | None:
    """PSIS-LOO from the pointwise log-likelihood, or ``None`` when the data has none.

    Several observed sites are stacked into one set of observations (each value one unit of
    leave-one-out).

    References
    ----------
    Vehtari, A., Gelman, A. & Gabry, J. (2017). Practical Bayesian model evaluation using
    leave-one-out cross-validation and WAIC. Statistics and Computing 27, 1413-1432.
    """
    az = _az()
    group = getattr(idata, "log_likelihood", None)
    if group is None or not group.data_vars:
        return None
    data = idata
    if len(group.data_vars) > 1:
        chains, draws = group.sizes["chain"], group.sizes["draw"]
        stacked = np.concatenate(
            [np.asarray(v).reshape(chains, draws, -1) for v in group.data_vars.values()], axis=-1
        )
        posterior = {k: np.asarray(v) for k, v in idata.posterior.data_vars.items()}
        data = az.from_dict(posterior=posterior, log_likelihood={"observations": stacked})
    with warnings.catch_warnings():
        # ArviZ warns on high Pareto k; the count is reported in ``LOOResult.bad`` instead.
        warnings.simplefilter("ignore", UserWarning)
        res = az.loo(data, pointwise=True)
    k = np.asarray(res.pareto_k).ravel()
    threshold = float(getattr(res, "good_k", 0.7))
    return LOOResult(
        elpd=float(res.elpd_loo),
        se=float(res.se),
        p_loo=float(res.p_loo),
        khat_max=float(np.max(k)),
        bad=int(np.sum(k > threshold)),
    )


def psis_khat(log_weights: np.ndarray) -> float:
    """Pareto k-hat of importance ratios ``p(x, z) / q(z)`` over draws ``z ~ q`` (one chain of
    independent draws, so relative efficiency 1); ``inf`` if any ratio is not finite.

    References
    ----------
    Yao, Y., Vehtari, A., Simpson, D. & Gelman, A. (2018). Yes, but did it work?: Evaluating
    variational inference. ICML.
    Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed importance
    sampling. JMLR 25(72), 1-58.
    """
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    if not np.all(np.isfinite(lw)):
        return float("inf")
    az = _az()
    # Shifting by the maximum changes no ratio but keeps exp() in range.
    _, khat = az.psislw(lw - lw.max(), reff=1.0)
    return float(khat)


def forest_figure(
    datasets: Mapping[str, Any],
    var_names: Sequence[str],
    colors: Sequence[str],
    title: str,
) -> Any:
    """One forest plot of several posteriors side by side: per parameter, each data set's
    median, interquartile range and 94% HDI, one colour per data set, with a legend."""
    az = _az()
    import matplotlib

    matplotlib.use("Agg")
    first = next(iter(datasets.values())).posterior
    rows = sum(int(np.prod(first[v].shape[2:])) for v in var_names)
    height = min(40.0, 1.5 + 0.22 * rows * len(datasets))
    axes = az.plot_forest(
        list(datasets.values()),
        model_names=list(datasets),
        var_names=list(var_names),
        combined=True,
        hdi_prob=0.94,
        colors=list(colors),
        figsize=(7.5, height),
        legend=True,
    )
    ax = np.ravel(axes)[0]
    legend = ax.get_legend()
    if legend is not None:
        # Outside the axes, so that it never hides the top rows.
        labels = [t.get_text() for t in legend.get_texts()]
        ax.legend(legend.legend_handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("value (dot: median, thick: interquartile range, thin: 94% HDI)")
    ax.set_title(title)
    return ax.get_figure()


def to_netcdf(idata: Any, path: Path) -> None:
    """Write ArviZ data to ``path`` (netCDF4/HDF5)."""
    idata.to_netcdf(str(path))
