"""The ``ppgen`` command line: list, fit, run directories, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from safetensors.numpy import load_file

from ppgen.cli import cli


def test_list() -> None:
    out = CliRunner().invoke(cli, ["list"])
    assert out.exit_code == 0, out.output
    for word in ("coin", "eight_schools", "reparam", "nuts", "numpyro", "pyro", "cpu"):
        assert word in out.output


def test_fit_writes_run_directory(tmp_path: Path, backend: str) -> None:
    run = tmp_path / "run"
    out = CliRunner().invoke(
        cli,
        ["fit", "coin", "--backend", backend, "--steps", "300", "--out", str(run), "--quiet"],
    )
    assert out.exit_code == 0, out.output
    assert {"config.json", "metrics.csv", "params.safetensors", "posterior.nc", "loss.png"} <= {
        p.name for p in run.iterdir()
    }
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "coin" and config["fit"]["backend"] == backend
    params = load_file(str(run / "params.safetensors"))
    assert set(params) == {"alpha_q", "beta_q"}
    losses = np.loadtxt(run / "metrics.csv", delimiter=",", skiprows=1)
    assert losses.shape == (300, 2)
    assert "p " in out.output and "mean" in out.output  # the posterior summary

    import arviz as az

    idata = az.from_netcdf(str(run / "posterior.nc"))
    assert idata.posterior["p"].shape == (1, 1000)


def test_cuda_without_gpu_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ppgen.cli",
            "fit",
            "coin",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    if (
        "cuda"
        in subprocess.run(
            [sys.executable, "-m", "ppgen.cli", "list"], capture_output=True, text=True
        ).stdout.split("backends and devices:")[1]
    ):
        return  # a GPU is present: nothing to refuse
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Device 'cuda' is not available")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()


def test_bad_input_exit_code_2() -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["fit", "coim"])
    assert out.exit_code == 2 and "did you mean 'coin'" in out.output
    out = runner.invoke(cli, ["fit", "coin", "-o", "nonsense"])
    assert out.exit_code == 2 and "KEY=VALUE" in out.output
