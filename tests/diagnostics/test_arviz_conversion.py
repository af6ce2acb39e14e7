"""ArviZ conversion of every fit, pointwise log-likelihoods, and the PSIS k-hat wrapper."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import ppgen
from ppgen.backends import get_backend
from ppgen.diagnostics import arviz as ppaz
from ppgen.diagnostics.compare import flatten_draws, khat_verdict

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def _methods() -> list[str]:
    # Every registered method that fits eight_schools (score only once it is registered).
    return [m for m in ("reparam", "score", "nuts") if m in ppgen.list_methods()]


@pytest.mark.parametrize("method", _methods())
def test_to_arviz_passes_summary_and_loo(method: str, eight_schools_nuts: ppgen.FitResult) -> None:
    if method == "nuts":
        result = eight_schools_nuts
    else:
        result = ppgen.fit("eight_schools", method=method, steps=150, progress=False)
    idata = result.to_arviz(num_samples=400, seed=1)
    chains, draws = (4, 1000) if method == "nuts" else (1, 400)
    assert {"posterior", "log_likelihood", "posterior_predictive", "observed_data"} <= set(
        idata.groups()
    )
    assert idata.posterior["theta"].shape == (chains, draws, 8)  # deterministic site included
    assert idata.log_likelihood["y"].shape == (chains, draws, 8)
    assert idata.posterior_predictive["y"].shape == (chains, draws, 8)
    np.testing.assert_array_equal(idata.observed_data["y"], [28, 8, -3, 7, -1, 1, 18, 12])
    assert "sigma" in idata.constant_data
    if method == "nuts":
        assert idata.sample_stats["diverging"].shape == (4, 1000)
        assert {"acceptance_rate", "energy", "n_steps"} <= set(idata.sample_stats)
        assert np.all(az.bfmi(idata) > 0.3)  # energy transitions explore the posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata)
        loo = az.loo(idata)
    assert "theta[7]" in table.index and np.all(np.isfinite(table["mean"]))
    assert np.isfinite(loo.elpd_loo) and loo.se > 0


def test_log_likelihood_is_exact_and_same_on_both_backends() -> None:
    rng = np.random.default_rng(0)
    samples = {
        "mu": rng.normal(4.0, 3.0, 300).astype(np.float32),
        "tau": rng.gamma(2.0, 2.0, 300).astype(np.float32),
        "theta_tilde": rng.normal(size=(300, 8)).astype(np.float32),
    }
    data = ppgen.get_model("eight_schools").bind(None).kwargs
    theta = samples["mu"][:, None] + samples["tau"][:, None] * samples["theta_tilde"]
    exact = stats.norm(theta, data["sigma"]).logpdf(data["y"])
    out = {}
    for name in ("numpyro", "pyro"):
        result = ppgen.fit("eight_schools", backend=name, steps=1, progress=False)
        out[name] = get_backend(name).predictive(result.problem, result.state, samples, seed=0)
        np.testing.assert_allclose(out[name].log_likelihood["y"], exact, rtol=1e-5, atol=1e-4)
        # Replicates are draws around each theta with the school's sigma.
        resid = (out[name].replicates["y"] - theta) / data["sigma"]
        assert abs(resid.mean()) < 0.05 and abs(resid.std() - 1) < 0.05


def test_importance_weights_recover_the_evidence(backend: str) -> None:
    # normal_normal's guide family holds the exact posterior, so after fitting the importance
    # ratios p(x, z) / q(z) are nearly constant and average to the exact evidence p(x).
    result = ppgen.fit(
        "normal_normal",
        backend=backend,
        steps=1500,
        particles=8,
        lr=0.02,
        lr_decay=0.05,
        progress=False,
    )
    weights = get_backend(backend).importance_draws(result.problem, result.state, 2000, seed=3)
    x = np.asarray(result.problem.data.args[0], np.float64)
    n = len(x)
    # x ~ N(0, I + 25 * 11^T): the evidence of the Normal(0, 5) prior and unit noise.
    exact = stats.multivariate_normal(np.zeros(n), np.eye(n) + 25.0 * np.ones((n, n))).logpdf(x)
    lw = weights.log_weights
    estimate = np.logaddexp.reduce(lw) - np.log(len(lw))
    assert weights.log_joint.shape == weights.log_guide.shape == (2000,)
    assert lw.std() < 0.1
    assert abs(estimate - exact) < 0.01
    assert ppaz.psis_khat(lw) < 0.5


def test_psis_khat_matches_gaussian_theory() -> None:
    # q = N(0, 1), p = N(0, s^2): the ratios have a Pareto tail with k = 1 - 1/s^2 when s > 1,
    # and are bounded (k < 0) when s < 1.
    z = np.random.default_rng(0).standard_normal(20000)
    wide = stats.norm(0, 2.0).logpdf(z) - stats.norm.logpdf(z)
    narrow = stats.norm(0, 0.7).logpdf(z) - stats.norm.logpdf(z)
    assert 0.6 < ppaz.psis_khat(wide) < 0.9  # theory 0.75
    assert ppaz.psis_khat(narrow) < 0.2
    assert ppaz.psis_khat(np.array([0.0, np.nan, 1.0])) == np.inf


def test_khat_verdicts_follow_yao_et_al() -> None:
    assert [khat_verdict(k) for k in (0.1, 0.49, 0.5, 0.69, 0.7, 3.0)] == [
        "good",
        "good",
        "ok",
        "ok",
        "unreliable",
        "unreliable",
    ]
    assert khat_verdict(float("nan")) == "n/a"


def test_flat_labels_match_arviz_summary() -> None:
    draws = {"mu": np.arange(6.0), "L": np.arange(24.0).reshape(6, 2, 2)}
    flat = flatten_draws(draws)
    assert list(flat) == ["mu", "L[0, 0]", "L[0, 1]", "L[1, 0]", "L[1, 1]"]
    np.testing.assert_array_equal(flat["L[1, 0]"], draws["L"][:, 1, 0])
    idata = ppaz.from_draws({k: v.astype(np.float64) for k, v in draws.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(az.summary(idata, kind="stats").index) == list(flat)
