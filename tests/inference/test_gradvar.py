"""The gradient-variance lab: estimator names, the report's table and plot, the CLI, and the
places gradients can be evaluated at (init, a fit, given values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import ppgen
from ppgen.cli import cli
from ppgen.errors import ConfigError, ModelError
from ppgen.inference.gradvar import GradVarConfig, parse_estimator
from ppgen.inference.reparam import ReparamConfig
from ppgen.inference.score import ScoreConfig
from ppgen.models.hierarchical import neg_elbo_grad

COLUMNS = [
    "estimator",
    "particles",
    "parameter",
    "mean",
    "variance",
    "snr",
    "bias",
    "seconds_per_estimate",
]


def test_estimator_names_parse_into_configs() -> None:
    spec = parse_estimator("score+rb+cv")
    assert isinstance(spec.config, ScoreConfig)
    assert spec.config.rao_blackwell and spec.config.variance_reduction == "cv"
    assert spec.config.sites == "all" and spec.min_particles == 2
    plain = parse_estimator("score").config
    assert isinstance(plain, ScoreConfig)
    assert not plain.rao_blackwell and plain.variance_reduction == "none"
    stl = parse_estimator("reparam+stl").config
    assert isinstance(stl, ReparamConfig) and stl.stl
    assert parse_estimator("score+nonreparam+baseline").config.sites == "nonreparam"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("scor+rb", "did you mean 'score'"),
        ("score+rb+lo", "did you mean 'loo'"),
        ("score+loo+cv", "choose one variance reduction"),
        ("reparam+rb", "unknown flag 'rb'"),
        ("reparam+stl+iwae", "biased"),
        ("score+rb+rb", "repeats a flag"),
    ],
)
def test_bad_estimator_names_are_one_clear_error(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_estimator(name)


def test_bad_settings_fail_before_any_work() -> None:
    with pytest.raises(ConfigError, match="particles must be positive"):
        GradVarConfig(particles=(0, 10))
    with pytest.raises(ConfigError, match="repeats"):
        ppgen.gradvar("hier_normal", repeats=1)
    with pytest.raises(ConfigError, match="at must be"):
        ppgen.gradvar("hier_normal", at="start")
    with pytest.raises(ConfigError, match="unknown flag"):
        ppgen.gradvar("hier_normal", estimators=["score+rx"])
    # Named explicitly, reparam on a discrete guide is refused with the site's name.
    with pytest.raises(ModelError, match="Guide site 'z'"):
        ppgen.gradvar(
            "two_gaussians", backend="pyro", estimators=["reparam"], particles=[2], repeats=2
        )


def test_report_table_and_plot(tmp_path: Path, backend: str) -> None:
    report = ppgen.gradvar(
        "hier_normal",
        backend=backend,
        estimators=["reparam", "score+rb+loo"],
        particles=[1, 4],
        repeats=40,
        warmup=0,
        out=tmp_path,
    )
    assert report.skipped == [("score+rb+loo", 1, "needs particles >= 2")]
    frame = report.to_frame()
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    # 42 parameter elements plus one total row per drawn (estimator, particles).
    assert len(frame) == 3 * 43
    assert set(frame["parameter"]) >= {"mu_loc", "mu_scale", "z_loc[0]", "z_scale[19]", "total"}
    total = frame[(frame["parameter"] == "total") & (frame["estimator"] == "reparam")]
    rows = frame[(frame["parameter"] != "total") & (frame["estimator"] == "reparam")]
    for count in (1, 4):
        t = total[total["particles"] == count].iloc[0]
        r = rows[rows["particles"] == count]
        assert t["variance"] == pytest.approx(r["variance"].sum())
        assert t["snr"] == pytest.approx(t["mean"] / np.sqrt(t["variance"]))
    # The reference is the model's exact gradient at the initial parameters.
    assert report.reference_kind == "exact"
    exact = neg_elbo_grad(report.params, ppgen.get_model("hier_normal").bind(None).args[0])
    np.testing.assert_allclose(report.reference["z_loc"], exact["z_loc"])
    mu = frame[(frame["parameter"] == "mu_loc") & (frame["estimator"] == "reparam")]
    assert np.allclose(mu["reference"], exact["mu_loc"])
    assert np.allclose(mu["bias"], mu["mean"] - exact["mu_loc"])
    assert (frame["seconds_per_estimate"] > 0).all()
    # Files: the same table as CSV, and a PNG.
    written = pd.read_csv(tmp_path / "gradvar.csv")
    assert list(written.columns) == list(frame.columns) and len(written) == len(frame)
    assert (tmp_path / "gradvar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradients_at_a_fit_and_at_given_values(backend: str) -> None:
    fitted = ppgen.fit("normal_normal", backend=backend, steps=300, particles=4, progress=False)
    before = fitted.posterior_samples(50, seed=0)["mu"]
    report = ppgen.gradvar(
        "normal_normal",
        backend=backend,
        at=fitted,
        estimators=["reparam"],
        particles=[4],
        repeats=20,
    )
    assert report.at == "fit (reparam)"
    for name, value in fitted.params.items():
        np.testing.assert_allclose(report.params[name], value, rtol=1e-5)
    given = ppgen.gradvar(
        "normal_normal",
        backend=backend,
        at={"mu_loc": 1.0, "mu_scale": 0.5},
        estimators=["reparam"],
        particles=[4],
        repeats=20,
    )
    np.testing.assert_allclose(given.params["mu_loc"], 1.0)
    np.testing.assert_allclose(given.params["mu_scale"], 0.5)
    # The draws leave the fit's own state alone.
    np.testing.assert_array_equal(fitted.posterior_samples(50, seed=0)["mu"], before)


def test_default_estimators_skip_reparam_on_a_discrete_guide() -> None:
    report = ppgen.gradvar(
        "two_gaussians", backend="pyro", particles=[3], repeats=10, warmup=0, at="fit"
    )
    assert report.at == "fit (score)"
    assert {e for e, _, _ in report.skipped} == {"reparam", "reparam+stl"}
    assert report.estimators == [
        "score",
        "score+rb",
        "score+rb+baseline",
        "score+rb+loo",
        "score+rb+cv",
    ]


def test_cli_writes_csv_and_png(tmp_path: Path) -> None:
    out = tmp_path / "gv"
    result = CliRunner().invoke(
        cli,
        [
            "gradvar",
            "hier_normal",
            "--estimators",
            "reparam,score,score+rb+cv",
            "--particles",
            "2,5",
            "--repeats",
            "30",
            "--backend",
            "pyro",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "score+rb+cv" in result.output and "reference gradient: exact" in result.output
    frame = pd.read_csv(out / "gradvar.csv")
    assert set(frame["estimator"]) == {"reparam", "score", "score+rb+cv"}
    assert set(frame["particles"]) == {2, 5}
    assert (out / "gradvar.png").stat().st_size > 10_000
    bad = CliRunner().invoke(cli, ["gradvar", "hier_normal", "--particles", "ten"])
    assert bad.exit_code == 2 and "--particles must be comma-separated integers" in bad.output
