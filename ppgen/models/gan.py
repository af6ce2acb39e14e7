"""Implicit models for ``method="gan"``: a 1-D GAN and an MLP GAN on digits (or MNIST).

Both are written once with ppgen primitives and :mod:`ppgen.nn`, so they train on either backend.
Each declares its observation with :func:`ppgen.implicit` (a generator's output, no likelihood),
carries the discriminator it is trained against, presets of GAN options, and a ``generate``
program that ``ppgen sample`` and the run directory's sample grids use.

- ``gan1d`` learns N(-1, 1). ``preset="tutorial"`` follows the classic 1-D example (tanh MLPs
  1-6-5-1, generator output scaled by 5, stratified noise on [-5, 5], a probability-valued
  discriminator pre-trained by regression onto the target density, momentum 0.6, learning rate
  0.001 decayed by 0.95 at each quarter of the run, batch 200); ``preset="default"`` fits well.
- ``mlp_gan`` is the MLP GAN of the MNIST tutorial (generator 100 -> 128 -> pixels with ReLU and a
  sigmoid output, discriminator pixels -> 128 -> 1, noise U(-1, 1), batch 128, Adam), on the
  64-pixel digits by default and on 784 pixels when given MNIST images; it keeps a 4x4 grid of
  samples every 1,000 steps.

References
----------
Goodfellow, I., Pouget-Abadie, J., Mirza, M., Xu, B., Warde-Farley, D., Ozair, S., Courville, A.
& Bengio, Y. (2014). Generative adversarial nets. NeurIPS.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

import ppgen
from ppgen import dist
from ppgen.backends import get_backend
from ppgen.data import digits, gaussian_1d
from ppgen.errors import ConfigError
from ppgen.inference.gan import EPS, GANPreset
from ppgen.inference.generate import generate, model_arguments
from ppgen.modeling.model import BoundData
from ppgen.modeling.nn import MLP, mlp

if TYPE_CHECKING:
    from ppgen.inference.base import FitResult

__all__ = [
    "GAN1D_MEAN",
    "GAN1D_SD",
    "gan1d",
    "gan1d_generate",
    "gan1d_picture",
    "mlp_gan",
    "mlp_gan_generate",
]

# -- gan1d ---------------------------------------------------------------------------------------
GAN1D_MEAN, GAN1D_SD = -1.0, 1.0
GAN1D_PRESETS = ("default", "tutorial")
#: The tutorial's noise range and discriminator-pre-training domain.
TUTORIAL_RANGE = (-5.0, 5.0)


def _gan1d_data() -> dict[str, Any]:
    return {"x": gaussian_1d(100_000, GAN1D_MEAN, GAN1D_SD, seed=0)[:, None]}


def _gan1d_generator(preset: str) -> MLP:
    if preset == "tutorial":
        return mlp([1, 6, 5, 1], activation="tanh", output="tanh", output_scale=5.0)
    if preset == "default":
        return mlp([1, 32, 32, 1], activation="leaky_relu")
    raise ConfigError(f"Unknown gan1d preset {preset!r}; use 'default' or 'tutorial'.")


def _gan1d_noise(n: int, preset: str) -> Any:
    """Noise for ``n`` samples, drawn inside the caller's plate of size ``n``."""
    ops = ppgen.ops
    if preset == "tutorial":
        # Stratified: one uniform draw in each of n equal cells of [-5, 5].
        u = ppgen.sample("z", dist.Uniform(ops.asarray(0.0), ops.asarray(1.0)))
        lo, hi = TUTORIAL_RANGE
        return lo + (hi - lo) * (ops.arange(n) + u) / n
    return ppgen.sample("z", dist.Normal(ops.asarray(0.0), ops.asarray(1.0)))


@ppgen.model(data=_gan1d_data)
def gan1d(x: Any, preset: str = "default", batch: int = 256) -> None:
    """1-D GAN: a generator MLP maps noise to samples of N(-1, 1) (implicit, for method='gan')."""
    n = x.shape[0]
    size = min(int(batch), n)
    G = ppgen.module("generator", _gan1d_generator(preset))
    with ppgen.plate("data", n, subsample_size=size) as idx:
        z = _gan1d_noise(size, preset)
        ppgen.implicit("x", G(z[..., None]), obs=x[idx])


def gan1d_generate(n: int, shapes: Any = None, preset: str = "default", **_: Any) -> Any:
    """``n`` fresh samples of the fitted ``gan1d`` generator, shape ``(n, 1)``."""
    G = ppgen.module("generator", _gan1d_generator(preset))
    with ppgen.plate("data", n):
        z = _gan1d_noise(n, preset)
    return G(z[..., None])


def _normal_pdf(x: Any) -> Any:
    ops = ppgen.ops
    z = (x - GAN1D_MEAN) / GAN1D_SD
    return ops.exp(-0.5 * ops.square(z)) / (GAN1D_SD * math.sqrt(2.0 * math.pi))


def _discriminator_on(result: FitResult, x: np.ndarray) -> np.ndarray:
    """The fitted discriminator's probability that each row of ``x`` is real."""
    cfg = result.config
    be = get_backend(result.backend)

    def program(x: Any) -> Any:
        out = ppgen.module("discriminator", cfg.discriminator)(x)
        if cfg.discriminator_output == "logit":
            return ppgen.ops.sigmoid(out)
        return ppgen.ops.clip(out, EPS, 1.0 - EPS)

    problem = dataclasses.replace(result.problem, model=program, data=BoundData((x,), {}))
    return np.asarray(be.run_program(problem, result.state, 0))


def gan1d_picture(result: FitResult, samples: int = 100_000) -> tuple[Any, dict[str, Any]]:
    """The tutorial-style picture of a fitted ``gan1d`` (p_data, the discriminator's decision
    boundary ``D(x)``, and p_g from ``samples`` draws) and the draws' quality against N(-1, 1)
    (W1, KS, mean, sd)."""
    from scipy import stats

    from ppgen.diagnostics.images import gan1d_figure
    from ppgen.diagnostics.metrics import one_d_quality

    be = get_backend(result.backend)
    args = model_arguments(result.model, result.problem.data)
    x = generate(result.model, be, result.state, args, samples, seed=0, device=result.device)
    target = stats.norm(GAN1D_MEAN, GAN1D_SD)
    quality = {**dataclasses.asdict(one_d_quality(x, target)), "samples": len(x)}
    grid = np.linspace(*TUTORIAL_RANGE, 401, dtype=np.float32)[:, None]
    decision = _discriminator_on(result, grid)
    title = f"gan1d, {result.config.preset} preset ({result.backend})"
    return gan1d_figure(grid, target.pdf(grid), decision, x, title), quality


def _gan1d_artifacts(result: FitResult) -> dict[str, Any]:
    """``gan1d.png`` (:func:`gan1d_picture`) and ``quality.json`` (its numbers)."""
    from ppgen.diagnostics.images import png_bytes

    if result.method != "gan" or result.state is None:
        return {}
    figure, quality = gan1d_picture(result)
    return {"gan1d.png": png_bytes(figure), "quality.json": quality}


gan1d.extras.update(
    artifacts=_gan1d_artifacts,
    generate=gan1d_generate,
    density=_normal_pdf,
    domain=TUTORIAL_RANGE,
    target=(GAN1D_MEAN, GAN1D_SD),
    discriminator=mlp([1, 64, 64, 1], activation="leaky_relu"),
    gan_presets={
        # Fits well in 5,000 steps (W1 ~ 0.02, KS ~ 0.015 against N(-1, 1)): a piecewise-linear
        # generator extrapolates into the tails as the target does, and three discriminator
        # updates per generator update keep D close to optimal as the rate decays.
        "default": GANPreset(
            model_args={"preset": "default", "batch": 256},
            options={"lr": 1e-3, "lr_decay": 0.01, "k": 3, "generator_loss": "non_saturating"},
            description="leaky-ReLU nets (G 1-32-32-1, D 1-64-64-1), k=3, Adam 1e-3 decayed x0.01",
        ),
        "tutorial": GANPreset(
            model_args={"preset": "tutorial", "batch": 200},
            options={
                "discriminator": mlp([1, 6, 5, 1], activation="tanh", output="tanh"),
                "discriminator_output": "probability",
                "optimizer": "momentum",
                "momentum": 0.6,
                "lr": 0.001,
                "lr_decay": 0.95**4,
                "staircase": 4,
                "pretrain": "density",
                "pretrain_steps": 1000,
                "generator_loss": "non_saturating",
            },
            description="the classic 1-D example: tanh 1-6-5-1 nets, momentum, D pre-training",
        ),
    },
)


# -- mlp_gan -------------------------------------------------------------------------------------
def _mlp_gan_data() -> dict[str, Any]:
    return {"x": digits(binarize=False, split="train")}


def _mlp_generator(noise_dim: int, hidden: int, pixels: int) -> MLP:
    return mlp([noise_dim, hidden, pixels], activation="relu", output="sigmoid")


def _uniform_noise(noise_dim: int) -> Any:
    ops = ppgen.ops
    return ppgen.sample(
        "z",
        dist.Uniform(-ops.ones(noise_dim), ops.ones(noise_dim)).to_event(1),
    )


@ppgen.model(data=_mlp_gan_data)
def mlp_gan(x: Any, noise_dim: int = 100, hidden: int = 128, batch: int = 128) -> None:
    """MLP GAN: noise U(-1, 1)^100 -> 128 ReLU -> sigmoid pixels (digits; MNIST with 784 px)."""
    n, pixels = x.shape
    size = min(int(batch), n)
    G = ppgen.module("generator", _mlp_generator(noise_dim, hidden, pixels))
    with ppgen.plate("data", n, subsample_size=size) as idx:
        z = _uniform_noise(noise_dim)
        ppgen.implicit("x", G(z), obs=x[idx])


def mlp_gan_generate(
    n: int, shapes: dict[str, tuple[int, ...]], noise_dim: int = 100, hidden: int = 128, **_: Any
) -> Any:
    """``n`` fresh images from the fitted ``mlp_gan`` generator, shape ``(n, pixels)``."""
    pixels = shapes["x"][1]
    G = ppgen.module("generator", _mlp_generator(noise_dim, hidden, pixels))
    with ppgen.plate("data", n):
        z = _uniform_noise(noise_dim)
    return G(z)


def _mlp_discriminator(data: BoundData) -> MLP:
    x = data.kwargs["x"] if "x" in data.kwargs else data.args[0]
    pixels = int(np.shape(x)[1])
    hidden = int(data.kwargs.get("hidden", 128))
    return mlp([pixels, hidden, 1], activation="relu")


def _mlp_gan_artifacts(result: FitResult) -> dict[str, Any]:
    """A grid of 64 samples and, on the 64-pixel digits, ``quality.json``: the Fréchet
    classifier distance of 1437 samples to the test split, the train-vs-test floor, and the
    class coverage."""
    from ppgen.diagnostics.images import image_grid_figure, png_bytes
    from ppgen.diagnostics.metrics import digits_quality

    if result.method != "gan" or result.state is None:
        return {}
    be = get_backend(result.backend)
    args = model_arguments(result.model, result.problem.data)
    samples = generate(result.model, be, result.state, args, 64, seed=0, device=result.device)
    out: dict[str, Any] = {"samples.png": png_bytes(image_grid_figure(samples, "samples", 8))}
    if args.shapes["x"][1] == 64:
        many = generate(result.model, be, result.state, args, 1437, seed=1, device=result.device)
        out["quality.json"] = digits_quality(many).to_dict()
    return out


mlp_gan.extras.update(
    artifacts=_mlp_gan_artifacts,
    generate=mlp_gan_generate,
    discriminator=_mlp_discriminator,
    image=True,
    gan_presets={
        # The tutorial's Adam at 1e-3 for the generator; the discriminator learns five times
        # more slowly (two time scales, Heusel et al. 2017), which keeps it from overfitting the
        # 1,437 training digits, and the generator is averaged over its recent iterates. On the
        # digits this reaches about 1.4-1.7 times the real-vs-real Fréchet floor in 30,000 steps
        # with every class at 7-13% of samples (plain Adam 1e-3 for both: 5x the floor).
        "default": GANPreset(
            model_args={},
            options={
                "lr": 1e-3,
                "discriminator_lr": 2e-4,
                "average": 0.999,
                "snapshot_every": 1000,
                "snapshot_size": 16,
            },
            description="Adam 1e-3 (D 2e-4), generator average 0.999, 4x4 grids every 1000",
        ),
    },
)
