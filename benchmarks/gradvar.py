"""Gradient variance and cost of ppgen's estimators against Pyro's and NumPyro's TraceGraph_ELBO.

On ``hier_normal`` (a global mean, 20 local means, one observation each; mean-field Normal guide)
at the guide's initial parameters, every estimator draws ``--repeats`` independent estimates of
the gradient of the negative ELBO over ``--particles`` particles, all at the same parameters. The
table shows, for the gradient with respect to the global mean's location ``mu_loc``: the mean
(and its standard error) next to the exact value, the variance, the milliseconds per estimate
and variance x milliseconds (the variance per unit of compute: lower is better).

The comparisons, measured in the same run:

* Pyro's ``TraceGraph_ELBO`` without and with its decaying-average baseline
  (``infer={"baseline": {"use_decaying_avg_baseline": True}}``), on the same model and guide
  written natively, with the guide's Normals forced non-reparameterized (``has_rsample =
  False``), so that every gradient is a score-function gradient as in ppgen's ``score``;
  ``loss_and_grads`` once per estimate, particles vectorized;
* NumPyro's ``TraceGraph_ELBO`` (no baseline exists there) on the same native model, the guide's
  Normals likewise non-reparameterized (and their samples stopped), its gradient jitted and
  mapped over keys exactly like ppgen's NumPyro estimates.

ppgen's estimators run on both backends through ``ppgen.gradvar``. Timings exclude compilation
and the baselines' warm-up (``--warmup`` estimates at the same parameters), everything runs on one
torch thread and one XLA CPU thread, and the ppgen and native estimates of each backend alternate
with no other work in between.

Run ``python benchmarks/gradvar.py`` (``--quick`` for a smoke run, ``--help`` for options).
"""

from __future__ import annotations

import os

# One XLA CPU thread, as one torch thread: set before JAX is imported.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import torch
from numpyro.infer import TraceGraph_ELBO as NumPyroTraceGraph
from pyro.infer import TraceGraph_ELBO as PyroTraceGraph

import ppgen
from ppgen.models.hierarchical import PRIOR_SD, neg_elbo_grad

ESTIMATORS = (
    "reparam",
    "reparam+stl",
    "score",
    "score+rb",
    "score+rb+baseline",
    "score+rb+loo",
    "score+rb+cv",
)


@dataclass
class Row:
    name: str
    backend: str
    grads: np.ndarray  # (repeats,) gradients with respect to mu_loc
    seconds: float

    @property
    def variance(self) -> float:
        return float(np.var(self.grads, ddof=1))

    @property
    def ms(self) -> float:
        return self.seconds * 1e3


# -- Pyro, written natively ---------------------------------------------------------------------
class _PyroScoreNormal(pdist.Normal):
    """A Normal that Pyro treats as non-reparameterizable (score-function gradients)."""

    has_rsample = False


def _pyro_model(x: torch.Tensor) -> None:
    mu = pyro.sample("mu", pdist.Normal(0.0, PRIOR_SD))
    with pyro.plate("groups", x.shape[0]):
        z = pyro.sample("z", pdist.Normal(mu, 1.0))
        pyro.sample("x", pdist.Normal(z, 1.0), obs=x)


def _pyro_guide(x: torch.Tensor, baseline: bool) -> None:
    infer = {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}}
    infer = infer if baseline else {}
    n = x.shape[0]
    positive = pdist.constraints.positive
    mu_loc = pyro.param("mu_loc", torch.tensor(0.0))
    mu_scale = pyro.param("mu_scale", torch.tensor(1.0), constraint=positive)
    pyro.sample("mu", _PyroScoreNormal(mu_loc, mu_scale), infer=infer)
    z_loc = pyro.param("z_loc", torch.zeros(n))
    z_scale = pyro.param("z_scale", torch.ones(n), constraint=positive)
    with pyro.plate("groups", n):
        pyro.sample("z", _PyroScoreNormal(z_loc, z_scale), infer=infer)


def pyro_tracegraph(
    x: np.ndarray, particles: int, repeats: int, warmup: int, baseline: bool, seed: int
) -> Row:
    data = torch.as_tensor(x)
    elbo = PyroTraceGraph(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)

    def guide(x: torch.Tensor) -> None:
        _pyro_guide(x, baseline)

    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        pyro.set_rng_seed(seed)
        elbo.loss_and_grads(_pyro_model, guide, data)  # creates the parameters
        store = pyro.get_param_store()
        params = [p for _, p in store.named_parameters()]
        mu_loc = dict(store.named_parameters())["mu_loc"]

        def one() -> float:
            for p in params:
                p.grad = None
            elbo.loss_and_grads(_pyro_model, guide, data)
            assert mu_loc.grad is not None
            return float(mu_loc.grad)

        for _ in range(warmup if baseline else 0):
            one()
        start = time.perf_counter()
        grads = np.array([one() for _ in range(repeats)])
        seconds = (time.perf_counter() - start) / repeats
    label = "TraceGraph_ELBO + avg baseline" if baseline else "TraceGraph_ELBO"
    return Row(label, "pyro (native)", grads, seconds)


# -- NumPyro, written natively ------------------------------------------------------------------
class _NumPyroScoreNormal(ndist.Normal):
    """A Normal that NumPyro treats as non-reparameterizable; its samples carry no gradient."""

    reparametrized_params: list[str] = []  # noqa: RUF012

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        return jax.lax.stop_gradient(super().sample(key, sample_shape))


def _numpyro_model(x: Any) -> None:
    mu = numpyro.sample("mu", ndist.Normal(0.0, PRIOR_SD))
    with numpyro.plate("groups", x.shape[0]):
        z = numpyro.sample("z", ndist.Normal(mu, 1.0))
        numpyro.sample("x", ndist.Normal(z, 1.0), obs=x)


def _numpyro_guide(x: Any) -> None:
    n = x.shape[0]
    mu_loc = numpyro.param("mu_loc", 0.0)
    mu_scale = numpyro.param("mu_scale", 1.0, constraint=ndist.constraints.positive)
    numpyro.sample("mu", _NumPyroScoreNormal(mu_loc, mu_scale))
    z_loc = numpyro.param("z_loc", jnp.zeros(n))
    z_scale = numpyro.param("z_scale", jnp.ones(n), constraint=ndist.constraints.positive)
    with numpyro.plate("groups", n):
        numpyro.sample("z", _NumPyroScoreNormal(z_loc, z_scale))


def numpyro_tracegraph(x: np.ndarray, particles: int, repeats: int, seed: int) -> Row:
    data = jnp.asarray(x)
    n = len(x)
    elbo = NumPyroTraceGraph(num_particles=particles)
    unconstrained = {
        "mu_loc": jnp.array(0.0),
        "mu_scale": jnp.array(0.0),
        "z_loc": jnp.zeros(n),
        "z_scale": jnp.zeros(n),
    }

    def loss(u: dict[str, Any], key: Any) -> Any:
        params = {**u, "mu_scale": jnp.exp(u["mu_scale"]), "z_scale": jnp.exp(u["z_scale"])}
        return elbo.loss(key, params, _numpyro_model, _numpyro_guide, data)

    def one(key: Any) -> Any:
        return jax.grad(loss)(unconstrained, key)["mu_loc"]

    keys = jax.random.split(jax.random.PRNGKey(seed), repeats)
    compiled = jax.jit(lambda ks: jax.lax.map(one, ks)).lower(keys).compile()
    start = time.perf_counter()
    grads = np.asarray(jax.block_until_ready(compiled(keys)), np.float64)
    seconds = (time.perf_counter() - start) / repeats
    return Row("TraceGraph_ELBO", "numpyro (native)", grads, seconds)


# -- ppgen -----------------------------------------------------------------------------------------
def ppgen_rows(backend: str, particles: int, repeats: int, warmup: int, seed: int) -> list[Row]:
    report = ppgen.gradvar(
        "hier_normal",
        backend=backend,
        estimators=ESTIMATORS,
        particles=[particles],
        repeats=repeats,
        warmup=warmup,
        seed=seed,
    )
    return [
        Row(
            est,
            f"{backend} (ppgen)",
            report.draws[(est, particles)].grads["mu_loc"].astype(np.float64),
            report.draws[(est, particles)].seconds,
        )
        for est in ESTIMATORS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 repeats, a smoke run.")
    args = parser.parse_args()
    repeats = 200 if args.quick else args.repeats
    torch.set_num_threads(1)

    x = ppgen.get_model("hier_normal").bind(None).args[0]
    init = {
        "mu_loc": np.float64(0.0),
        "mu_scale": np.float64(1.0),
        "z_loc": np.zeros(len(x)),
        "z_scale": np.ones(len(x)),
    }
    exact = float(neg_elbo_grad(init, x)["mu_loc"])
    p, w, s = args.particles, args.warmup, args.seed

    rows = ppgen_rows("numpyro", p, repeats, w, s)
    rows.append(numpyro_tracegraph(x, p, repeats, s))
    rows += ppgen_rows("pyro", p, repeats, w, s)
    rows.append(pyro_tracegraph(x, p, repeats, w, baseline=False, seed=s))
    rows.append(pyro_tracegraph(x, p, repeats, w, baseline=True, seed=s))

    reference = next(r for r in rows if r.name == "TraceGraph_ELBO + avg baseline")
    reparam = next(r for r in rows if r.name == "reparam" and r.backend == "numpyro (ppgen)")
    print(
        f"hier_normal at the guide's initial parameters: gradient of the negative ELBO with "
        f"respect to mu_loc; {p} particles, {repeats} estimates each; exact value {exact:.3f}.\n"
        f"(var x ms relative to Pyro's TraceGraph_ELBO + avg baseline; lower is better.)\n"
    )
    header = (
        f"{'estimator':<32}{'backend':<18}{'mean':>9}{'+-se':>7}{'variance':>11}"
        f"{'ms/est':>9}{'var x ms':>11}{'vs Pyro TG+bl':>15}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        se = math.sqrt(r.variance / len(r.grads))
        rel = (r.variance * r.ms) / (reference.variance * reference.ms)
        print(
            f"{r.name:<32}{r.backend:<18}{r.grads.mean():>9.2f}{se:>7.2f}{r.variance:>11.2f}"
            f"{r.ms:>9.3f}{r.variance * r.ms:>11.3f}{rel:>15.4f}"
        )
    print()
    for name in ("score+rb+loo", "score+rb+cv"):
        for backend in ("numpyro (ppgen)", "pyro (ppgen)"):
            r = next(q for q in rows if q.name == name and q.backend == backend)
            gain = (reference.variance * reference.ms) / (r.variance * r.ms)
            print(
                f"{name} on {backend}: {gain:.1f}x better variance x time than Pyro's "
                f"TraceGraph_ELBO + avg baseline; variance {r.variance / reparam.variance:.2f}x "
                "that of reparam."
            )


if __name__ == "__main__":
    main()
