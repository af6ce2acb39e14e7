"""Per-step cost of ``ppgen.fit`` against plain Pyro and plain NumPyro loops, in the same run.

For each model (``linreg`` on 1,000 points with its full-rank Gaussian guide, ``logistic`` on 1,000
points with an automatic mean-field ``AutoNormal`` guide) and each backend, the script times

* ``ppgen.fit(model, method="reparam")``, and
* the loop a user would write without ppgen on the same model and guide, written natively:
  ``pyro.infer.SVI(..., Trace_ELBO()).step`` in a Python loop for Pyro, and NumPyro's
  ``SVI.update`` inside a jitted ``lax.scan`` for NumPyro,

with the same optimizer (Adam), learning rate, number of steps and one particle. Per-step time
excludes the first chunk of steps (compilation, parameter initialization) in both, measured the
way ``ppgen`` reports ``FitResult.timings.step_s``; the chunk length is ppgen's own
(``LoopConfig.chunk_size``). The runs alternate (plain, ppgen, plain, ppgen, ...) so that load
from other processes hits both alike, and the table shows the median over repeats.

Both sides run on one torch thread and one XLA CPU thread, and Pyro's argument validation is off
in both (ppgen turns it off inside its loop). Times are wall-clock (process CPU time would count
the spinning of JAX's idle worker threads). The final-loss columns (mean negative ELBO over the
last fifth of the steps) confirm that both sides optimize the same objective.

Run ``python benchmarks/overhead.py`` (``--quick`` for a smoke run, ``--help`` for options).
"""

from __future__ import annotations

import os

# One XLA CPU thread, as one torch thread: set before JAX starts.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
).strip()

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import optax
import pyro
import pyro.distributions as pdist
import torch
from numpyro.infer import SVI as NumPyroSVI
from numpyro.infer import Trace_ELBO as NumPyroTraceELBO
from numpyro.infer.autoguide import AutoNormal as NumPyroAutoNormal
from pyro.infer import SVI as PyroSVI
from pyro.infer import Trace_ELBO as PyroTraceELBO
from pyro.infer.autoguide import AutoNormal as PyroAutoNormal

import ppgen
from ppgen.backends.base import LoopConfig
from ppgen.data import linreg_data, logistic_data
from ppgen.models.classic import LINREG_NOISE, LINREG_PRIOR_SD

__all__ = ["BenchConfig", "Measurement", "main", "measure", "plain_numpyro", "plain_pyro"]

BACKENDS = ("pyro", "numpyro")
TARGET_RATIO = 1.10


@dataclass(frozen=True)
class BenchConfig:
    """How much to run: steps per fit on each backend, repeats, learning rate, data size."""

    pyro_steps: int = 3000
    numpyro_steps: int = 20000
    repeats: int = 5
    lr: float = 0.01
    points: int = 1000
    seed: int = 0
    #: Run each side once untimed first (first imports, JAX's caches, torch's allocator).
    warmup: bool = True

    def steps(self, backend: str) -> int:
        return self.pyro_steps if backend == "pyro" else self.numpyro_steps


@dataclass(frozen=True)
class Run:
    """One timed fit: mean seconds per step after the first chunk, and the final loss level."""

    step_s: float
    final_loss: float


@dataclass(frozen=True)
class Measurement:
    """Median per-step seconds of the plain loop and of ``ppgen.fit`` for one model and backend."""

    model: str
    backend: str
    steps: int
    plain: list[Run]
    ppgen: list[Run]

    @property
    def plain_step_s(self) -> float:
        return statistics.median(r.step_s for r in self.plain)

    @property
    def ppgen_step_s(self) -> float:
        return statistics.median(r.step_s for r in self.ppgen)

    @property
    def ratio(self) -> float:
        return self.ppgen_step_s / self.plain_step_s


def _final(losses: np.ndarray) -> float:
    return float(np.mean(losses[-max(1, len(losses) // 5) :]))


# -- the models, written natively for each backend -----------------------------------------------
# Same densities as ppgen.models.classic.linreg / linreg_full_rank / logistic.


def _pyro_linreg(X: torch.Tensor, y: torch.Tensor) -> None:
    d = X.shape[1]
    w = pyro.sample("w", pdist.Normal(torch.zeros(d), LINREG_PRIOR_SD * torch.ones(d)).to_event(1))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", pdist.Normal(torch.sum(X * w, -1), LINREG_NOISE), obs=y)


def _pyro_linreg_guide(X: torch.Tensor, y: torch.Tensor) -> None:
    d = X.shape[1]
    loc = pyro.param("w_loc", torch.zeros(d))
    tril = pyro.param(
        "w_scale_tril", 0.1 * torch.eye(d), constraint=pdist.constraints.lower_cholesky
    )
    pyro.sample("w", pdist.MultivariateNormal(loc, scale_tril=tril))


def _pyro_logistic(X: torch.Tensor, y: torch.Tensor) -> None:
    d = X.shape[1]
    w = pyro.sample("w", pdist.Normal(torch.zeros(d), torch.ones(d)).to_event(1))
    b = pyro.sample("b", pdist.Normal(0.0, 1.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", pdist.Bernoulli(logits=torch.sum(X * w, -1) + b), obs=y)


def _numpyro_linreg(X: jax.Array, y: jax.Array) -> None:
    d = X.shape[1]
    w = numpyro.sample("w", ndist.Normal(jnp.zeros(d), LINREG_PRIOR_SD * jnp.ones(d)).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", ndist.Normal(jnp.sum(X * w, -1), LINREG_NOISE), obs=y)


def _numpyro_linreg_guide(X: jax.Array, y: jax.Array) -> None:
    d = X.shape[1]
    loc = numpyro.param("w_loc", jnp.zeros(d))
    tril = numpyro.param(
        "w_scale_tril", 0.1 * jnp.eye(d), constraint=ndist.constraints.lower_cholesky
    )
    numpyro.sample("w", ndist.MultivariateNormal(loc, scale_tril=tril))


def _numpyro_logistic(X: jax.Array, y: jax.Array) -> None:
    d = X.shape[1]
    w = numpyro.sample("w", ndist.Normal(jnp.zeros(d), jnp.ones(d)).to_event(1))
    b = numpyro.sample("b", ndist.Normal(0.0, 1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", ndist.Bernoulli(logits=jnp.sum(X * w, -1) + b), obs=y)


@dataclass(frozen=True)
class Case:
    """A model under three spellings: ppgen's registered name, native Pyro, native NumPyro."""

    name: str
    data: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    pyro: tuple[Callable[..., Any], Callable[[Callable[..., Any]], Callable[..., Any]]]
    numpyro: tuple[Callable[..., Any], Callable[[Callable[..., Any]], Callable[..., Any]]]


CASES = (
    Case(
        "linreg",
        lambda n, seed: linreg_data(n, d=3, noise=LINREG_NOISE, seed=seed),
        (_pyro_linreg, lambda _: _pyro_linreg_guide),
        (_numpyro_linreg, lambda _: _numpyro_linreg_guide),
    ),
    Case(
        "logistic",
        lambda n, seed: logistic_data(n, d=3, seed=seed),
        (_pyro_logistic, PyroAutoNormal),
        (_numpyro_logistic, NumPyroAutoNormal),
    ),
)


# -- the plain loops -----------------------------------------------------------------------------
def plain_pyro(case: Case, data: tuple[np.ndarray, ...], steps: int, lr: float, seed: int) -> Run:
    """Pyro's ``SVI.step`` in a Python loop; the first chunk of steps is not timed."""
    model, make_guide = case.pyro
    args = tuple(torch.as_tensor(a, dtype=torch.float32) for a in data)
    chunk = LoopConfig(steps=steps).chunk_size
    pyro.set_rng_seed(seed)
    losses = np.empty(steps)
    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        svi = PyroSVI(model, make_guide(model), pyro.optim.Adam({"lr": lr}), PyroTraceELBO())
        for step in range(chunk):
            losses[step] = svi.step(*args)
        start = time.perf_counter()
        for step in range(chunk, steps):
            losses[step] = svi.step(*args)
        elapsed = time.perf_counter() - start
    return Run(elapsed / (steps - chunk), _final(losses))


def plain_numpyro(
    case: Case, data: tuple[np.ndarray, ...], steps: int, lr: float, seed: int
) -> Run:
    """NumPyro's ``SVI.update`` in a jitted ``lax.scan`` over chunks; the first is not timed."""
    model, make_guide = case.numpyro
    args = tuple(jnp.asarray(a, dtype=jnp.float32) for a in data)
    chunk = LoopConfig(steps=steps).chunk_size
    svi = NumPyroSVI(model, make_guide(model), optax.adam(lr), NumPyroTraceELBO())
    state = svi.init(jax.random.PRNGKey(seed), *args)

    @jax.jit
    def run_chunk(state: Any) -> tuple[Any, jax.Array]:
        return jax.lax.scan(lambda s, _: svi.update(s, *args), state, None, length=chunk)

    out: list[np.ndarray] = []
    state, losses = run_chunk(state)
    out.append(np.asarray(losses))
    start = time.perf_counter()
    for _ in range(chunk, steps, chunk):
        state, losses = run_chunk(state)
        # Reading the losses back each chunk is what any loop with a progress bar does.
        out.append(np.asarray(losses))
    elapsed = time.perf_counter() - start
    return Run(elapsed / (steps - chunk), _final(np.concatenate(out)))


def ppgen_run(
    case: Case, data: tuple[np.ndarray, ...], backend: str, steps: int, lr: float, seed: int
) -> Run:
    """``ppgen.fit`` with its default guide; its own per-step timing (first chunk excluded)."""
    result = ppgen.fit(
        case.name,
        data,
        method="reparam",
        backend=backend,
        device="cpu",
        steps=steps,
        lr=lr,
        seed=seed,
        progress=False,
        threads=1,
    )
    return Run(result.timings.step_s, _final(result.losses))


def measure(case: Case, backend: str, config: BenchConfig) -> Measurement:
    """Alternate plain and ppgen fits ``config.repeats`` times (after one warm-up of each)."""
    data = case.data(config.points, config.seed)
    steps = config.steps(backend)
    plain = plain_pyro if backend == "pyro" else plain_numpyro
    if config.warmup:
        plain(case, data, steps, config.lr, config.seed)
        ppgen_run(case, data, backend, steps, config.lr, config.seed)
    plain_runs, ppgen_runs = [], []
    for _ in range(config.repeats):
        plain_runs.append(plain(case, data, steps, config.lr, config.seed))
        ppgen_runs.append(ppgen_run(case, data, backend, steps, config.lr, config.seed))
    return Measurement(case.name, backend, steps, plain_runs, ppgen_runs)


def table(rows: list[Measurement]) -> str:
    """The result table as aligned text: medians over repeats, the ratio of the medians, the
    ratio of the fastest runs (least disturbed by other load), and the final losses."""
    head = (
        f"{'model':<9} {'backend':<8} {'steps':>6} {'plain us/step':>14} {'ppgen us/step':>14} "
        f"{'ratio':>6} {'ratio of mins':>13} {'loss plain':>11} {'loss ppgen':>11}"
    )
    lines = [head, "-" * len(head)]
    for m in rows:
        best = min(r.step_s for r in m.ppgen) / min(r.step_s for r in m.plain)
        lines.append(
            f"{m.model:<9} {m.backend:<8} {m.steps:>6} {m.plain_step_s * 1e6:>14.1f} "
            f"{m.ppgen_step_s * 1e6:>14.1f} {m.ratio:>6.3f} {best:>13.3f} "
            f"{statistics.median(r.final_loss for r in m.plain):>11.3f} "
            f"{statistics.median(r.final_loss for r in m.ppgen):>11.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Measurement]:
    """Measure every case on the chosen backends and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--model", choices=[c.name for c in CASES] + ["all"], default="all")
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--pyro-steps", type=int, default=BenchConfig.pyro_steps)
    parser.add_argument("--numpyro-steps", type=int, default=BenchConfig.numpyro_steps)
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke run)")
    ns = parser.parse_args(argv)
    config = BenchConfig(
        pyro_steps=300 if ns.quick else ns.pyro_steps,
        numpyro_steps=400 if ns.quick else ns.numpyro_steps,
        repeats=1 if ns.quick else ns.repeats,
        warmup=not ns.quick,
    )
    torch.set_num_threads(1)
    backends = BACKENDS if ns.backend == "both" else (ns.backend,)
    cases = [c for c in CASES if ns.model in ("all", c.name)]
    rows = [measure(case, backend, config) for case in cases for backend in backends]
    print(
        f"ppgen {ppgen.__version__}, pyro {pyro.__version__}, torch {torch.__version__}, "
        f"numpyro {numpyro.__version__}, jax {jax.__version__}; CPU, 1 thread; "
        f"{config.points} points; median of {config.repeats} alternating repeats"
    )
    print(table(rows))
    worst = max(m.ratio for m in rows)
    verdict = "meets" if worst <= TARGET_RATIO else "misses"
    print(f"worst ratio ppgen / plain: {worst:.3f} ({verdict} the target <= {TARGET_RATIO:.2f})")
    return rows


if __name__ == "__main__":
    main()
