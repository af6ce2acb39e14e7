"""benchmarks/overhead.py compares like with like, and runs.

The script's plain Pyro and NumPyro loops use their own spellings of ppgen's ``linreg`` and
``logistic``; the tests check that those spellings have exactly ppgen's densities, so that the
timing ratio measures ppgen's overhead and nothing else.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import ppgen

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
LATENTS = {"w": np.array([0.3, -0.2, 0.5], np.float32), "b": np.float32(0.1)}


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ppgen_bench_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up by name while they are being built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _log_joint(backend: str, fn: Any, args: tuple[np.ndarray, ...], latents: dict) -> float:
    """log p(data, latents) of ``fn`` (native or ppgen) on ``backend``, summed over sites."""
    with ppgen.use_backend(backend):
        if backend == "pyro":
            import torch
            from pyro import poutine

            targs = tuple(torch.as_tensor(a) for a in args)
            values = {k: torch.as_tensor(v) for k, v in latents.items()}
            tr = poutine.trace(poutine.condition(fn, data=values)).get_trace(*targs)
            return float(tr.log_prob_sum().detach())
        import jax.numpy as jnp
        from numpyro.infer.util import log_density

        jargs = tuple(jnp.asarray(a) for a in args)
        values = {k: jnp.asarray(v) for k, v in latents.items()}
        return float(log_density(fn, jargs, {}, values)[0])


@pytest.mark.parametrize("name", ["linreg", "logistic"])
def test_native_models_have_ppgen_densities(overhead: ModuleType, name: str, backend: str) -> None:
    case = next(c for c in overhead.CASES if c.name == name)
    data = case.data(50, 0)
    native = case.pyro[0] if backend == "pyro" else case.numpyro[0]
    ours = ppgen.get_model(name).fn
    latents = {k: v for k, v in LATENTS.items() if name == "logistic" or k == "w"}
    expected = _log_joint(backend, ours, data, latents)
    # float32 sums over 50 points: agreement to a few ulps of a number of order 100.
    assert _log_joint(backend, native, data, latents) == pytest.approx(expected, rel=1e-6)


def test_native_linreg_guide_has_ppgen_density(overhead: ModuleType, backend: str) -> None:
    """Same guide family and the same initial parameters, so the same log q(w)."""
    case = overhead.CASES[0]
    data = case.data(50, 0)
    native = case.pyro[1](None) if backend == "pyro" else case.numpyro[1](None)
    ours = ppgen.get_model("linreg").guides["linreg_full_rank"].fn
    w = {"w": LATENTS["w"]}
    if backend == "pyro":
        import pyro

        with pyro.get_param_store().scope():
            a = _log_joint(backend, native, data, w)
        with pyro.get_param_store().scope():
            b = _log_joint(backend, ours, data, w)
    else:
        a, b = _log_joint(backend, native, data, w), _log_joint(backend, ours, data, w)
    assert a == pytest.approx(b, rel=1e-6)


@pytest.mark.slow
def test_quick_run_prints_the_table(overhead: ModuleType, capsys: pytest.CaptureFixture) -> None:
    rows = overhead.main(["--quick"])
    assert {(m.model, m.backend) for m in rows} == {
        (c, b) for c in ("linreg", "logistic") for b in ("pyro", "numpyro")
    }
    for m in rows:
        assert m.plain_step_s > 0 and m.ppgen_step_s > 0 and np.isfinite(m.ratio)
        # Same objective, same optimizer: the loss levels reached agree (a wrong density would
        # be off by tens of nats; Monte Carlo noise and different initial values by a few).
        plain = np.median([r.final_loss for r in m.plain])
        ours = np.median([r.final_loss for r in m.ppgen])
        assert abs(plain - ours) < 0.02 * abs(plain), (m.model, m.backend, plain, ours)
    out = capsys.readouterr().out
    assert "ratio" in out and "worst ratio ppgen / plain" in out
