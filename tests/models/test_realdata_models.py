"""kidiq, ar5 and corr_gauss: registered, shipped data, both backends, vectorized particles."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.data import load_posteriordb


def test_registered_with_shipped_data() -> None:
    assert {"kidiq", "ar5", "corr_gauss"} <= set(ppgen.list_models())
    kid = ppgen.get_model("kidiq").bind(None).kwargs
    assert kid["mom_iq"].shape == kid["kid_score"].shape == (434,)
    # Standardized: mean 0, sd 1.
    np.testing.assert_allclose([kid["kid_score"].mean(), kid["kid_score"].std()], [0, 1], atol=1e-5)
    ar = ppgen.get_model("ar5").bind(None).kwargs
    y = np.asarray(load_posteriordb("arK")["y"])
    assert ar["lags"].shape == (195, 5) and ar["y"].shape == (195,)
    # Row t holds y[t+4], y[t+3], ..., y[t]: the five values before y[t+5].
    np.testing.assert_array_equal(ar["lags"][0], y[4::-1])
    np.testing.assert_array_equal(ar["y"][:3], y[5:8])


@pytest.mark.parametrize(
    ("name", "backend"),
    # Particles broadcast through Pyro's outer plate (NumPyro vmaps them, which always works);
    # one NumPyro fit keeps the JIT compile time of the suite down.
    [("kidiq", "pyro"), ("ar5", "pyro"), ("corr_gauss", "pyro"), ("ar5", "numpyro")],
)
def test_fits_with_vectorized_particles(name: str, backend: str) -> None:
    result = ppgen.fit(name, backend=backend, steps=20, particles=3, progress=False)
    assert np.all(np.isfinite(result.losses))
    draws = result.posterior_samples(50, seed=0)
    shapes = {k: v.shape for k, v in draws.items()}
    expected = {
        "kidiq": {"alpha": (50,), "beta": (50,), "sigma": (50,)},
        "ar5": {"alpha": (50,), "beta": (50, 5), "sigma": (50,)},
        "corr_gauss": {"z": (50, 2)},
    }[name]
    assert shapes == expected


def test_corr_gauss_exact_posterior() -> None:
    exact = ppgen.get_model("corr_gauss").exact_posterior()["z"]
    draws = exact.sample(20000, 0)
    assert draws.shape == (20000, 2)
    np.testing.assert_allclose(np.corrcoef(draws.T)[0, 1], 0.95, atol=0.005)
    np.testing.assert_allclose(draws.std(0), exact.sd, atol=0.02)


@pytest.mark.slow
def test_ar5_mean_field_underdisperses_against_nuts() -> None:
    comparison = ppgen.compare(
        "ar5",
        methods={"mean-field": "reparam:auto_normal", "full-rank": "reparam:auto_mvn"},
        reference="nuts",
        steps=3000,
        particles=4,
        lr=0.05,
        options={"reparam": {"lr_decay": 0.05}},
        num_samples=2000,
        progress=False,
    )
    for k in range(5):
        assert comparison.row("mean-field", f"beta[{k}]").sd_ratio < 0.5
        assert abs(comparison.row("full-rank", f"beta[{k}]").sd_ratio - 1) < 0.15
        assert abs(comparison.row("full-rank", f"beta[{k}]").std_error) < 0.2
    assert comparison.method("nuts").r_hat_max < 1.01
    assert comparison.method("mean-field").khat > comparison.method("full-rank").khat
