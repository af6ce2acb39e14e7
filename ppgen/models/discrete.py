"""A model with a discrete latent variable per data point, and its exact posterior.

``two_gaussians``: each point comes from one of two unit-variance Normals with known means; the
latent assignment ``z_i`` is Bernoulli. Its guide carries one assignment probability per point,
a family that contains the exact posterior, so a good fit recovers it exactly. The guide cannot
be reparameterized: ``method="reparam"`` refuses it and ``method="score"`` fits it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import ppgen
from ppgen import dist
from ppgen.modeling.model import Marginal

__all__ = ["LOCS", "POINTS", "WEIGHT", "exact_probs", "neg_elbo_grad", "two_gaussians"]

#: Means of component 0 and component 1, the prior probability of component 1, points.
LOCS = (-1.0, 1.0)
WEIGHT = 0.6
POINTS = 20


def _data() -> np.ndarray:
    rng = np.random.default_rng(1)
    z = rng.random(POINTS) < WEIGHT
    return (np.where(z, LOCS[1], LOCS[0]) + rng.normal(size=POINTS)).astype(np.float32)


@ppgen.model(data=_data)
def two_gaussians(x: Any) -> None:
    """Two-component mixture: z_i ~ Bernoulli(0.6); x_i ~ Normal(-1 if z_i = 0 else 1, 1)."""
    with ppgen.plate("data", x.shape[0]):
        z = ppgen.sample("z", dist.Bernoulli(WEIGHT))
        ppgen.sample("x", dist.Normal(LOCS[0] + (LOCS[1] - LOCS[0]) * z, 1.0), obs=x)


@two_gaussians.guide
def assignments(x: Any) -> None:
    """One assignment probability per point (the family of the exact posterior)."""
    n = x.shape[0]
    probs = ppgen.param(
        "assign_probs", np.full(n, 0.5, np.float32), constraint=dist.constraints.unit_interval
    )
    with ppgen.plate("data", n):
        ppgen.sample("z", dist.Bernoulli(probs))


def _log_odds(x: Any) -> np.ndarray:
    """Log posterior odds of component 1 for each point."""
    x64 = np.asarray(x, np.float64)
    lik = ((x64 - LOCS[0]) ** 2 - (x64 - LOCS[1]) ** 2) / 2.0
    return math.log(WEIGHT / (1.0 - WEIGHT)) + lik


def exact_probs(x: Any) -> np.ndarray:
    """The exact posterior probability of component 1 for each point."""
    return 1.0 / (1.0 + np.exp(-_log_odds(x)))


@two_gaussians.exact
def _exact(x: Any) -> dict[str, Marginal]:
    p = exact_probs(x)

    def draw(n: int, seed: int) -> np.ndarray:
        return (np.random.default_rng(seed).random((n, len(p))) < p).astype(np.float64)

    return {"z": Marginal(p, np.sqrt(p * (1.0 - p)), draw)}


def neg_elbo_grad(params: dict[str, np.ndarray], x: Any) -> dict[str, np.ndarray]:
    """The exact (enumerated) gradient of the negative ELBO of ``assignments`` with respect to
    the unconstrained parameters ``u_i = logit(p_i)``.

    Each point contributes ``p L1 + (1 - p) L0 + H(p)`` with ``L_k = log p(z = k, x_i)``, whose
    derivative in ``p`` is ``(L1 - L0) - logit(p)``; the chain rule adds ``p (1 - p)``.
    """
    p = np.asarray(params["assign_probs"], np.float64)
    logit = np.log(p) - np.log1p(-p)
    return {"assign_probs": -p * (1.0 - p) * (_log_odds(x) - logit)}


two_gaussians.extras["neg_elbo_grad"] = {"assignments": neg_elbo_grad}
