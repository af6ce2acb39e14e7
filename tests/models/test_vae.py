"""The VAE: one definition, both backends, held-out likelihood below the trivial baseline."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.data import digits
from ppgen.diagnostics.metrics import bernoulli_baseline_nll
from ppgen.errors import ConfigError
from ppgen.models.vae import vae_quality


@pytest.fixture(scope="module")
def baseline() -> float:
    """Independent Bernoulli pixels at the training frequencies: about 24.5 nats per test image."""
    return bernoulli_baseline_nll(digits(split="train"), digits(split="test"))


def test_vae_beats_independent_bernoulli(backend: str, baseline: float) -> None:
    assert baseline == pytest.approx(24.49, abs=0.01)
    result = ppgen.fit("vae", backend=backend, steps=500, lr=3e-3, progress=False, seed=0)
    assert result.losses.shape == (500,) and np.all(np.isfinite(result.losses))
    held = vae_quality(result, digits(split="test"), particles=100)
    # A VAE that ignores z reaches the baseline; one that uses z is clearly below it.
    assert held.neg_elbo < baseline - 3.0
    # The importance-sampled NLL is a tighter bound: it sits below the -ELBO.
    assert held.nll_mean < held.neg_elbo
    assert held.elbo.shape == held.nll.shape == (360,)


def test_vae_vectorized_particles_and_gaussian_likelihood() -> None:
    # Pyro vectorizes particles with an outer plate, so the model must broadcast over it
    # (NumPyro vmaps the model, which always works).
    x = digits(binarize=False, split="train")[:256]
    data = {"x": x, "likelihood": "gaussian", "z_dim": 2, "hidden": 16, "batch": 64}
    result = ppgen.fit("vae", data, backend="pyro", steps=30, particles=3, progress=False)
    assert np.all(np.isfinite(result.losses))
    assert result.losses[-5:].mean() < result.losses[:5].mean()
    z = result.posterior_samples(num_samples=7)["z"]
    assert z.shape == (7, 64, 2)


def test_vae_rejects_unknown_likelihood(backend: str) -> None:
    data = {"x": digits(split="train")[:64], "likelihood": "poisson"}
    with pytest.raises(ConfigError, match="Unknown likelihood 'poisson'"):
        ppgen.fit("vae", data, backend=backend, steps=5, progress=False)


def test_analytic_kl_estimates_the_same_elbo(backend: str) -> None:
    from ppgen.backends import get_backend
    from ppgen.inference.reparam import analytic_kl_objective, elbo_particles

    x = digits(split="test")[:40]
    data = {"x": x, "z_dim": 2, "hidden": 16, "batch": None}
    result = ppgen.fit("vae", data, backend=backend, steps=1, progress=False, analytic_kl=True)
    be = get_backend(backend)

    def both(b: object, tr: object) -> tuple[object, object]:
        return elbo_particles(b, tr), -analytic_kl_objective(b, tr)[0]

    mc, analytic = be.trace_eval(result.problem, result.state, both, 400, seed=0)
    # Same expectation; the closed-form KL only removes part of the Monte Carlo noise.
    se = mc.std() / np.sqrt(len(mc))
    assert abs(mc.mean() - float(analytic)) < 4 * se
    with pytest.raises(ConfigError, match="analytic_kl=True replaces"):
        ppgen.fit("vae", data, backend=backend, steps=1, analytic_kl=True, iwae=5)
