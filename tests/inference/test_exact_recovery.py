"""Every fitting route recovers the exact posterior of the conjugate models, on both backends.

Acceptance: each posterior mean within 0.1 posterior sd of the exact mean, each sd within 10%.
The Monte Carlo error of the checks themselves is small: 20,000 guide draws put the standard
error of a VI mean at 0.007 sd and of an sd at 0.5%; NUTS uses 4,000 draws (2 chains).
"""

from __future__ import annotations

import numpy as np
import pytest

import ppgen

MODELS = ["coin", "normal_normal", "linreg"]
ROUTES = ["guide", "auto", "nuts"]


def _fit(name: str, backend: str, route: str) -> ppgen.FitResult:
    if route == "nuts":
        return ppgen.fit(
            name,
            method="nuts",
            backend=backend,
            progress=False,
            num_warmup=500,
            num_samples=2000,
            num_chains=2,
        )
    return ppgen.fit(
        name,
        backend=backend,
        guide=None if route == "guide" else "auto",
        steps=3000,
        particles=8,
        lr=0.02,
        lr_decay=0.05,
        progress=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", MODELS)
def test_recovers_exact_posterior(name: str, route: str, backend: str) -> None:
    result = _fit(name, backend, route)
    exact = ppgen.get_model(name).exact_posterior()
    draws = result.posterior_samples(num_samples=20000, seed=1)
    for site, marginal in exact.items():
        x = draws[site].reshape(len(draws[site]), -1)
        sd = marginal.sd.ravel()
        z = (x.mean(0) - marginal.mean.ravel()) / sd
        ratio = x.std(0, ddof=1) / sd
        assert np.all(np.abs(z) < 0.1), f"{site}: standardized mean error {z}"
        assert np.all(np.abs(ratio - 1) < 0.1), f"{site}: sd ratio {ratio}"
    if route == "nuts":
        assert result.draws is not None
        assert next(iter(result.draws.values())).shape[:2] == (2, 2000)
    else:
        assert result.losses.shape == (3000,)
        # The negative ELBO goes down: last tenth well below the first step.
        assert result.losses[-300:].mean() < result.losses[0]


def test_same_seed_same_result(backend: str) -> None:
    a = ppgen.fit("normal_normal", backend=backend, steps=50, seed=3, progress=False)
    b = ppgen.fit("normal_normal", backend=backend, steps=50, seed=3, progress=False)
    c = ppgen.fit("normal_normal", backend=backend, steps=50, seed=4, progress=False)
    np.testing.assert_array_equal(a.losses, b.losses)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.losses, c.losses)
    np.testing.assert_array_equal(
        a.posterior_samples(10, seed=0)["mu"], b.posterior_samples(10, seed=0)["mu"]
    )


def test_params_are_constrained_and_named(backend: str) -> None:
    result = ppgen.fit("coin", backend=backend, steps=20, progress=False)
    assert set(result.params) == {"alpha_q", "beta_q"}
    assert all(v > 0 for v in result.params.values())
    assert result.method == "reparam" and result.backend == backend and result.device == "cpu"
    assert result.timings.step_s > 0 and result.timings.total_s >= result.timings.compile_s


def test_eight_schools_deterministic_site_in_draws(backend: str) -> None:
    result = ppgen.fit("eight_schools", backend=backend, steps=30, progress=False)
    draws = result.posterior_samples(num_samples=100, seed=0)
    assert draws["theta"].shape == (100, 8)
    assert draws["mu"].shape == (100,)
    expected = draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_tilde"]
    np.testing.assert_allclose(draws["theta"], expected, rtol=1e-5, atol=1e-5)
