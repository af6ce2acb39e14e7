"""ppgen.compare: every method against an exact or NUTS reference, in one table and one figure.

Monte Carlo error of the checks: 4,000 guide draws put the standard error of a VI mean at 0.016
posterior sd and of an sd at 1.1%; NUTS (2 chains x 1,000 draws, ESS above 1,000) at most 0.03
sd and 2.2%, so the 0.1-sd and 10% acceptance bounds sit at more than 3 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.api import COMPARE_OPTIONS, _compare_specs
from ppgen.errors import ConfigError, ModelError, UnknownNameError

VI = {"steps": 3000, "particles": 8, "lr": 0.02}
OPTIONS = {
    "reparam": {"lr_decay": 0.05},
    "nuts": {"num_warmup": 500, "num_samples": 1000, "num_chains": 2},
}


def _conjugate(name: str, backend: str) -> ppgen.Comparison:
    return ppgen.compare(
        name,
        methods=["reparam", "nuts"],
        backend=backend,
        reference="exact",
        options=OPTIONS,
        progress=False,
        **VI,  # type: ignore[arg-type]
    )


def _check_conjugate(comparison: ppgen.Comparison) -> None:
    frame = comparison.to_frame()
    assert set(frame["method"]) == {"reparam", "nuts"}
    assert comparison.reference.kind == "exact"
    assert np.all(np.abs(frame["std_error"]) < 0.1), frame
    assert np.all(np.abs(frame["sd_ratio"] - 1) < 0.1), frame
    # W1 is a distance in the parameter's units: small against the posterior sd.
    assert np.all(frame["w1"] < 0.1 * frame["ref_sd"]), frame


@pytest.mark.parametrize(
    "name",
    # coin's Beta guide draws through a rejection sampler that takes JAX long to compile.
    [pytest.param("coin", marks=pytest.mark.slow), "normal_normal", "linreg"],
)
def test_conjugate_models_match_exact_reference(name: str) -> None:
    comparison = _conjugate(name, "numpyro")
    _check_conjugate(comparison)
    methods = comparison.to_frame("methods").set_index("method")
    # Exact guide families: the importance ratios are nearly constant.
    assert methods.loc["reparam", "khat"] < 0.5
    assert methods.loc["reparam", "khat_verdict"] == "good"
    assert methods.loc["nuts", "chains"] == 2 and methods.loc["nuts", "divergences"] == 0
    assert methods.loc["nuts", "r_hat_max"] < 1.01
    # Both fits predict the data alike: elpd within one standard error.
    elpd = methods["elpd_loo"]
    assert abs(elpd["reparam"] - elpd["nuts"]) < methods["elpd_loo_se"].max()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["coin", "normal_normal", "linreg"])
def test_conjugate_models_match_exact_reference_on_pyro(name: str) -> None:
    _check_conjugate(_conjugate(name, "pyro"))


def test_mean_field_underdisperses_on_correlated_gaussian() -> None:
    comparison = ppgen.compare(
        "corr_gauss",
        methods={"mean-field": "reparam:auto_normal", "full-rank": "reparam:auto_mvn"},
        steps=1500,
        particles=4,
        lr=0.02,
        options={"reparam": {"lr_decay": 0.1}},
        num_samples=2000,
        progress=False,
    )
    assert comparison.reference.kind == "exact"
    mean_field = [comparison.row("mean-field", f"z[{i}]") for i in (0, 1)]
    full_rank = [comparison.row("full-rank", f"z[{i}]") for i in (0, 1)]
    # The mean-field optimum has sd sqrt(1 - 0.95^2) = 0.31; full rank is exact.
    assert all(r.sd_ratio < 0.5 for r in mean_field)
    assert all(abs(r.sd_ratio - 1) < 0.15 for r in full_rank)
    assert comparison.method("mean-field").khat > comparison.method("full-rank").khat
    assert comparison.method("mean-field").khat_verdict == "unreliable"
    # No observed data: no log-likelihood, so no LOO.
    assert np.isnan(comparison.method("full-rank").elpd_loo)


def test_eight_schools_nuts_four_chains_converge(eight_schools_nuts: ppgen.FitResult) -> None:
    # The fixture runs NUTS as compare does (COMPARE_OPTIONS); the CLI test runs compare's own.
    assert COMPARE_OPTIONS["nuts"] == {"num_chains": 4, "target_accept": 0.9}
    comparison = ppgen.compare("eight_schools", methods=[eight_schools_nuts], progress=False)
    nuts = comparison.method("nuts")
    assert comparison.reference.kind == "nuts"
    assert nuts.chains == 4 and nuts.draws == 1000
    assert nuts.divergences == 0
    assert nuts.r_hat_max < 1.01
    assert nuts.ess_bulk_min > 400
    assert np.isfinite(nuts.elpd_loo)
    assert {"mu", "tau", "theta[0]", "theta_tilde[7]"} <= set(comparison.to_frame()["parameter"])


def test_report_table_and_forest_plot() -> None:
    fits = [
        ppgen.fit("normal_normal", steps=300, lr=0.05, progress=False),
        ppgen.fit("normal_normal", guide="auto_normal", steps=300, lr=0.05, progress=False),
    ]
    comparison = ppgen.compare("normal_normal", methods=fits, num_samples=500, progress=False)
    assert [m.method for m in comparison.methods] == [
        "reparam:normal_normal_guide",
        "reparam:auto_normal",
    ]
    frame = comparison.to_frame()
    assert list(frame.columns[:4]) == ["method", "parameter", "mean", "sd"]
    assert len(frame) == 2
    text = comparison.to_markdown()
    for word in ("# Posterior comparison: normal_normal", "std. error", "k-hat", "elpd LOO"):
        assert word in text
    fig = comparison.plot_forest()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(labels) == {"exact (reference)", *[m.method for m in comparison.methods]}
    assert "94% HDI" in ax.get_xlabel() and ax.get_title()


def test_default_methods_are_the_registered_ones() -> None:
    expected = [m for m in ("reparam", "score", "nuts") if m in ppgen.list_methods()]
    assert list(_compare_specs(None)) == expected


def test_bad_requests_fail_before_fitting() -> None:
    with pytest.raises(UnknownNameError, match="nutz"):
        ppgen.compare("coin", methods=["reparam", "nutz"], progress=False)
    with pytest.raises(ModelError, match="no guide"):
        ppgen.compare("coin", methods=["reparam:nope"], progress=False)
    with pytest.raises(ModelError, match="no exact posterior"):
        ppgen.compare("eight_schools", methods=["reparam"], reference="exact", progress=False)
    with pytest.raises(ConfigError, match="no option"):
        ppgen.compare("coin", methods=["nuts"], options={"nuts": {"chains": 4}}, progress=False)
    with pytest.raises(ConfigError, match="match no method"):
        ppgen.compare("coin", methods=["reparam"], options={"nuts": {}}, progress=False)
    with pytest.raises(ConfigError, match="appears twice"):
        ppgen.compare("coin", methods=["reparam", "reparam"], progress=False)
    with pytest.raises(ConfigError, match="Unknown reference"):
        ppgen.compare("coin", methods=["reparam"], reference="mcmc", progress=False)
