"""Sample quality of ppgen's deep generative models, against plain NumPyro and the targets of
issue 5, in one table (seeds fixed).

* **VAE** (64-128-8, Bernoulli pixels, batch 128, Adam 1e-3, 10,000 steps) on the binarized
  digits: held-out negative ELBO and the importance-sampled NLL with K = 1,000 guide draws per
  test image (the IWAE bound, Burda et al. 2016), for ``ppgen.fit("vae")`` on each backend and for
  a plain NumPyro VAE of the same architecture, optimizer and steps (``numpyro.infer.SVI`` with
  ``Trace_ELBO``, Flax networks), whose bounds are computed by hand here rather than by ppgen.
  Target: ppgen's IWAE NLL no worse than the plain VAE's + 0.2 nats.
* **gan1d** (target N(-1, 1)): Wasserstein-1 and KS statistic of 100,000 samples, for five seeds,
  with the tutorial preset and the default preset. Target (default preset): W1 <= 0.05 and
  KS <= 0.03 in at least 4 of 5 seeds.
* **mlp_gan** on the 8x8 digits: the Fréchet distance of 1,437 samples to the test split in the
  features of ppgen's digit classifier, the real-vs-real floor (training split vs test split),
  and class coverage. Target: distance <= 1.5 x floor, every class between 5% and 15%.

Run ``python benchmarks/quality.py`` (``--quick`` for a smoke run, ``--help`` for options). The
table is printed and written, with every number, to ``--out`` (JSON).
"""

from __future__ import annotations

import os

# One XLA CPU thread, as one torch thread: set before JAX is imported.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import optax
import torch
from numpyro.contrib.module import flax_module
from numpyro.infer import SVI, Trace_ELBO
from scipy import special, stats

import ppgen
from ppgen.backends import get_backend
from ppgen.data import digits
from ppgen.diagnostics.metrics import bernoulli_baseline_nll, digits_quality, one_d_quality
from ppgen.inference.generate import generate, model_arguments
from ppgen.models.gan import GAN1D_MEAN, GAN1D_SD
from ppgen.models.vae import vae_quality

__all__ = ["BenchConfig", "Row", "main", "plain_numpyro_vae"]

BACKENDS = ("numpyro", "pyro")


@dataclass(frozen=True)
class BenchConfig:
    """How much to run."""

    vae_steps: int = 10_000
    iwae_particles: int = 1000
    gan1d_steps: int = 5000
    gan1d_seeds: int = 5
    gan1d_tutorial_backends: tuple[str, ...] = ("numpyro",)
    mlp_gan_steps: int = 30_000
    backends: tuple[str, ...] = BACKENDS
    seed: int = 0


@dataclass
class Row:
    """One line of the table."""

    model: str
    what: str
    backend: str
    value: str
    target: str = ""
    ok: bool | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


# -- VAE -----------------------------------------------------------------------------------------
class _MLP(fnn.Module):
    sizes: tuple[int, ...]

    @fnn.compact
    def __call__(self, x: Any) -> Any:
        for i, width in enumerate(self.sizes):
            x = fnn.Dense(width)(x)
            if i < len(self.sizes) - 1:
                x = fnn.relu(x)
        return x


Z, HIDDEN, PIXELS, BATCH, MIN_SCALE = 8, 128, 64, 128, 1e-3
ENCODER, DECODER = _MLP((HIDDEN, 2 * Z)), _MLP((HIDDEN, PIXELS))


def _plain_model(x: Any) -> None:
    decoder = flax_module("decoder", DECODER, input_shape=(1, Z))
    with numpyro.plate("data", x.shape[0], subsample_size=BATCH) as idx:
        z = numpyro.sample("z", ndist.Normal(jnp.zeros(Z), jnp.ones(Z)).to_event(1))
        numpyro.sample("x", ndist.Bernoulli(logits=decoder(z)).to_event(1), obs=x[idx])


def _plain_guide(x: Any) -> None:
    encoder = flax_module("encoder", ENCODER, input_shape=(1, PIXELS))
    with numpyro.plate("data", x.shape[0], subsample_size=BATCH) as idx:
        h = encoder(x[idx])
        scale = jax.nn.softplus(h[..., Z:]) + MIN_SCALE
        numpyro.sample("z", ndist.Normal(h[..., :Z], scale).to_event(1))


def plain_numpyro_vae(x: np.ndarray, steps: int, seed: int) -> dict[str, Any]:
    """The same VAE written directly in NumPyro, trained with ``SVI.run``; fitted params."""
    svi = SVI(_plain_model, _plain_guide, optax.adam(1e-3), Trace_ELBO())
    out = svi.run(jax.random.PRNGKey(seed), steps, jnp.asarray(x), progress_bar=False)
    return dict(out.params)


def plain_bounds(params: dict[str, Any], x: np.ndarray, particles: int, seed: int) -> Any:
    """Per-image ELBO and IWAE NLL of the plain VAE, written out by hand."""
    enc = {"params": params["encoder$params"]}
    dec = {"params": params["decoder$params"]}

    @jax.jit
    def log_weights(xb: Any, key: Any) -> Any:
        h = ENCODER.apply(enc, xb)
        loc, scale = h[..., :Z], jax.nn.softplus(h[..., Z:]) + MIN_SCALE
        z = loc + scale * jax.random.normal(key, (250, *loc.shape))
        log_q = jax.scipy.stats.norm.logpdf(z, loc, scale).sum(-1)
        log_pz = jax.scipy.stats.norm.logpdf(z).sum(-1)
        logits = DECODER.apply(dec, z)
        log_px = -(jax.nn.softplus(-logits) * xb + jax.nn.softplus(logits) * (1 - xb)).sum(-1)
        return log_pz + log_px - log_q

    elbo, nll = [], []
    for start in range(0, len(x), 40):
        xb = jnp.asarray(x[start : start + 40])
        keys = jax.random.split(jax.random.PRNGKey(seed + start), particles // 250)
        lw = np.concatenate([np.asarray(log_weights(xb, k)) for k in keys]).astype(np.float64)
        elbo.append(lw.mean(0))
        nll.append(-(special.logsumexp(lw, axis=0) - np.log(len(lw))))
    return float(-np.concatenate(elbo).mean()), float(np.concatenate(nll).mean())


def bench_vae(cfg: BenchConfig) -> list[Row]:
    train, test = digits(split="train"), digits(split="test")
    rows = [
        Row("vae", "independent-Bernoulli NLL", "-", f"{bernoulli_baseline_nll(train, test):.3f}")
    ]
    t = time.perf_counter()
    params = plain_numpyro_vae(train, cfg.vae_steps, cfg.seed)
    neg_elbo, nll = plain_bounds(params, test, cfg.iwae_particles, cfg.seed)
    plain = {"neg_elbo": neg_elbo, "nll": nll, "seconds": time.perf_counter() - t}
    rows.append(Row("vae", "held-out -ELBO", "plain numpyro", f"{neg_elbo:.3f}", numbers=plain))
    rows.append(
        Row("vae", f"IWAE-{cfg.iwae_particles} NLL", "plain numpyro", f"{nll:.3f}", numbers=plain)
    )
    for backend in cfg.backends:
        t = time.perf_counter()
        result = ppgen.fit(
            "vae", backend=backend, steps=cfg.vae_steps, lr=1e-3, seed=cfg.seed, progress=False
        )
        held = vae_quality(result, test, particles=cfg.iwae_particles, seed=cfg.seed)
        numbers = {
            "neg_elbo": held.neg_elbo,
            "nll": held.nll_mean,
            "seconds": time.perf_counter() - t,
        }
        rows.append(Row("vae", "held-out -ELBO", backend, f"{held.neg_elbo:.3f}", numbers=numbers))
        ok = held.nll_mean <= nll + 0.2
        rows.append(
            Row(
                "vae",
                f"IWAE-{cfg.iwae_particles} NLL",
                backend,
                f"{held.nll_mean:.3f}",
                f"<= {nll + 0.2:.3f} (plain + 0.2)",
                ok,
                numbers,
            )
        )
    return rows


# -- GANs ----------------------------------------------------------------------------------------
def bench_gan1d(cfg: BenchConfig) -> list[Row]:
    rows = []
    target = stats.norm(GAN1D_MEAN, GAN1D_SD)
    for preset in ("default", "tutorial"):
        backends = cfg.backends if preset == "default" else cfg.gan1d_tutorial_backends
        for backend in backends:
            per_seed = []
            for seed in range(cfg.gan1d_seeds):
                result = ppgen.fit(
                    "gan1d",
                    method="gan",
                    backend=backend,
                    steps=cfg.gan1d_steps,
                    seed=seed,
                    preset=preset,
                    progress=False,
                )
                be = get_backend(backend)
                args = model_arguments(result.model, result.problem.data)
                x = generate(result.model, be, result.state, args, 100_000, seed=1000 + seed)
                per_seed.append(asdict(one_d_quality(x, target)))
            good = sum(q["w1"] <= 0.05 and q["ks"] <= 0.03 for q in per_seed)
            w1 = " ".join(f"{q['w1']:.3f}" for q in per_seed)
            ks = " ".join(f"{q['ks']:.3f}" for q in per_seed)
            is_default = preset == "default"
            numbers = {"seeds": per_seed, "good_seeds": good}
            rows.append(
                Row(
                    "gan1d",
                    f"{preset}: W1 per seed",
                    backend,
                    w1,
                    "<= 0.05" if is_default else "",
                    None,
                    numbers,
                )
            )
            rows.append(
                Row(
                    "gan1d",
                    f"{preset}: KS per seed",
                    backend,
                    ks,
                    "<= 0.03, both in >= 4 of 5 seeds" if is_default else "",
                    (good >= 4) if is_default else None,
                    numbers,
                )
            )
    return rows


def bench_mlp_gan(cfg: BenchConfig) -> list[Row]:
    rows = []
    for backend in cfg.backends:
        t = time.perf_counter()
        result = ppgen.fit(
            "mlp_gan",
            method="gan",
            backend=backend,
            steps=cfg.mlp_gan_steps,
            seed=cfg.seed,
            progress=False,
        )
        be = get_backend(backend)
        args = model_arguments(result.model, result.problem.data)
        images = generate(result.model, be, result.state, args, 1437, seed=1)
        q = digits_quality(images)
        numbers = {**q.to_dict(), "seconds": time.perf_counter() - t}
        covered = bool(np.all((q.coverage >= 0.05) & (q.coverage <= 0.15)))
        rows.append(
            Row(
                "mlp_gan",
                "Fréchet classifier distance (floor)",
                backend,
                f"{q.frechet:.3f} ({q.floor:.3f}; x{q.ratio:.2f})",
                "<= 1.5 x floor",
                q.ratio <= 1.5,
                numbers,
            )
        )
        cov = " ".join(f"{c:.3f}" for c in q.coverage)
        rows.append(
            Row("mlp_gan", "class coverage 0-9", backend, cov, "each in [0.05, 0.15]", covered)
        )
    return rows


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""
    head = "| model | measure | backend | value | target | met |\n|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        met = "" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(f"| {r.model} | {r.what} | {r.backend} | {r.value} | {r.target} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Tiny settings (smoke run).")
    parser.add_argument("--only", choices=["vae", "gan1d", "mlp_gan"], action="append")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = BenchConfig(backends=tuple(args.backends.split(",")))
    if args.quick:
        cfg = BenchConfig(
            vae_steps=200,
            iwae_particles=250,
            gan1d_steps=100,
            gan1d_seeds=2,
            mlp_gan_steps=200,
            backends=cfg.backends,
        )
    parts = args.only or ["vae", "gan1d", "mlp_gan"]
    rows: list[Row] = []
    start = time.perf_counter()
    for part in parts:
        rows += {"vae": bench_vae, "gan1d": bench_gan1d, "mlp_gan": bench_mlp_gan}[part](cfg)
        print(table(rows), flush=True)
        print(flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "config": asdict(cfg),
        "seconds": time.perf_counter() - start,
        "rows": [asdict(r) for r in rows],
    }
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
