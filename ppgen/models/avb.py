"""Models with implicit guides for ``method="avb"`` (Adversarial Variational Bayes).

- ``avb_toy`` is the toy problem of Mescheder et al. (2017, Sec. 6.1): four data points, the
  one-hot vectors of dimension 4, a 2-D standard-normal latent per point and a decoder with a
  categorical likelihood. The best achievable log-likelihood per point is ``-log 4``; a Gaussian
  guide cannot reach it, because the exact posteriors of a good decoder are not Gaussian (they
  tile the plane into four regions). Guides: ``implicit`` (noise + one-hot through an MLP, the
  default, for ``method="avb"``) and ``gaussian`` (a diagonal-Gaussian encoder, for
  ``method="reparam"``: the VAE baseline). Its run directories show ``latent.png``, each data
  point's posterior draws in their own colour.
- ``avb_vae`` is the VAE of :mod:`ppgen.models.vae` (the same decoder, binarized digits) with an
  implicit encoder that takes the image and Gaussian noise.
- ``normal_normal`` (from :mod:`ppgen.models.classic`) gains an ``implicit`` guide, so that AVB
  can be checked against an exact posterior.

References
----------
Mescheder, L., Nowozin, S. & Geiger, A. (2017). Adversarial Variational Bayes: Unifying
Variational Autoencoders and Generative Adversarial Networks. ICML.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import ppgen
from ppgen import dist
from ppgen.data import digits
from ppgen.modeling.nn import mlp
from ppgen.models.classic import normal_normal
from ppgen.models.vae import _check, _decoder, _observe, _prior, _size

__all__ = [
    "TOY_BEST_ELBO",
    "avb_toy",
    "avb_toy_gaussian",
    "avb_toy_implicit",
    "avb_vae",
    "avb_vae_implicit",
    "latent_figure",
    "normal_normal_implicit",
]

#: The best log-likelihood per data point on the toy problem (four equally likely points).
TOY_BEST_ELBO = -math.log(4.0)
#: Categories (and data points) of the toy problem.
TOY_K = 4


def _noise(noise_dim: int) -> Any:
    """Standard-normal guide noise, an auxiliary site (it is not a latent of the model)."""
    ops = ppgen.ops
    return ppgen.sample(
        "eps",
        dist.Normal(ops.zeros(noise_dim), ops.ones(noise_dim)).to_event(1),
        infer={"is_auxiliary": True},
    )


def _with_noise(x: Any, eps: Any) -> Any:
    """``[x, eps]`` along features, ``x`` broadcast over the noise's leading (particle) axes."""
    ops = ppgen.ops
    return ops.concatenate([x + ops.zeros_like(eps[..., :1]), eps], -1)


# -- avb_toy -------------------------------------------------------------------------------------
def _toy_data() -> dict[str, Any]:
    # The four one-hot vectors, stored as their class labels 0..3.
    return {"x": np.arange(4)}


@ppgen.model(data=_toy_data)
def avb_toy(x: Any, z_dim: int = 2, hidden: int = 64, noise_dim: int = 8) -> None:
    """AVB toy problem: x one of 4 categories, z ~ N(0, I_2), categorical MLP decoder."""
    n = x.shape[0]
    decoder = ppgen.module("decoder", mlp([z_dim, hidden, hidden, TOY_K], activation="leaky_relu"))
    with ppgen.plate("data", n):
        z = ppgen.sample("z", _prior(z_dim))
        ppgen.sample("x", dist.Categorical(logits=decoder(z)), obs=x)


@avb_toy.guide(name="implicit", implicit=True)
def avb_toy_implicit(x: Any, z_dim: int = 2, hidden: int = 64, noise_dim: int = 8) -> None:
    """Implicit encoder: z = f(onehot(x), eps), eps ~ N(0, I), an MLP (no density)."""
    n = x.shape[0]
    encoder = ppgen.module(
        "encoder", mlp([TOY_K + noise_dim, hidden, hidden, z_dim], activation="leaky_relu")
    )
    with ppgen.plate("data", n):
        z = encoder(_with_noise(ppgen.ops.eye(TOY_K)[x], _noise(noise_dim)))
        ppgen.sample("z", dist.Delta(z, event_dim=1))


@avb_toy.guide(name="gaussian")
def avb_toy_gaussian(x: Any, z_dim: int = 2, hidden: int = 64, noise_dim: int = 8) -> None:
    """Diagonal-Gaussian encoder (the VAE baseline), same widths as the implicit one."""
    ops = ppgen.ops
    n = x.shape[0]
    encoder = ppgen.module(
        "encoder", mlp([TOY_K, hidden, hidden, 2 * z_dim], activation="leaky_relu")
    )
    with ppgen.plate("data", n):
        h = encoder(ppgen.ops.eye(TOY_K)[x])
        scale = ops.softplus(h[..., z_dim:]) + 1e-3
        ppgen.sample("z", dist.Normal(h[..., :z_dim], scale).to_event(1))


def latent_figure(result: Any, num_samples: int = 500) -> Any:
    """Each data point's posterior draws of ``z`` (first two coordinates) in its own colour."""
    from ppgen.diagnostics.plots import _pyplot

    plt = _pyplot()
    z = np.asarray(result.posterior_samples(num_samples=num_samples, seed=0)["z"])
    fig, ax = plt.subplots(figsize=(5, 5))
    for i in range(z.shape[1]):
        ax.scatter(z[:, i, 0], z[:, i, 1], s=4, alpha=0.5, label=f"x = e{i + 1}")
    ax.set(xlabel="z1", ylabel="z2", title=f"{result.model.name} — {result.method} latent space")
    ax.legend(markerscale=3, loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


avb_toy.extras.update(figures={"latent.png": latent_figure}, best_elbo=TOY_BEST_ELBO)


# -- avb_vae -------------------------------------------------------------------------------------
def _digits() -> dict[str, Any]:
    return {"x": digits(binarize=True, split="train")}


@ppgen.model(data=_digits)
def avb_vae(
    x: Any,
    z_dim: int = 8,
    hidden: int = 128,
    noise_dim: int = 16,
    batch: int | None = 128,
    activation: str = "relu",
) -> None:
    """The VAE of ``vae`` (MLP decoder, Bernoulli pixels) for an implicit encoder."""
    _check("bernoulli", z_dim, hidden)
    n, pixels = x.shape
    decoder = ppgen.module("decoder", _decoder(z_dim, hidden, pixels, "bernoulli", activation))
    with ppgen.plate("data", n, subsample_size=_size(n, batch)) as idx:
        z = ppgen.sample("z", _prior(z_dim))
        _observe("x", decoder(z), "bernoulli", pixels, x[idx])


@avb_vae.guide(name="implicit", implicit=True)
def avb_vae_implicit(
    x: Any,
    z_dim: int = 8,
    hidden: int = 128,
    noise_dim: int = 16,
    batch: int | None = 128,
    activation: str = "relu",
) -> None:
    """Implicit encoder: z = f(x, eps) with an MLP over the image and Gaussian noise."""
    n, pixels = x.shape
    encoder = ppgen.module(
        "encoder", mlp([pixels + noise_dim, hidden, z_dim], activation=activation)
    )
    with ppgen.plate("data", n, subsample_size=_size(n, batch)) as idx:
        z = encoder(_with_noise(x[idx], _noise(noise_dim)))
        ppgen.sample("z", dist.Delta(z, event_dim=1))


def avb_vae_generate(
    n: int,
    shapes: dict[str, tuple[int, ...]],
    z_dim: int = 8,
    hidden: int = 128,
    activation: str = "relu",
    **_: Any,
) -> Any:
    """``n`` images decoded from prior draws (pixel probabilities), shape ``(n, pixels)``."""
    pixels = shapes["x"][1]
    decoder = ppgen.module("decoder", _decoder(z_dim, hidden, pixels, "bernoulli", activation))
    with ppgen.plate("data", n):
        z = ppgen.sample("z", _prior(z_dim))
    return ppgen.ops.sigmoid(decoder(z))


def _avb_vae_artifacts(result: Any) -> dict[str, Any]:
    """Samples and ``quality.json``: the held-out reconstruction term ``E_q[log p(x | z)]`` per
    test image and the training AVB ELBO estimate. An implicit guide has no density, so neither
    the held-out ELBO nor an importance-sampled NLL can be computed."""
    import dataclasses

    from ppgen.backends import get_backend
    from ppgen.diagnostics.images import image_grid_figure, png_bytes
    from ppgen.inference.generate import generate, model_arguments
    from ppgen.modeling.model import BoundData

    if result.state is None:
        return {}
    be = get_backend(result.backend)
    args = model_arguments(result.model, result.problem.data)
    samples = generate(result.model, be, result.state, args, 64, seed=0, device=result.device)
    test = digits(binarize=True, split="test")
    kwargs = {**result.problem.data.kwargs, "x": test, "batch": None}
    heldout = dataclasses.replace(result.problem, data=BoundData((), kwargs))

    def reconstruction(backend: Any, trace: Any) -> Any:
        site = trace.model["x"]
        return backend.ops.sum(backend.ops.reshape(site.log_prob, (trace.particles, -1)), 1)

    per_draw = np.asarray(be.trace_eval(heldout, result.state, reconstruction, 10, 0))
    quality: dict[str, Any] = {
        "heldout": "digits test split",
        "images": len(test),
        "heldout_reconstruction_log_lik": float(per_draw.mean() / len(test)),
        "guide_draws": 10,
    }
    if "elbo" in result.extras:
        quality["train_avb_elbo_estimate"] = float(result.extras["elbo"])
    return {
        "samples.png": png_bytes(image_grid_figure(samples, "samples (decoder means)", cols=8)),
        "quality.json": quality,
    }


avb_vae.extras.update(generate=avb_vae_generate, artifacts=_avb_vae_artifacts, image=True)


# -- normal_normal -------------------------------------------------------------------------------
NN_NOISE_DIM = 4


@normal_normal.guide(name="implicit", implicit=True)
def normal_normal_implicit(x: Any) -> None:
    """Implicit guide on the mean: mu = f(eps), eps ~ N(0, I_4), an MLP (no density)."""
    f = ppgen.module("sampler", mlp([NN_NOISE_DIM, 32, 32, 1], activation="leaky_relu"))
    mu = f(_noise(NN_NOISE_DIM))[..., 0]
    ppgen.sample("mu", dist.Delta(mu))
