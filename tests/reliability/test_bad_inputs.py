"""Bad input gets one clear sentence, as a ppgen exception, before any work starts.

Each row: a call, the exception type it must raise, and words its message must contain.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import ppgen
from ppgen import dist
from ppgen.cli import cli
from ppgen.data import digits, mnist_idx
from ppgen.errors import (
    ConfigError,
    DataError,
    DeviceError,
    ModelError,
    RunDirError,
    UnknownNameError,
)


@ppgen.model(data=lambda: np.array([0.5, 1.0], np.float32))
def small(x):
    z = ppgen.sample("z", dist.Normal(0.0, 1.0))
    with ppgen.plate("n", x.shape[0]):
        ppgen.sample("x", dist.Normal(z, 1.0), obs=x)


@small.guide
def good(x):
    ppgen.sample("z", dist.Normal(ppgen.param("m", 0.0), 1.0))


@small.guide(name="missing")
def missing(x):
    ppgen.param("m", 0.0)


@small.guide(name="extra")
def extra(x):
    ppgen.sample("z", dist.Normal(ppgen.param("m", 0.0), 1.0))
    ppgen.sample("w", dist.Normal(0.0, 1.0))


@ppgen.model(data=lambda: np.array([1.0, 0.0], np.float32))
def discrete(x):
    k = ppgen.sample("k", dist.Bernoulli(0.5))
    with ppgen.plate("n", x.shape[0]):
        ppgen.sample("x", dist.Normal(k, 1.0), obs=x)


@discrete.guide
def discrete_guide(x):
    ppgen.sample(
        "k", dist.Bernoulli(ppgen.param("p", 0.5, constraint=dist.constraints.unit_interval))
    )


@ppgen.model(backend="pyro", data=lambda: np.zeros(2, np.float32))
def pyro_only(x):
    import pyro

    pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))


def fit(**kwargs: Any) -> Callable[[Path], Any]:
    kwargs.setdefault("steps", 5)
    kwargs.setdefault("progress", False)
    model = kwargs.pop("model", "normal_normal")
    return lambda tmp: ppgen.fit(model, **kwargs)


def _run_with_checkpoint(tmp: Path, steps: int = 20) -> Path:
    out = tmp / "run"
    ppgen.fit("normal_normal", steps=steps, checkpoint_every=10, out=out, progress=False)
    return out


def _resume_other_model(tmp: Path) -> Any:
    return ppgen.fit("coin", resume=_run_with_checkpoint(tmp), progress=False)


def _resume_other_data(tmp: Path) -> Any:
    return ppgen.fit(data=np.zeros(20, np.float32), resume=_run_with_checkpoint(tmp))


def _resume_without_checkpoint(tmp: Path) -> Any:
    out = tmp / "nockpt"
    ppgen.fit("normal_normal", steps=5, out=out, progress=False)
    return ppgen.fit(resume=out, progress=False)


def _out_has_checkpoint(tmp: Path) -> Any:
    out = _run_with_checkpoint(tmp)
    return ppgen.fit("normal_normal", steps=20, checkpoint_every=10, out=out, progress=False)


def _tampered_checkpoint(tmp: Path) -> Any:
    from ppgen import runs

    out = _run_with_checkpoint(tmp)
    ckpt = runs.load_checkpoint(out)
    name = next(k for k in ckpt.arrays if k.startswith("param"))
    ckpt.arrays[name] = np.zeros((3, 3), np.float32)
    runs.save_checkpoint(out, ckpt)
    return ppgen.fit(resume=out, progress=False)


def _mnist_png(tmp: Path) -> Any:
    path = tmp / "images.idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return mnist_idx(path)


def _copy_and_resume_foreign(tmp: Path) -> Any:
    out = _run_with_checkpoint(tmp)
    shutil.copy(out / "metrics.csv", out / "state.pkl")
    return ppgen.fit(resume=out, progress=False)


API_CASES: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    ("unknown model", fit(model="normal_norml"), UnknownNameError, "did you mean 'normal_normal'"),
    ("unknown method", fit(method="bbvi_magic"), UnknownNameError, "Unknown method"),
    ("unknown backend", fit(backend="tensorflow"), ConfigError, "Unknown backend 'tensorflow'"),
    ("unknown device", fit(device="tpu"), DeviceError, "Unknown device 'tpu'"),
    ("absent GPU index", fit(device="cuda:7"), DeviceError, "not available"),
    ("cpu with index", fit(device="cpu:1"), DeviceError, "takes no index"),
    ("zero steps", fit(steps=0), ConfigError, "steps must be a positive integer"),
    ("negative steps", fit(steps=-5), ConfigError, "steps must be a positive integer"),
    ("fractional steps", fit(steps=2.5), ConfigError, "steps must be a positive integer"),
    ("zero lr", fit(lr=0.0), ConfigError, "lr must be a positive number"),
    ("nan lr", fit(lr=float("nan")), ConfigError, "lr must be a positive number"),
    ("zero particles", fit(particles=0), ConfigError, "particles must be a positive integer"),
    ("negative seed", fit(seed=-1), ConfigError, "seed must be a non-negative integer"),
    ("zero threads", fit(threads=0), ConfigError, "threads must be a positive integer"),
    ("misspelt option", fit(lr_dcay=0.1), ConfigError, "did you mean 'lr_decay'"),
    ("bad lr_decay", fit(lr_decay=2.0), ConfigError, "lr_decay must be in"),
    ("bad on_nonfinite", fit(on_nonfinite="ignore"), ConfigError, "on_nonfinite must be"),
    ("checkpoint without out", fit(checkpoint_every=10), ConfigError, "needs a run directory"),
    (
        "negative checkpoint_every",
        lambda tmp: ppgen.fit("normal_normal", checkpoint_every=-1, out=tmp / "r"),
        ConfigError,
        "checkpoint_every must be a non-negative integer",
    ),
    (
        "nuts checkpoints",
        lambda tmp: ppgen.fit(
            "coin", method="nuts", checkpoint_every=5, out=tmp / "r", progress=False
        ),
        ConfigError,
        "cannot checkpoint",
    ),
    (
        "gan checkpoints",
        lambda tmp: ppgen.fit(
            "gan1d", method="gan", checkpoint_every=5, out=tmp / "r", progress=False
        ),
        ConfigError,
        "cannot checkpoint",
    ),
    (
        "avb resume",
        lambda tmp: ppgen.fit(
            "avb_toy", method="avb", checkpoint_every=5, out=tmp / "r", progress=False
        ),
        ConfigError,
        "cannot checkpoint",
    ),
    ("nuts zero samples", fit(method="nuts", num_samples=0), ConfigError, "num_samples"),
    ("NaN in data", fit(data=np.array([1.0, np.nan])), DataError, "NaN or infinite"),
    ("inf in data", fit(data=np.array([np.inf, 1.0])), DataError, "NaN or infinite"),
    ("data vs signature", fit(data=(np.ones(3), np.ones(3))), DataError, "does not match"),
    ("object data", fit(data=np.array([{}, {}])), DataError, "not a numeric array"),
    ("unknown guide", fit(model=small, guide="goood"), ModelError, "did you mean 'good'"),
    ("guide misses a site", fit(model=small, guide="missing"), ModelError, "'z'"),
    ("guide has extra site", fit(model=small, guide="extra"), ModelError, "'w'"),
    ("discrete under reparam", fit(model=discrete), ModelError, "method='score'"),
    ("native model, other backend", fit(model=pyro_only), ModelError, "written for pyro only"),
    ("no model", lambda tmp: ppgen.fit(), ConfigError, "needs a model"),
    (
        "resume missing dir",
        lambda tmp: ppgen.fit(resume=tmp / "nope"),
        RunDirError,
        "does not exist",
    ),
    ("resume other model", _resume_other_model, RunDirError, "written by model 'normal_normal'"),
    ("resume other data", _resume_other_data, RunDirError, "data differ"),
    ("resume without checkpoint", _resume_without_checkpoint, RunDirError, "no checkpoint"),
    ("out holds a checkpoint", _out_has_checkpoint, RunDirError, "already holds a checkpoint"),
    ("tampered checkpoint", _tampered_checkpoint, RunDirError, "has shape (3, 3)"),
    ("pickle in run dir", _copy_and_resume_foreign, RunDirError, "is a pickle"),
    ("MNIST file is a PNG", _mnist_png, DataError, "IDX"),
    ("bad digits split", lambda tmp: digits(split="validation"), DataError, "split"),
]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [pytest.param(c, e, w, id=name) for name, c, e, w in API_CASES],
)
def test_api_bad_input(tmp_path: Path, call: Callable, error: type, words: str) -> None:
    with pytest.raises(error) as info:
        call(tmp_path)
    message = str(info.value)
    assert words in message
    assert isinstance(info.value, ppgen.PPGenError)
    assert "\n" not in message.strip()  # one sentence, no dumps


CLI_CASES: list[tuple[list[str], str]] = [
    (["fit", "coim"], "did you mean 'coin'"),
    (["fit", "coin", "--steps", "0"], "steps must be a positive integer"),
    (["fit", "coin", "--lr", "-1"], "lr must be a positive number"),
    (["fit", "coin", "--device", "tpu"], "Unknown device"),
    (["fit", "coin", "--backend", "jax"], "Unknown backend 'jax'"),
    (["fit", "coin", "--method", "reparm"], "did you mean 'reparam'"),
    (["fit", "coin", "-o", "nonsense"], "KEY=VALUE"),
    (["fit", "coin", "-o", "lr_dcay=0.5"], "did you mean 'lr_decay'"),
    (["fit", "coin", "--checkpoint-every", "-3", "--out", "{tmp}/r"], "checkpoint_every"),
    (["fit"], "needs a model NAME"),
    (["fit", "--resume", "{tmp}/nothing"], "does not exist"),
    (["fit", "coin", "--guide", "nope"], "has no guide 'nope'"),
    (["fit", "coin", "--seed", "-4"], "seed must be a non-negative integer"),
]


@pytest.mark.parametrize(("argv", "words"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_bad_input(tmp_path: Path, argv: list[str], words: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_cli_debug_shows_traceback() -> None:
    result = CliRunner().invoke(cli, ["--debug", "fit", "coim"])
    assert isinstance(result.exception, UnknownNameError)


def test_cli_dry_run_checks_without_fitting(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["fit", "linreg", "--dry-run", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0 and "would fit 'linreg'" in result.output
    assert not (tmp_path / "r").exists()
