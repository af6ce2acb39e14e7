"""Devices, the training loop, and the checks a backend makes before any work."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen import dist
from ppgen.backends import get_backend
from ppgen.backends.base import LoopConfig, SVIProblem
from ppgen.errors import ConfigError, DeviceError, ModelError, NonFiniteError
from ppgen.inference.reparam import reparam_objective


def test_devices(backend: str) -> None:
    be = get_backend(backend)
    assert be.devices()[0] == "cpu"
    assert be.resolve_device("cpu") == "cpu"
    assert be.resolve_device("auto") in be.devices()
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        be.resolve_device("tpu")
    if "cuda:0" not in be.devices():
        with pytest.raises(DeviceError, match="not available.*found only cpu"):
            be.resolve_device("cuda")
    with pytest.raises(DeviceError, match="not available"):
        be.resolve_device("cuda:99")


def test_numpyro_does_not_retrace_after_first_chunk() -> None:
    calls = {"n": 0}

    @ppgen.model
    def counted(x):
        calls["n"] += 1
        mu = ppgen.sample("mu", dist.Normal(0.0, 1.0))
        ppgen.sample("x", dist.Normal(mu, 1.0), obs=x)

    model = ppgen.get_model(counted)
    be = get_backend("numpyro")
    counts = []
    for steps in (7, 31):  # 3 chunks and 11 chunks of 3 steps, the last one padded
        # A fresh auto guide each time: its first call traces the model to set itself up.
        guide = be.auto_guide(counted.fn, "normal")
        problem = SVIProblem(counted.fn, guide, model.bind(1.0), "cpu")
        calls["n"] = 0
        out = be.run_svi(problem, reparam_objective, LoopConfig(steps, chunk=3, progress=False))
        counts.append(calls["n"])
        assert out.losses.shape == (steps,) and np.all(np.isfinite(out.losses))
    assert counts[0] == counts[1]


def test_loop_config_validation() -> None:
    with pytest.raises(ConfigError, match="steps"):
        LoopConfig(0)
    with pytest.raises(ConfigError, match="particles"):
        LoopConfig(5, particles=0)
    with pytest.raises(ConfigError, match="seed"):
        LoopConfig(5, seed=-1)


@ppgen.model(data=lambda: np.ones(3, np.float32))
def nan_model(x):
    mu = ppgen.sample("mu", dist.Normal(0.0, 1.0))
    # log of a negative number: the loss is NaN from the first step.
    ppgen.factor("bad", ppgen.ops.log(mu - 100.0))


@nan_model.guide
def nan_guide(x):
    ppgen.sample("mu", dist.Normal(ppgen.param("loc", 0.0), 1.0))


def test_nonfinite_loss_names_the_step(backend: str) -> None:
    with pytest.raises(NonFiniteError, match="step 0") as info:
        ppgen.fit(nan_model, backend=backend, steps=10, progress=False)
    assert info.value.step == 0


@ppgen.model(data=lambda: np.array([1.0, 0.0, 1.0], np.float32))
def discrete(x):
    z = ppgen.sample("z", dist.Bernoulli(0.5))
    with ppgen.plate("n", x.shape[0]):
        ppgen.sample("x", dist.Normal(z, 1.0), obs=x)


@discrete.guide
def discrete_guide(x):
    p = ppgen.param("p", 0.5, constraint=dist.constraints.unit_interval)
    ppgen.sample("z", dist.Bernoulli(p))


@discrete.guide(name="missing")
def missing_guide(x):
    ppgen.param("p", 0.5)


def test_reparam_refuses_discrete_latent(backend: str) -> None:
    with pytest.raises(ModelError, match="'z'.*cannot be reparameterized.*method='score'"):
        ppgen.fit(discrete, backend=backend, steps=10, progress=False)


def test_auto_guide_without_finite_start(backend: str) -> None:
    if backend == "pyro":
        pytest.skip("Pyro's auto guides do not search for a finite starting point")
    with pytest.raises(ModelError, match="finite log density"):
        ppgen.fit(nan_model, backend=backend, guide="auto", steps=10, progress=False)


def test_guide_missing_site(backend: str) -> None:
    with pytest.raises(ModelError, match="no sample site for the model's latent.*'z'"):
        ppgen.fit(discrete, backend=backend, guide="missing", steps=10, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"particles": 0}, "particles must be a positive integer"),
        ({"seed": -2}, "seed must be a non-negative integer"),
        ({"backend": "tensorflow"}, "Unknown backend 'tensorflow'"),
        ({"method": "reparm"}, "Unknown method 'reparm'"),
        ({"lr_dcay": 0.1}, "has no option 'lr_dcay'.*did you mean 'lr_decay'"),
        ({"device": "cuda:7"}, "not available"),
    ],
)
def test_bad_fit_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ppgen.PPGenError, match=message):
        ppgen.fit("coin", progress=False, **kwargs)
