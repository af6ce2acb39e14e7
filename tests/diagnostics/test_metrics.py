"""Sample-quality metrics checked against closed forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

import ppgen
from ppgen import dist
from ppgen.backends import get_backend
from ppgen.backends.base import SVIProblem
from ppgen.data import digits, digits_labels
from ppgen.diagnostics import metrics
from ppgen.errors import DataError, ModelError
from ppgen.modeling.model import BoundData


def test_one_d_quality_against_the_target() -> None:
    target = stats.norm(-1.0, 1.0)
    exact = metrics.one_d_quality(target.rvs(50_000, random_state=0), target)
    assert exact.w1 < 0.01 and exact.ks < 0.01
    assert (exact.target_mean, exact.target_sd) == (-1.0, 1.0)
    # A shift by 0.3 moves every quantile by 0.3: W1 = 0.3; KS = Phi(0.15) - Phi(-0.15).
    shifted = metrics.one_d_quality(target.rvs(50_000, random_state=1) + 0.3, target)
    assert shifted.w1 == pytest.approx(0.3, abs=0.01)
    assert shifted.ks == pytest.approx(stats.norm.cdf(0.15) - stats.norm.cdf(-0.15), abs=0.01)
    assert shifted.mean == pytest.approx(-0.7, abs=0.02)
    with pytest.raises(DataError, match="at least 2 finite samples"):
        metrics.one_d_quality([np.nan, 1.0], target)


def test_frechet_distance_of_gaussians() -> None:
    rng = np.random.default_rng(0)
    n, d = 200_000, 3
    a = rng.standard_normal((n, d))
    # N(m, diag(s^2)) against N(0, I): |m|^2 + sum (s - 1)^2.
    m, s = np.array([0.5, -1.0, 0.0]), np.array([1.0, 2.0, 0.5])
    b = m + s * rng.standard_normal((n, d))
    expected = m @ m + np.sum((s - 1.0) ** 2)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, abs=0.02)
    assert metrics.frechet_distance(a[: n // 2], a[n // 2 :]) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(DataError, match="same feature count"):
        metrics.frechet_distance(a, b[:, :2])


def test_digit_classifier_is_cached_and_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PPGEN_CACHE", str(tmp_path))
    x, y = digits(binarize=False, split="train")[:300], digits_labels(split="train")[:300]
    first = metrics.digit_classifier(x, y, hidden=8)
    files = list(tmp_path.glob("digit-classifier-*.npz"))
    assert len(files) == 1
    metrics._LOADED.clear()
    again = metrics.digit_classifier(x, y, hidden=8)  # read back from the file
    assert again is not first and np.array_equal(again.w1, first.w1)
    metrics._LOADED.clear()
    files[0].unlink()
    retrained = metrics.digit_classifier(x, y, hidden=8)
    assert np.array_equal(retrained.w1, first.w1)  # L-BFGS from a seeded start
    assert retrained.features(x).shape == (300, 8)


def test_digits_quality_of_real_digits() -> None:
    clf = metrics.digit_classifier()
    test = digits(binarize=False, split="test")
    assert clf.accuracy(test, digits_labels(split="test")) > 0.95
    coverage = metrics.class_coverage(test, clf)
    assert coverage.sum() == pytest.approx(1.0) and np.all((coverage > 0.05) & (coverage < 0.15))
    # Real training images against the test split: the floor itself, ratio 1.
    real = metrics.digits_quality(digits(binarize=False, split="train"))
    assert real.frechet == pytest.approx(real.floor) and 0.3 < real.floor < 1.0
    noise = metrics.digits_quality(np.random.default_rng(0).random((1437, 64)))
    assert noise.ratio > 10
    assert set(noise.to_dict()) >= {"frechet_classifier_distance", "class_coverage"}


def test_bernoulli_baseline() -> None:
    train = np.array([[1, 0], [1, 1], [0, 0]], float)  # smoothed p = (3/5, 2/5)
    test = np.array([[1, 1]], float)
    assert metrics.bernoulli_baseline_nll(train, test) == pytest.approx(-np.log(0.6 * 0.4))


# -- held-out likelihood on a model whose evidence is known -------------------------------------
# z_i ~ N(0, 1), x_i | z_i ~ N(z_i, 1), so p(x_i) = N(x_i; 0, sqrt 2) and p(z_i | x_i) =
# N(x_i / 2, 1 / sqrt 2).
def local_model(x: Any) -> None:
    with ppgen.plate("data", x.shape[0]):
        z = ppgen.sample("z", dist.Normal(0.0, 1.0))
        ppgen.sample("x", dist.Normal(z, 1.0), obs=x)


def exact_guide(x: Any) -> None:
    with ppgen.plate("data", x.shape[0]):
        ppgen.sample("z", dist.Normal(x / 2.0, 2.0**-0.5))


def prior_guide(x: Any) -> None:
    with ppgen.plate("data", x.shape[0]):
        ppgen.sample("z", dist.Normal(ppgen.ops.zeros(x.shape[0]), 1.0))


def test_heldout_log_likelihood_is_exact_with_the_posterior(backend: str) -> None:
    be = get_backend(backend)
    x = np.array([-1.5, 0.0, 0.5, 1.0], np.float32)
    log_px = stats.norm(0.0, np.sqrt(2.0)).logpdf(x)

    def problems(guide: Any) -> list[SVIProblem]:
        return [
            SVIProblem(local_model, guide, BoundData((x[i : i + 2],), {}), "cpu") for i in (0, 2)
        ]

    state = be.load_state(problems(exact_guide)[0], {})
    exact = metrics.heldout_log_likelihood(be, state, problems(exact_guide), particles=50)
    # The exact posterior makes every log weight equal log p(x): ELBO = log-likelihood.
    np.testing.assert_allclose(exact.elbo, log_px, atol=1e-4)
    np.testing.assert_allclose(exact.nll, -log_px, atol=1e-4)
    prior = metrics.heldout_log_likelihood(
        be, state, problems(prior_guide), particles=2000, particle_chunk=500
    )
    # With the prior as proposal the ELBO is loose (by KL(prior || posterior)); K = 2000
    # importance samples recover log p(x) closely.
    kl = np.log(2.0**-0.5) + (1.0 + (x / 2.0) ** 2) / (2 * 0.5) - 0.5
    np.testing.assert_allclose(prior.elbo, log_px - kl, atol=0.15)
    np.testing.assert_allclose(prior.nll, -log_px, atol=0.05)
    assert prior.particles == 2000 and prior.nll_mean == pytest.approx(-log_px.mean(), abs=0.05)


def global_model(x: Any) -> None:
    mu = ppgen.sample("mu", dist.Normal(0.0, 1.0))
    with ppgen.plate("data", x.shape[0]):
        ppgen.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_guide(x: Any) -> None:
    ppgen.sample("mu", dist.Normal(0.0, 1.0))


def test_heldout_log_likelihood_needs_local_sites() -> None:
    be = get_backend("pyro")
    problem = SVIProblem(
        global_model, global_guide, BoundData((np.zeros(3, np.float32),), {}), "cpu"
    )
    state = be.load_state(problem, {})
    with pytest.raises(ModelError, match="'mu' is not inside plate 'data'"):
        metrics.heldout_log_likelihood(be, state, [problem], particles=4)
