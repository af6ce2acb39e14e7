"""Models on real data from posteriordb, and a correlated Gaussian target.

``kidiq`` and ``ar5`` follow posteriordb's ``kidiq-kidscore_momiq`` and ``arK-arK`` posteriors
(data shipped in ``ppgen/data/files/posteriordb``, see its ``ATTRIBUTION.md``). ``kidiq`` works on
standardized data and puts Normal(0, 10) priors where posteriordb has flat ones: on that scale
they change nothing the data decide. ``corr_gauss`` is a 2-D Gaussian with correlation 0.95 and no
data: the textbook case where a mean-field guide under-disperses (Blei, Kucukelbir & McAuliffe
2017, Sec. 5).

References
----------
Magnusson, M., Torgander, J., Bürkner, P.-C., Zhang, L., Carpenter, B. & Vehtari, A. (2025).
posteriordb: testing, benchmarking and developing Bayesian inference algorithms. AISTATS.
Gelman, A. & Hill, J. (2007). Data Analysis Using Regression and Multilevel/Hierarchical Models.
Cambridge University Press (the kid IQ data).
Blei, D. M., Kucukelbir, A. & McAuliffe, J. D. (2017). Variational inference: a review for
statisticians. JASA 112(518), 859-877.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

import ppgen
from ppgen import dist
from ppgen.data import load_posteriordb
from ppgen.modeling.model import Marginal

__all__ = ["CORR_GAUSS_RHO", "ar5", "corr_gauss", "kidiq"]


# -- kidiq ---------------------------------------------------------------------------------------
def _standardize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return ((x - x.mean()) / x.std()).astype(np.float32)


def _kidiq_data() -> dict[str, Any]:
    raw = load_posteriordb("kidiq")
    return {
        "mom_iq": _standardize(raw["mom_iq"]),  # type: ignore[arg-type]
        "kid_score": _standardize(raw["kid_score"]),  # type: ignore[arg-type]
    }


@ppgen.model(data=_kidiq_data)
def kidiq(mom_iq: Any, kid_score: Any = None) -> None:
    """Kid's test score on mother's IQ (posteriordb kidiq, 434 children), both standardized."""
    # Standardized data keep every coefficient near 1, where gradient-based VI converges in a
    # few thousand steps; on the raw scale (intercept ~26, slope ~0.6, correlation -0.99) it
    # needs far more.
    alpha = ppgen.sample("alpha", dist.Normal(0.0, 10.0))
    beta = ppgen.sample("beta", dist.Normal(0.0, 10.0))
    sigma = ppgen.sample("sigma", dist.HalfCauchy(2.5))
    with ppgen.plate("children", mom_iq.shape[0]):
        ppgen.sample("kid_score", dist.Normal(alpha + beta * mom_iq, sigma), obs=kid_score)


# -- ar5 -----------------------------------------------------------------------------------------
def _ar5_data() -> dict[str, Any]:
    raw = load_posteriordb("arK")
    y = np.asarray(raw["y"], np.float32)
    k = int(raw["K"])
    # Column j holds y[t - j - 1] for t = K .. T-1: the lags of every modelled observation.
    lags = np.stack([y[k - j - 1 : len(y) - j - 1] for j in range(k)], axis=-1)
    return {"lags": lags, "y": y[k:]}


@ppgen.model(data=_ar5_data)
def ar5(lags: Any, y: Any = None) -> None:
    """AR(5) time series (posteriordb arK, 200 values): y_t ~ N(alpha + sum_k beta_k y_{t-k},
    sigma)."""
    k = lags.shape[-1]
    alpha = ppgen.sample("alpha", dist.Normal(0.0, 10.0))
    beta = ppgen.sample(
        "beta", dist.Normal(ppgen.ops.zeros(k), 10.0 * ppgen.ops.ones(k)).to_event(1)
    )
    sigma = ppgen.sample("sigma", dist.HalfCauchy(2.5))
    with ppgen.plate("time", lags.shape[0]):
        # A sum over the last axis (not a matmul) so that particle dimensions broadcast.
        mean = alpha + ppgen.ops.sum(lags * beta, -1)
        ppgen.sample("y", dist.Normal(mean, sigma), obs=y)


# -- corr_gauss ----------------------------------------------------------------------------------
#: Correlation of the two coordinates of ``corr_gauss`` (unit variances).
CORR_GAUSS_RHO = 0.95


def _corr_gauss_cov() -> np.ndarray:
    return np.array([[1.0, CORR_GAUSS_RHO], [CORR_GAUSS_RHO, 1.0]])


@ppgen.model(data=lambda: (), auto="normal")
def corr_gauss() -> None:
    """A 2-D Gaussian target, unit variances, correlation 0.95 (mean-field under-disperses)."""
    ppgen.sample(
        "z",
        dist.MultivariateNormal(
            ppgen.ops.zeros(2), covariance_matrix=ppgen.ops.asarray(_corr_gauss_cov())
        ),
    )


@corr_gauss.exact
def _corr_gauss_exact() -> dict[str, Marginal]:
    frozen = stats.multivariate_normal(np.zeros(2), _corr_gauss_cov())
    return {
        "z": Marginal(
            mean=np.zeros(2),
            sd=np.ones(2),
            sample=lambda n, seed: np.asarray(frozen.rvs(size=n, random_state=seed)).reshape(n, 2),
        )
    }
