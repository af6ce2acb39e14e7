"""``ppgen compare``: the report, the forest plot and one posterior file per method."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.image
from click.testing import CliRunner

from ppgen.cli import cli


def test_compare_writes_report_forest_and_posteriors(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "eight_schools", "--methods", "reparam,nuts", "--out", str(out)]
    args += ["--steps", "500", "--num-samples", "500", "--quiet"]
    args += ["-o", "nuts.num_warmup=200", "-o", "nuts.num_samples=200"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {
        "report.md",
        "forest.png",
        "posterior_reparam.nc",
        "posterior_nuts.nc",
    }
    report = (out / "report.md").read_text()
    assert "Reference: **nuts**" in report and "| theta[7]" in report
    assert "| reparam" in res.output and "k-hat" in res.output  # the table is printed
    image = matplotlib.image.imread(out / "forest.png")
    assert image.shape[0] > 400 and image.shape[1] > 400
    # Not a blank canvas: the intervals, labels and legend put dark pixels on it.
    assert (image[..., :3].mean(-1) < 0.3).mean() > 0.005
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az

    nuts = az.from_netcdf(str(out / "posterior_nuts.nc"))
    assert nuts.posterior["theta"].shape == (4, 200, 8)
    assert nuts.log_likelihood["y"].shape == (4, 200, 8)


def test_compare_option_without_method_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["compare", "coin", "--methods", "nuts", "-o", "num_samples=10", "--out", str(tmp_path)],
    )
    assert res.exit_code == 2
    assert "METHOD.KEY=VALUE" in res.output
