"""The variational autoencoder, written once with ppgen primitives (runs on both backends).

A latent ``z ~ N(0, I)`` per image is decoded by an MLP into ``p(x | z)``: independent Bernoulli
pixels (logits) or independent Gaussians (mean and scale). The guide (the encoder) maps each
image to a diagonal Gaussian ``q(z | x)``. Minibatches go through a subsampled plate, so each
step sees ``batch`` images and the ELBO is scaled to the whole data set. Fit it with
``method="reparam"`` (the pathwise gradient of Kingma & Welling), or any other VI method.

Besides the model and its guide, the module provides the programs that run directories and
``ppgen sample`` use: :func:`vae_generate` (images decoded from prior draws) and
:func:`vae_reconstruct` (images decoded from the encoder's mean).

References
----------
Kingma, D. P. & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic backpropagation and approximate
inference in deep generative models. ICML.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np

import ppgen
from ppgen import dist
from ppgen.backends import get_backend
from ppgen.data import digits
from ppgen.errors import ConfigError
from ppgen.inference.generate import generate, model_arguments
from ppgen.modeling.model import BoundData
from ppgen.modeling.nn import MLP, mlp

if TYPE_CHECKING:
    from ppgen.diagnostics.metrics import HeldOutLikelihood
    from ppgen.inference.base import FitResult

__all__ = [
    "LIKELIHOODS",
    "vae",
    "vae_encoder",
    "vae_generate",
    "vae_quality",
    "vae_reconstruct",
]

LIKELIHOODS = ("bernoulli", "gaussian")
#: Smallest scale of the encoder's and the Gaussian decoder's distributions (keeps log q finite).
MIN_SCALE = 1e-3


def _default_data() -> dict[str, Any]:
    return {"x": digits(binarize=True, split="train")}


def _check(likelihood: str, z_dim: int, hidden: int) -> None:
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"Unknown likelihood {likelihood!r}; use 'bernoulli' or 'gaussian'.")
    if int(z_dim) < 1 or int(hidden) < 1:
        raise ConfigError(f"z_dim and hidden must be positive, got {z_dim} and {hidden}.")


def _decoder(z_dim: int, hidden: int, pixels: int, likelihood: str, activation: str) -> MLP:
    out = pixels if likelihood == "bernoulli" else 2 * pixels
    return mlp([z_dim, hidden, out], activation=activation)


def _encoder(z_dim: int, hidden: int, pixels: int, activation: str) -> MLP:
    return mlp([pixels, hidden, 2 * z_dim], activation=activation)


def _size(n: int, batch: int | None) -> int | None:
    """The plate's subsample size, or ``None`` for the whole data set."""
    return None if batch is None or int(batch) >= n else int(batch)


def _observe(name: str, out: Any, likelihood: str, pixels: int, obs: Any) -> Any:
    """``p(x | z)`` from the decoder's output; returns the mean image."""
    ops = ppgen.ops
    if likelihood == "bernoulli":
        ppgen.sample(name, dist.Bernoulli(logits=out).to_event(1), obs=obs)
        return ops.sigmoid(out)
    loc, raw = out[..., :pixels], out[..., pixels:]
    ppgen.sample(name, dist.Normal(loc, ops.softplus(raw) + MIN_SCALE).to_event(1), obs=obs)
    return loc


def _prior(z_dim: int) -> Any:
    ops = ppgen.ops
    return dist.Normal(ops.zeros(z_dim), ops.ones(z_dim)).to_event(1)


@ppgen.model(data=_default_data)
def vae(
    x: Any,
    z_dim: int = 8,
    hidden: int = 128,
    likelihood: str = "bernoulli",
    batch: int | None = 128,
    activation: str = "relu",
) -> None:
    """Variational autoencoder: z ~ N(0, I), MLP decoder, Bernoulli or Gaussian pixels."""
    _check(likelihood, z_dim, hidden)
    n, pixels = x.shape
    decoder = ppgen.module("decoder", _decoder(z_dim, hidden, pixels, likelihood, activation))
    with ppgen.plate("data", n, subsample_size=_size(n, batch)) as idx:
        z = ppgen.sample("z", _prior(z_dim))
        _observe("x", decoder(z), likelihood, pixels, x[idx])


@vae.guide
def vae_encoder(
    x: Any,
    z_dim: int = 8,
    hidden: int = 128,
    likelihood: str = "bernoulli",
    batch: int | None = 128,
    activation: str = "relu",
) -> None:
    """Amortized diagonal-Gaussian guide q(z | x) from an MLP encoder."""
    ops = ppgen.ops
    n, pixels = x.shape
    encoder = ppgen.module("encoder", _encoder(z_dim, hidden, pixels, activation))
    with ppgen.plate("data", n, subsample_size=_size(n, batch)) as idx:
        h = encoder(x[idx])
        loc, scale = h[..., :z_dim], ops.softplus(h[..., z_dim:]) + MIN_SCALE
        ppgen.sample("z", dist.Normal(loc, scale).to_event(1))


def vae_generate(
    n: int,
    shapes: dict[str, tuple[int, ...]],
    z_dim: int = 8,
    hidden: int = 128,
    likelihood: str = "bernoulli",
    activation: str = "relu",
    **_: Any,
) -> Any:
    """``n`` images decoded from prior draws (the decoder's mean), shape ``(n, pixels)``."""
    pixels = shapes["x"][1]
    decoder = ppgen.module("decoder", _decoder(z_dim, hidden, pixels, likelihood, activation))
    with ppgen.plate("data", n):
        z = ppgen.sample("z", _prior(z_dim))
    out = decoder(z)
    return ppgen.ops.sigmoid(out) if likelihood == "bernoulli" else out[..., :pixels]


def vae_reconstruct(
    x: Any,
    z_dim: int = 8,
    hidden: int = 128,
    likelihood: str = "bernoulli",
    activation: str = "relu",
    **_: Any,
) -> Any:
    """Images decoded from the encoder's mean ``E_q[z | x]``, shape of ``x``."""
    pixels = x.shape[1]
    encoder = ppgen.module("encoder", _encoder(z_dim, hidden, pixels, activation))
    decoder = ppgen.module("decoder", _decoder(z_dim, hidden, pixels, likelihood, activation))
    out = decoder(encoder(x)[..., :z_dim])
    return ppgen.ops.sigmoid(out) if likelihood == "bernoulli" else out[..., :pixels]


def _heldout_images(likelihood: str, pixels: int, train: Any) -> tuple[Any, str]:
    """The digits test split when the model was fitted to 64-pixel images, else (no held-out set
    known) the first 500 training images."""
    if pixels == 64:
        return digits(binarize=likelihood == "bernoulli", split="test"), "digits test split"
    return np.asarray(train)[:500], "first 500 training images (no held-out set given)"


def vae_quality(
    result: FitResult, x: Any, particles: int = 1000, seed: int = 0
) -> HeldOutLikelihood:
    """Held-out ELBO and importance-sampled NLL (``particles`` draws per image) of a fitted
    VAE on images ``x``, evaluated in chunks of images without subsampling."""
    from ppgen.diagnostics.metrics import chunks_of, heldout_log_likelihood

    be = get_backend(result.backend)
    x = np.asarray(x, dtype=np.float32)
    kwargs = {**result.problem.data.kwargs, "batch": None}
    # Chunks of images small enough that one batch of draws stays within a few million values.
    size = max(1, min(len(x), 2_000_000 // (min(particles, 250) * x.shape[1])))
    problems = [
        dataclasses.replace(result.problem, data=BoundData((), {**kwargs, "x": x[rows]}))
        for rows in chunks_of(len(x), size)
    ]
    return heldout_log_likelihood(be, result.state, problems, particles=particles, seed=seed)


def _artifacts(result: FitResult) -> dict[str, Any]:
    """Samples, reconstructions and ``quality.json`` (held-out -ELBO, IWAE NLL, baseline)."""
    from ppgen.diagnostics.images import image_grid_figure, png_bytes
    from ppgen.diagnostics.metrics import bernoulli_baseline_nll

    if result.state is None:
        return {}
    be = get_backend(result.backend)
    args = model_arguments(result.model, result.problem.data)
    scalars = {k: v for k, v in args.scalars.items() if k != "batch"}
    likelihood, pixels = str(scalars.get("likelihood", "bernoulli")), args.shapes["x"][1]
    samples = generate(result.model, be, result.state, args, 64, seed=0, device=result.device)
    data = result.problem.data
    train = data.kwargs["x"] if "x" in data.kwargs else data.args[0]
    test, where = _heldout_images(likelihood, pixels, train)

    def program(x: Any) -> Any:
        return vae_reconstruct(x, **scalars)

    shown = np.asarray(test[:32], dtype=np.float32)
    recon_problem = dataclasses.replace(result.problem, model=program, data=BoundData((shown,), {}))
    recon = np.asarray(be.run_program(recon_problem, result.state, 0))
    # Rows alternate: eight originals, then their reconstructions.
    pairs = np.concatenate([np.stack([shown[i : i + 8], recon[i : i + 8]]) for i in (0, 8, 16, 24)])
    particles = 100 if _smoke() else 1000
    held = vae_quality(result, test, particles=particles)
    quality: dict[str, Any] = {
        "heldout": where,
        "images": len(test),
        "heldout_neg_elbo": held.neg_elbo,
        "heldout_nll_iwae": held.nll_mean,
        "iwae_particles": particles,
    }
    if likelihood == "bernoulli":
        quality["independent_bernoulli_nll"] = bernoulli_baseline_nll(train, test)
    return {
        "samples.png": png_bytes(image_grid_figure(samples, "samples (decoder means)", cols=8)),
        "reconstructions.png": png_bytes(
            image_grid_figure(pairs.reshape(-1, pixels), "originals / reconstructions", cols=8)
        ),
        "quality.json": quality,
    }


def _smoke() -> bool:
    """Tutorials and CI smoke runs ask for cheap reports."""
    return bool(os.environ.get("PPGEN_SMOKE") or os.environ.get("CI"))


vae.extras.update(
    generate=vae_generate, reconstruct=vae_reconstruct, artifacts=_artifacts, image=True
)
