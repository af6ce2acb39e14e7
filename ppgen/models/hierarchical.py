"""A hierarchical Normal model whose ELBO and posterior are known in closed form.

``hier_normal``: a global mean with a wide prior, 20 local means around it, one observation of
each. It is the test bed of the gradient-variance lab: the mean-field guide's ELBO gradient is
exact (see :func:`neg_elbo_grad`), and the global mean's score term is multiplied by costs from
all 20 groups, which is where Rao-Blackwellization, baselines and control variates matter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

import ppgen
from ppgen import dist
from ppgen.modeling.model import Marginal

__all__ = ["GROUPS", "PRIOR_SD", "hier_normal", "neg_elbo_grad"]

PRIOR_SD = 10.0
GROUPS = 20


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    z = 3.0 + rng.normal(size=GROUPS)
    return (z + rng.normal(size=GROUPS)).astype(np.float32)


@ppgen.model(data=_data)
def hier_normal(x: Any) -> None:
    """Hierarchical Normal: mu ~ Normal(0, 10); z_i ~ Normal(mu, 1); x_i ~ Normal(z_i, 1)."""
    mu = ppgen.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with ppgen.plate("groups", x.shape[0]):
        z = ppgen.sample("z", dist.Normal(mu, 1.0))
        ppgen.sample("x", dist.Normal(z, 1.0), obs=x)


@hier_normal.guide
def mean_field(x: Any) -> None:
    """Mean-field Normal guide: one Normal for mu, one per group mean."""
    n = x.shape[0]
    mu_loc = ppgen.param("mu_loc", 0.0)
    mu_scale = ppgen.param("mu_scale", 1.0, constraint=dist.constraints.positive)
    ppgen.sample("mu", dist.Normal(mu_loc, mu_scale))
    z_loc = ppgen.param("z_loc", np.zeros(n, np.float32))
    z_scale = ppgen.param("z_scale", np.ones(n, np.float32), constraint=dist.constraints.positive)
    with ppgen.plate("groups", n):
        ppgen.sample("z", dist.Normal(z_loc, z_scale))


def _posterior(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``(mu, z_1, ..., z_n)`` given ``x`` (all Gaussian)."""
    x64 = np.asarray(x, np.float64)
    n = len(x64)
    precision = np.zeros((n + 1, n + 1))
    precision[0, 0] = 1.0 / PRIOR_SD**2 + n
    precision[0, 1:] = precision[1:, 0] = -1.0
    precision[1:, 1:] = 2.0 * np.eye(n)
    cov = np.linalg.inv(precision)
    return cov @ np.concatenate([[0.0], x64]), cov


@hier_normal.exact
def _exact(x: Any) -> dict[str, Marginal]:
    mean, cov = _posterior(x)
    sd = np.sqrt(np.diag(cov))
    joint = stats.multivariate_normal(mean, cov)

    def draw(n: int, seed: int, which: int | slice) -> np.ndarray:
        return np.asarray(joint.rvs(size=n, random_state=seed)).reshape(n, -1)[:, which]

    return {
        "mu": Marginal(np.asarray(mean[0]), np.asarray(sd[0]), lambda n, s: draw(n, s, 0)),
        "z": Marginal(mean[1:], sd[1:], lambda n, s: draw(n, s, slice(1, None))),
    }


def neg_elbo_grad(params: dict[str, np.ndarray], x: Any) -> dict[str, np.ndarray]:
    """The exact gradient of the negative ELBO of ``mean_field`` with respect to its
    unconstrained parameters (locations as they are, scales through ``log``).

    With ``q(mu) = N(m, s^2)`` and ``q(z_i) = N(a_i, b_i^2)`` every expectation in the ELBO is
    closed-form: ``E[log p(mu)] = -(m^2 + s^2) / (2 tau^2)``,
    ``E[log p(z_i | mu)] = -((a_i - m)^2 + b_i^2 + s^2) / 2``,
    ``E[log p(x_i | z_i)] = -((x_i - a_i)^2 + b_i^2) / 2`` and the entropy is
    ``log s + sum_i log b_i`` (constants dropped).
    """
    x64 = np.asarray(x, np.float64)
    m, s = float(params["mu_loc"]), float(params["mu_scale"])
    a = np.asarray(params["z_loc"], np.float64)
    b = np.asarray(params["z_scale"], np.float64)
    n, tau2 = len(x64), PRIOR_SD**2
    return {
        "mu_loc": np.asarray(m / tau2 - np.sum(a - m)),
        "mu_scale": np.asarray(s**2 / tau2 + n * s**2 - 1.0),
        "z_loc": (a - m) - (x64 - a),
        "z_scale": 2.0 * b**2 - 1.0,
    }


hier_normal.extras["neg_elbo_grad"] = {"mean_field": neg_elbo_grad}
