"""Run directories of the deep generative models, and ``ppgen sample`` on them, via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import ppgen
from ppgen.cli import cli


def _fit(tmp_path: Path, name: str, backend: str, *args: str) -> Path:
    run = tmp_path / f"{name}-{backend}"
    out = CliRunner().invoke(
        cli, ["fit", name, "--backend", backend, "--out", str(run), "--quiet", *args]
    )
    assert out.exit_code == 0, out.output
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    return run


def _sample(run: Path, out: Path, n: int = 16) -> None:
    res = CliRunner().invoke(cli, ["sample", str(run), "-n", str(n), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.fixture(autouse=True)
def _smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    # Cheap reports: 100 importance samples per image instead of 1000.
    monkeypatch.setenv("PPGEN_SMOKE", "1")


def test_vae_run_directory_and_sample(tmp_path: Path, backend: str) -> None:
    run = _fit(tmp_path, "vae", backend, "--steps", "40", "--lr", "0.003")
    names = {p.name for p in run.iterdir()}
    assert {"samples.png", "reconstructions.png", "quality.json", "params.safetensors"} <= names
    quality = json.loads((run / "quality.json").read_text())
    assert quality["images"] == 360 and quality["iwae_particles"] == 100
    assert quality["heldout_nll_iwae"] < quality["heldout_neg_elbo"]
    assert quality["independent_bernoulli_nll"] == pytest.approx(24.49, abs=0.01)
    config = json.loads((run / "config.json").read_text())
    assert config["model_arguments"]["shapes"] == {"x": [1437, 64]}
    _sample(run, tmp_path / "grid.png")
    a = ppgen.api.sample(run, n=5, seed=1)
    b = ppgen.api.sample(run, n=5, seed=1)
    assert a.shape == (5, 64) and np.array_equal(a, b) and np.all((a >= 0) & (a <= 1))


@pytest.mark.parametrize(
    ("backend", "name"), [("numpyro", "mlp_gan"), ("pyro", "gan1d"), ("pyro", "mlp_gan")]
)
def test_gan_run_directory_and_sample(tmp_path: Path, backend: str, name: str) -> None:
    run = _fit(tmp_path, name, backend, "--method", "gan", "--steps", "40")
    names = {p.name for p in run.iterdir()}
    assert {"losses.png", "quality.json", "metrics.csv", "params.safetensors"} <= names
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,loss,loss_discriminator,loss_generator"
    assert len((run / "metrics.csv").read_text().splitlines()) == 41
    quality = json.loads((run / "quality.json").read_text())
    if name == "gan1d":
        assert "gan1d.png" in names and {"w1", "ks", "mean", "sd"} <= set(quality)
        shape: tuple[int, ...] = (16, 1)
    else:
        assert "samples.png" in names and len(quality["class_coverage"]) == 10
        assert quality["real_vs_real_floor"] == pytest.approx(0.648, abs=0.01)
        shape = (16, 64)
    _sample(run, tmp_path / "grid.png")
    assert ppgen.api.sample(run, n=16).shape == shape
    np.save(tmp_path / "x.npy", np.zeros(1))
    res = CliRunner().invoke(cli, ["sample", str(run), "-n", "3", "--out", str(tmp_path / "x.npy")])
    assert res.exit_code == 0 and np.load(tmp_path / "x.npy").shape == (3, *shape[1:])


def test_sample_needs_a_run_directory(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["sample", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_mlp_gan_on_mnist_sized_images(tmp_path: Path) -> None:
    from ppgen.data import mnist_idx, write_idx

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "images.idx", (rng.random((50, 28, 28)) * 255).astype(np.uint8))
    x = mnist_idx(tmp_path / "images.idx")
    run = tmp_path / "run"
    result = ppgen.fit(
        "mlp_gan", {"x": x}, method="gan", backend="pyro", steps=3, progress=False, out=run
    )
    assert result.draws["x"].shape == (1, 1000, 784)  # 100 -> 128 -> 784, as in the tutorial
    assert result.config.discriminator.sizes == (784, 128, 1)
    assert (run / "samples.png").is_file()
    assert ppgen.api.sample(run, n=4).shape == (4, 784)
