"""Classic Bayesian models, written once with ppgen primitives (they run on both backends).

The conjugate ones (``coin``, ``normal_normal``, ``linreg``) carry their exact posterior, so that
tests and comparisons can measure every method against the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

import ppgen
from ppgen import dist
from ppgen.data import coin_flips, linreg_data, load_posteriordb, logistic_data, normal_normal_data
from ppgen.modeling.model import Marginal

__all__ = ["coin", "eight_schools", "linreg", "logistic", "normal_normal"]


def _marginal(frozen: Any) -> Marginal:
    return Marginal(
        mean=np.asarray(frozen.mean()),
        sd=np.asarray(frozen.std()),
        sample=lambda n, seed: np.asarray(frozen.rvs(size=n, random_state=seed)),
    )


# -- coin ----------------------------------------------------------------------------------------
COIN_PRIOR = (10.0, 10.0)


@ppgen.model(data=lambda: coin_flips(20, p=0.7, seed=0))
def coin(flips: Any) -> None:
    """Fairness of a coin: Beta(10, 10) prior, Bernoulli flips."""
    p = ppgen.sample("p", dist.Beta(*COIN_PRIOR))
    with ppgen.plate("flips", flips.shape[0]):
        ppgen.sample("obs", dist.Bernoulli(p), obs=flips)


@coin.guide
def coin_beta(flips: Any) -> None:
    """Beta guide with learnable concentrations (the family of the exact posterior)."""
    a = ppgen.param("alpha_q", 15.0, constraint=dist.constraints.positive)
    b = ppgen.param("beta_q", 15.0, constraint=dist.constraints.positive)
    ppgen.sample("p", dist.Beta(a, b))


@coin.exact
def _coin_exact(flips: Any) -> dict[str, Marginal]:
    heads = float(np.sum(flips))
    a, b = COIN_PRIOR[0] + heads, COIN_PRIOR[1] + len(flips) - heads
    return {"p": _marginal(stats.beta(a, b))}


# -- normal_normal -------------------------------------------------------------------------------
NN_PRIOR_SD = 5.0
NN_NOISE = 1.0


@ppgen.model(data=lambda: normal_normal_data(20, mu=1.5, sigma=NN_NOISE, seed=0))
def normal_normal(x: Any) -> None:
    """Unknown mean of Normal data with known noise sd 1; Normal(0, 5) prior on the mean."""
    mu = ppgen.sample("mu", dist.Normal(0.0, NN_PRIOR_SD))
    with ppgen.plate("data", x.shape[0]):
        ppgen.sample("x", dist.Normal(mu, NN_NOISE), obs=x)


@normal_normal.guide
def normal_normal_guide(x: Any) -> None:
    """Normal guide on the mean."""
    loc = ppgen.param("mu_loc", 0.0)
    scale = ppgen.param("mu_scale", 1.0, constraint=dist.constraints.positive)
    ppgen.sample("mu", dist.Normal(loc, scale))


@normal_normal.exact
def _normal_normal_exact(x: Any) -> dict[str, Marginal]:
    precision = 1.0 / NN_PRIOR_SD**2 + len(x) / NN_NOISE**2
    mean = float(np.sum(x)) / NN_NOISE**2 / precision
    return {"mu": _marginal(stats.norm(mean, precision**-0.5))}


def _normal_normal_neg_elbo_grad(params: dict[str, np.ndarray], x: Any) -> dict[str, np.ndarray]:
    """Exact gradient of the negative ELBO of ``normal_normal_guide`` with respect to
    ``mu_loc`` and ``log(mu_scale)``: with ``q = N(m, s^2)`` the ELBO is
    ``-(sum (x_i - m)^2 + n s^2) / (2 sigma^2) - (m^2 + s^2) / (2 tau^2) + log s`` + const."""
    x64 = np.asarray(x, np.float64)
    m, s = float(params["mu_loc"]), float(params["mu_scale"])
    n = len(x64)
    return {
        "mu_loc": np.asarray(m / NN_PRIOR_SD**2 - float(np.sum(x64 - m)) / NN_NOISE**2),
        "mu_scale": np.asarray(n * s**2 / NN_NOISE**2 + s**2 / NN_PRIOR_SD**2 - 1.0),
    }


# Read by ppgen.gradvar as the reference gradient of this guide.
normal_normal.extras["neg_elbo_grad"] = {"normal_normal_guide": _normal_normal_neg_elbo_grad}


# -- linreg --------------------------------------------------------------------------------------
LINREG_PRIOR_SD = 1.0
LINREG_NOISE = 0.5


@ppgen.model(data=lambda: linreg_data(100, d=3, noise=LINREG_NOISE, seed=0))
def linreg(X: Any, y: Any) -> None:
    """Bayesian linear regression, known noise sd 0.5, Normal(0, 1) prior on the weights."""
    d = X.shape[1]
    w = ppgen.sample(
        "w", dist.Normal(ppgen.ops.zeros(d), LINREG_PRIOR_SD * ppgen.ops.ones(d)).to_event(1)
    )
    with ppgen.plate("data", X.shape[0]):
        # X * w broadcasts over particle dimensions (matmul would not).
        ppgen.sample("y", dist.Normal(ppgen.ops.sum(X * w, -1), LINREG_NOISE), obs=y)


@linreg.guide
def linreg_full_rank(X: Any, y: Any) -> None:
    """Full-rank Gaussian guide (the family of the exact posterior)."""
    d = X.shape[1]
    loc = ppgen.param("w_loc", np.zeros(d))
    tril = ppgen.param("w_scale_tril", 0.1 * np.eye(d), constraint=dist.constraints.lower_cholesky)
    ppgen.sample("w", dist.MultivariateNormal(loc, scale_tril=tril))


@linreg.exact
def _linreg_exact(X: Any, y: Any) -> dict[str, Marginal]:
    X64, y64 = np.asarray(X, np.float64), np.asarray(y, np.float64)
    precision = np.eye(X64.shape[1]) / LINREG_PRIOR_SD**2 + X64.T @ X64 / LINREG_NOISE**2
    cov = np.linalg.inv(precision)
    mean = cov @ X64.T @ y64 / LINREG_NOISE**2
    frozen = stats.multivariate_normal(mean, cov)
    return {
        "w": Marginal(
            mean=mean,
            sd=np.sqrt(np.diag(cov)),
            sample=lambda n, seed: np.asarray(frozen.rvs(size=n, random_state=seed)).reshape(n, -1),
        )
    }


# -- logistic ------------------------------------------------------------------------------------
@ppgen.model(data=lambda: logistic_data(200, d=3, seed=0))
def logistic(X: Any, y: Any) -> None:
    """Bayesian logistic regression: Normal(0, 1) priors on weights and bias."""
    d = X.shape[1]
    w = ppgen.sample("w", dist.Normal(ppgen.ops.zeros(d), ppgen.ops.ones(d)).to_event(1))
    b = ppgen.sample("b", dist.Normal(0.0, 1.0))
    with ppgen.plate("data", X.shape[0]):
        ppgen.sample("y", dist.Bernoulli(logits=ppgen.ops.sum(X * w, -1) + b), obs=y)


# -- eight_schools -------------------------------------------------------------------------------
def _eight_schools_data() -> dict[str, Any]:
    raw = load_posteriordb("eight_schools")
    return {"sigma": np.asarray(raw["sigma"], np.float32), "y": np.asarray(raw["y"], np.float32)}


@ppgen.model(data=_eight_schools_data)
def eight_schools(sigma: Any, y: Any = None) -> None:
    """Eight schools (Rubin 1981), non-centered: theta = mu + tau * theta_tilde."""
    mu = ppgen.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppgen.sample("tau", dist.HalfCauchy(5.0))
    with ppgen.plate("schools", sigma.shape[0]):
        theta_tilde = ppgen.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = ppgen.deterministic("theta", mu + tau * theta_tilde)
        ppgen.sample("y", dist.Normal(theta, sigma), obs=y)
