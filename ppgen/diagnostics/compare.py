"""Several fits of one model side by side, measured against a reference posterior.

For every scalar parameter (vector sites flattened with indices, ``theta[0]``) and every method:
mean, sd, the reference's mean and sd, the standardized error ``(mean - ref_mean) / ref_sd``, the
sd ratio and the Wasserstein-1 distance between the marginals. For every method: the PSIS k-hat
of the variational approximation (Yao et al. 2018), ESS, R-hat and divergences for MCMC, PSIS-LOO
where the model has a likelihood, and wall time. :func:`ppgen.compare` fits the methods and calls
:func:`compare_results`; all ArviZ work goes through :mod:`ppgen.diagnostics.arviz`.

References
----------
Yao, Y., Vehtari, A., Simpson, D. & Gelman, A. (2018). Yes, but did it work?: Evaluating
variational inference. ICML.
Vehtari, A., Gelman, A. & Gabry, J. (2017). Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC. Statistics and Computing 27, 1413-1432.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.diagnostics import arviz as ppaz

if TYPE_CHECKING:
    from ppgen.inference.base import FitResult
    from ppgen.modeling.model import Marginal

__all__ = [
    "KHAT_GOOD",
    "KHAT_OK",
    "Comparison",
    "MethodRow",
    "ParameterRow",
    "Reference",
    "compare_results",
    "draws_reference",
    "exact_reference",
    "flatten_draws",
    "khat_verdict",
    "psis_khat_of",
]

#: Yao et al. (2018): below 0.5 the approximation is good; up to 0.7 it is usable (importance
#: sampling can correct it); above 0.7 it is unreliable.
KHAT_GOOD = 0.5
KHAT_OK = 0.7

#: Draws taken from an exact reference posterior (only for the Wasserstein distance).
EXACT_DRAWS = 10_000


def khat_verdict(khat: float) -> str:
    """``"good"`` (k < 0.5), ``"ok"`` (k < 0.7), ``"unreliable"``, or ``"n/a"`` for NaN.

    References
    ----------
    Yao, Y., Vehtari, A., Simpson, D. & Gelman, A. (2018). Yes, but did it work?: Evaluating
    variational inference. ICML.
    """
    if math.isnan(khat):
        return "n/a"
    if khat < KHAT_GOOD:
        return "good"
    if khat < KHAT_OK:
        return "ok"
    return "unreliable"


def _label(name: str, index: tuple[int, ...]) -> str:
    # ArviZ's flat labels, so that rows match az.summary's index.
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def flatten_draws(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scalar marginals by label (``"mu"``, ``"theta[0]"``, ``"L[1, 0]"``) from draws by site
    with the draw on the leading axis."""
    flat: dict[str, np.ndarray] = {}
    for name, value in draws.items():
        arr = np.asarray(value)
        for index in np.ndindex(*arr.shape[1:]):
            flat[_label(name, index)] = arr[(slice(None), *index)]
    return flat


@dataclass(frozen=True)
class Reference:
    """The posterior every method is measured against.

    Attributes
    ----------
    kind
        ``"exact"`` (analytic) or the label of the fit used as reference (``"nuts"``).
    sites
        The sites compared (for an MCMC reference, its latent and deterministic sites).
    mean, sd, draws
        Per scalar label: reference mean, sd, and draws for the Wasserstein distance.
    idata
        ArviZ data of the reference posterior (for the forest plot).
    """

    kind: str
    sites: tuple[str, ...]
    mean: dict[str, float]
    sd: dict[str, float]
    draws: dict[str, np.ndarray]
    idata: Any = None


def exact_reference(
    marginals: Mapping[str, Marginal], num_samples: int = EXACT_DRAWS, seed: int = 0
) -> Reference:
    """A reference from analytic posterior marginals (``Model.exact_posterior()``)."""
    samples = {name: np.asarray(m.sample(num_samples, seed)) for name, m in marginals.items()}
    samples = {
        name: s.reshape(num_samples, *np.shape(marginals[name].mean)) for name, s in samples.items()
    }
    mean: dict[str, float] = {}
    sd: dict[str, float] = {}
    for name, m in marginals.items():
        mu, sigma = np.asarray(m.mean, np.float64), np.asarray(m.sd, np.float64)
        for index in np.ndindex(*mu.shape):
            mean[_label(name, index)] = float(mu[index])
            sd[_label(name, index)] = float(sigma[index])
    return Reference(
        kind="exact",
        sites=tuple(marginals),
        mean=mean,
        sd=sd,
        draws=flatten_draws(samples),
        idata=ppaz.from_draws(samples, attrs={"ppgen_method": "exact"}),
    )


def draws_reference(kind: str, draws: Mapping[str, np.ndarray], idata: Any = None) -> Reference:
    """A reference from posterior draws by site (leading axis the draw), e.g. NUTS's."""
    flat = flatten_draws(draws)
    return Reference(
        kind=kind,
        sites=tuple(draws),
        mean={k: float(np.mean(v, dtype=np.float64)) for k, v in flat.items()},
        sd={k: float(np.std(v, ddof=1, dtype=np.float64)) for k, v in flat.items()},
        draws=flat,
        idata=idata,
    )


@dataclass(frozen=True)
class ParameterRow:
    """One scalar parameter under one method, against the reference.

    ``std_error`` is ``(mean - ref_mean) / ref_sd``, ``sd_ratio`` is ``sd / ref_sd``, ``w1`` the
    Wasserstein-1 distance between the method's and the reference's marginal draws (in the
    parameter's units). ``ess_bulk`` and ``r_hat`` are NaN for independent (VI) draws.
    """

    method: str
    parameter: str
    mean: float
    sd: float
    ref_mean: float
    ref_sd: float
    std_error: float
    sd_ratio: float
    w1: float
    ess_bulk: float = math.nan
    r_hat: float = math.nan


@dataclass(frozen=True)
class MethodRow:
    """One method's fit as a whole.

    ``khat`` is the PSIS k-hat of the guide's importance ratios (NaN for MCMC and implicit
    guides); ``elpd_loo``, ``elpd_loo_se``, ``p_loo`` and ``loo_bad_k`` (observations with a
    high Pareto k) are NaN / -1 where the model has no likelihood; ``ess_bulk_min``,
    ``r_hat_max`` and ``divergences`` are for MCMC only (NaN / -1 otherwise).
    """

    method: str
    inference: str
    guide: str
    backend: str
    chains: int
    draws: int
    wall_s: float
    khat: float = math.nan
    khat_verdict: str = "n/a"
    elpd_loo: float = math.nan
    elpd_loo_se: float = math.nan
    p_loo: float = math.nan
    loo_bad_k: int = -1
    ess_bulk_min: float = math.nan
    r_hat_max: float = math.nan
    divergences: int = -1


_PARAMETER_HEADERS = {
    "parameter": "parameter",
    "method": "method",
    "mean": "mean",
    "sd": "sd",
    "ref_mean": "ref mean",
    "ref_sd": "ref sd",
    "std_error": "std. error",
    "sd_ratio": "sd ratio",
    "w1": "W1",
    "ess_bulk": "ESS bulk",
    "r_hat": "R-hat",
}
_METHOD_HEADERS = {
    "method": "method",
    "guide": "guide",
    "backend": "backend",
    "chains": "chains",
    "draws": "draws",
    "wall_s": "wall s",
    "khat": "k-hat",
    "khat_verdict": "k-hat verdict",
    "elpd_loo": "elpd LOO",
    "elpd_loo_se": "se",
    "p_loo": "p LOO",
    "loo_bad_k": "LOO k>0.7",
    "ess_bulk_min": "min ESS",
    "r_hat_max": "max R-hat",
    "divergences": "divergences",
}


@dataclass
class Comparison:
    """Posteriors of several methods side by side (see :func:`ppgen.compare`).

    Attributes
    ----------
    model
        The model's name.
    reference
        The reference posterior; ``reference.kind`` is ``"exact"`` or the label of the fit used.
    parameters, methods
        The per-parameter and per-method rows.
    results, idata
        Each method's :class:`~ppgen.inference.base.FitResult` and ArviZ data, by label.
    """

    model: str
    reference: Reference
    parameters: tuple[ParameterRow, ...]
    methods: tuple[MethodRow, ...]
    results: dict[str, FitResult] = field(default_factory=dict)
    idata: dict[str, Any] = field(default_factory=dict)

    def row(self, method: str, parameter: str) -> ParameterRow:
        """The row of ``parameter`` (a label such as ``"theta[0]"``) under ``method``."""
        for r in self.parameters:
            if r.method == method and r.parameter == parameter:
                return r
        raise KeyError(f"No row for parameter {parameter!r} under method {method!r}.")

    def method(self, label: str) -> MethodRow:
        """The summary row of the method labelled ``label``."""
        for r in self.methods:
            if r.method == label:
                return r
        raise KeyError(
            f"No method {label!r}; the comparison has {[m.method for m in self.methods]}."
        )

    def to_frame(self, kind: str = "parameters") -> Any:
        """A pandas DataFrame of the ``"parameters"`` rows (default) or the ``"methods"`` rows."""
        import pandas as pd

        if kind == "parameters":
            rows, cls = self.parameters, ParameterRow
        elif kind == "methods":
            rows, cls = self.methods, MethodRow  # type: ignore[assignment]
        else:
            from ppgen.errors import ConfigError

            raise ConfigError(f"Unknown table {kind!r}; use kind='parameters' or 'methods'.")
        return pd.DataFrame([asdict(r) for r in rows], columns=[f.name for f in fields(cls)])

    def to_markdown(self) -> str:
        """The report: a methods table and a parameters table, in Markdown."""
        methods = _markdown(self.to_frame("methods"), _METHOD_HEADERS)
        params = _markdown(self.to_frame("parameters"), _PARAMETER_HEADERS)
        return (
            f"# Posterior comparison: {self.model}\n\n"
            f"Reference: **{self.reference.kind}**. Standardized error = (mean - ref mean) / "
            "ref sd; sd ratio = sd / ref sd; W1 = Wasserstein-1 distance between marginals. "
            f"k-hat is the PSIS diagnostic of Yao et al. (2018): good below {KHAT_GOOD}, ok "
            f"below {KHAT_OK}, unreliable above.\n\n"
            f"## Methods\n\n{methods}\n\n## Parameters\n\n{params}\n"
        )

    def plot_forest(self, var_names: Sequence[str] | None = None) -> Any:
        """One forest plot: every method's marginals side by side, the reference in black."""
        datasets: dict[str, Any] = {}
        ref = self.reference
        ref_name = f"{ref.kind} (reference)"
        if ref.idata is not None:
            datasets[ref_name] = ref.idata
        for label, idata in self.idata.items():
            if label == ref.kind and ref.idata is not None:
                continue
            datasets[label] = idata
        names = list(var_names) if var_names is not None else list(ref.sites)
        others = iter(range(len(datasets)))
        colors = ["black" if n == ref_name else f"C{next(others)}" for n in datasets]
        return ppaz.forest_figure(
            datasets, names, colors, f"{self.model}: posteriors by method (black: reference)"
        )


def _markdown(frame: Any, headers: Mapping[str, str]) -> str:
    import pandas as pd

    shown = frame[[c for c in headers if c in frame.columns]].rename(columns=headers)
    # Blank cells instead of "nan" / -1 where a diagnostic does not apply.
    shown = shown.astype(object).where(shown.notna(), None)
    for col in ("LOO k>0.7", "divergences"):
        if col in shown:
            shown[col] = pd.Series(
                [None if v is not None and v < 0 else v for v in shown[col]], dtype=object
            )
    text: str = shown.to_markdown(index=False, floatfmt=".4g", missingval="")
    return text


def psis_khat_of(result: FitResult, num_samples: int = 4000, seed: int = 0) -> float:
    """PSIS k-hat of a variational fit's importance ratios ``p(x, z) / q(z)``, ``z ~ q``; NaN for
    MCMC results and implicit guides (no density to evaluate).

    References
    ----------
    Yao, Y., Vehtari, A., Simpson, D. & Gelman, A. (2018). Yes, but did it work?: Evaluating
    variational inference. ICML.
    """
    from ppgen.backends import get_backend

    guide = result.model.guides.get(result.guide)
    if result.draws is not None or result.state is None or (guide is not None and guide.implicit):
        return math.nan
    weights = get_backend(result.backend).importance_draws(
        result.problem, result.state, num_samples, seed
    )
    return ppaz.psis_khat(weights.log_weights)


def _posterior_draws(idata: Any, sites: Sequence[str]) -> dict[str, np.ndarray]:
    post = idata.posterior
    return {s: np.asarray(post[s]).reshape(-1, *post[s].shape[2:]) for s in sites if s in post}


def _parameter_rows(
    label: str, draws: Mapping[str, np.ndarray], ref: Reference, mcmc: ppaz.McmcDiagnostics | None
) -> list[ParameterRow]:
    from scipy.stats import wasserstein_distance  # scipy.stats takes a while to import

    rows = []
    for name, x in flatten_draws(draws).items():
        if name not in ref.mean:
            continue
        x = x.astype(np.float64)
        mean, sd = float(x.mean()), float(x.std(ddof=1))
        ref_mean, ref_sd = ref.mean[name], ref.sd[name]
        rows.append(
            ParameterRow(
                method=label,
                parameter=name,
                mean=mean,
                sd=sd,
                ref_mean=ref_mean,
                ref_sd=ref_sd,
                std_error=(mean - ref_mean) / ref_sd if ref_sd > 0 else math.nan,
                sd_ratio=sd / ref_sd if ref_sd > 0 else math.nan,
                w1=float(wasserstein_distance(x, ref.draws[name])),
                ess_bulk=mcmc.ess_bulk.get(name, math.nan) if mcmc else math.nan,
                r_hat=mcmc.r_hat.get(name, math.nan) if mcmc else math.nan,
            )
        )
    return rows


def compare_results(
    model: str,
    results: Mapping[str, FitResult],
    reference: Reference | str,
    *,
    num_samples: int = 4000,
    seed: int = 0,
) -> Comparison:
    """Measure every fit in ``results`` (by label) against ``reference``.

    Parameters
    ----------
    model
        The model's name (for titles).
    results
        Fits by label; VI fits are drawn from ``num_samples`` times, MCMC fits keep their draws.
    reference
        A :class:`Reference`, or the label of the fit in ``results`` to use as reference.
    num_samples, seed
        Guide draws for the table and for k-hat, and the random seed.

    Returns
    -------
    Comparison
    """
    idata = {
        label: ppaz.from_fit(r, num_samples=num_samples, seed=seed) for label, r in results.items()
    }
    if isinstance(reference, str):
        ref_idata = idata[reference]
        sites = list(ref_idata.posterior.data_vars)
        reference = draws_reference(reference, _posterior_draws(ref_idata, sites), ref_idata)
    parameters: list[ParameterRow] = []
    methods: list[MethodRow] = []
    for label, result in results.items():
        data = idata[label]
        mcmc_fit = result.draws is not None
        mcmc = (
            ppaz.mcmc_diagnostics(data, [s for s in reference.sites if s in data.posterior])
            if mcmc_fit
            else None
        )
        parameters += _parameter_rows(
            label, _posterior_draws(data, reference.sites), reference, mcmc
        )
        khat = psis_khat_of(result, num_samples, seed + 2)
        loo = ppaz.loo(data)
        post = data.posterior
        methods.append(
            MethodRow(
                method=label,
                inference=result.method,
                guide=result.guide,
                backend=result.backend,
                chains=int(post.sizes["chain"]),
                draws=int(post.sizes["draw"]),
                wall_s=float(result.timings.total_s),
                khat=khat,
                khat_verdict=khat_verdict(khat),
                elpd_loo=loo.elpd if loo else math.nan,
                elpd_loo_se=loo.se if loo else math.nan,
                p_loo=loo.p_loo if loo else math.nan,
                loo_bad_k=loo.bad if loo else -1,
                ess_bulk_min=min(mcmc.ess_bulk.values(), default=math.nan) if mcmc else math.nan,
                r_hat_max=max(mcmc.r_hat.values(), default=math.nan) if mcmc else math.nan,
                divergences=ppaz.divergences(data) if mcmc_fit else -1,
            )
        )
    return Comparison(
        model=model,
        reference=reference,
        parameters=tuple(parameters),
        methods=tuple(methods),
        results=dict(results),
        idata=idata,
    )
