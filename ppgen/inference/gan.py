"""GAN training for implicit models: a generator and a discriminator in a two-player game.

The model generates its observed site from noise and declares it with :func:`ppgen.implicit`
(no likelihood needed). A discriminator ``D`` (a :mod:`ppgen.nn` network supplied by the model, a
preset, or the call) learns to tell real batches from generated ones; the generator learns to
fool it. Each round makes ``k`` discriminator updates, then one generator update (Goodfellow et
al. 2014, Algorithm 1), through the backends' general two-player loop
(:meth:`~ppgen.backends.base.Backend.run_game`).

With ``D`` the probability that its input is real, the discriminator minimizes

    J^D = -E_data[log D(x)] - E_z[log(1 - D(G(z)))]

and the generator minimizes either ``J^G = -J^D`` (``"minimax"``) or ``-E_z[log D(G(z))]``
(``"non_saturating"``, the heuristic of Goodfellow et al. 2014, Sec. 3, that keeps gradients
alive early on). The discriminator's output is a logit (default; losses through softplus, which
is stable) or, as in the tutorial code this module reproduces, a probability clipped to
[0.01, 0.99].

Optional discriminator pre-training: ``"density"`` regresses ``D`` onto a target density the
model supplies, at uniform points of its domain (the 1-D tutorial's trick); ``"discriminator"``
trains ``D`` alone against the initial generator.

References
----------
Goodfellow, I., Pouget-Abadie, J., Mirza, M., Xu, B., Warde-Farley, D., Ozair, S., Courville, A.
& Bengio, Y. (2014). Generative adversarial nets. NeurIPS.
Yazıcı, Y., Foo, C.-S., Winkler, S., Yap, K.-H., Piliouras, G. & Chandrasekhar, V. (2019). The
unusual effectiveness of averaging in GAN training. ICLR.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import ppgen
from ppgen.backends.base import (
    Backend,
    GameConfig,
    OptimConfig,
    Phase,
    Player,
    SVIProblem,
    TracePair,
)
from ppgen.errors import ConfigError, ModelError, suggest
from ppgen.inference.base import FitRequest, FitResult, Method
from ppgen.inference.generate import generate_problem, model_arguments
from ppgen.modeling.implicit import capture_implicit
from ppgen.modeling.model import BoundData, Model
from ppgen.modeling.nn import Network

__all__ = [
    "DEFAULTS",
    "METHOD",
    "GANConfig",
    "GANPreset",
    "GANProgram",
    "density_regression_loss",
    "discriminator_loss",
    "fit",
    "generated_batch",
    "generator_loss",
    "resolve_config",
]

#: Deterministic sites the GAN program records (read by the objectives).
D_REAL, D_FAKE = "_gan.d_real", "_gan.d_fake"
D_PRE, PRE_TARGET = "_gan.d_pre", "_gan.pre_target"

GENERATOR_LOSSES = ("non_saturating", "minimax")
OUTPUTS = ("logit", "probability")
PRETRAIN = ("none", "density", "discriminator")
#: Probability-valued discriminators are clipped into [EPS, 1 - EPS] (as the tutorial code is).
EPS = 0.01

#: Built-in values of the options that a model's preset may set.
DEFAULTS: dict[str, Any] = {
    "lr": 2e-4,
    "generator_loss": "non_saturating",
    "k": 1,
    "discriminator": None,
    "discriminator_output": "logit",
    "optimizer": "adam",
    "discriminator_lr": None,
    "lr_decay": 1.0,
    "staircase": 0,
    "momentum": 0.9,
    "beta1": 0.9,
    "average": 0.0,
    "pretrain": "none",
    "pretrain_steps": 0,
    "site": None,
    "snapshot_every": 0,
    "snapshot_size": 16,
}


@dataclass(frozen=True)
class GANPreset:
    """Settings a model recommends for ``method="gan"``, selected with ``preset=NAME``.

    ``model_args`` are keyword arguments for the model function (its architecture, noise);
    ``options`` are defaults for :class:`GANConfig` fields (and ``"lr"``). Anything the call
    sets explicitly wins.
    """

    model_args: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class GANConfig:
    """Options of ``method="gan"``; ``None`` means "the preset's value, else the default".

    Attributes
    ----------
    preset
        A preset the model offers (``gan1d``: ``"default"``, ``"tutorial"``).
    generator_loss
        ``"non_saturating"`` (default) or ``"minimax"`` (``J^G = -J^D``).
    k
        Discriminator updates per generator update (default 1).
    discriminator
        A :mod:`ppgen.nn` network from data features to one output (default: the model's).
    discriminator_output
        ``"logit"`` (default) or ``"probability"`` (clipped to [0.01, 0.99]).
    optimizer
        ``"adam"`` (default), ``"sgd"`` or ``"momentum"``; each player gets its own.
    discriminator_lr
        The discriminator's learning rate (default: the same as the generator's ``lr``).
    lr_decay, staircase, momentum, beta1
        Learning-rate factor reached at the end; in how many equal stairs (0: smoothly);
        momentum of ``"momentum"``; Adam's first-moment decay (0.5 is common for GANs).
    average
        Decay of a moving average of the generator's parameters (e.g. 0.999; 0: none): the
        fitted generator is the average of its recent iterates, which oscillate around the
        equilibrium (Yazıcı et al. 2019).
    pretrain, pretrain_steps
        Discriminator pre-training: ``"none"``, ``"density"`` (regression onto the model's
        target density) or ``"discriminator"`` (``D`` alone against the initial generator).
    site
        The implicit site to train on (default: the model's only one).
    snapshot_every, snapshot_size
        Keep ``snapshot_size`` generated samples every this many steps (0: never); run
        directories show them as sample grids.
    lr
        Filled in from ``ppgen.fit(lr=...)``, else the preset's, else 2e-4 (the generator's
        learning rate, and the discriminator's unless ``discriminator_lr`` is set).
    """

    preset: str | None = None
    generator_loss: str | None = None
    k: int | None = None
    discriminator: Any = None
    discriminator_output: str | None = None
    optimizer: str | None = None
    discriminator_lr: float | None = None
    lr_decay: float | None = None
    staircase: int | None = None
    momentum: float | None = None
    beta1: float | None = None
    average: float | None = None
    pretrain: str | None = None
    pretrain_steps: int | None = None
    site: str | None = None
    snapshot_every: int | None = None
    snapshot_size: int | None = None
    lr: float | None = None

    def __post_init__(self) -> None:
        _check_choice("generator_loss", self.generator_loss, GENERATOR_LOSSES)
        _check_choice("discriminator_output", self.discriminator_output, OUTPUTS)
        _check_choice("pretrain", self.pretrain, PRETRAIN)
        for name in ("k", "snapshot_size"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("pretrain_steps", "snapshot_every", "staircase"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")
        for name in ("discriminator_lr", "lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}.")
        if self.average is not None and not 0 <= self.average < 1:
            raise ConfigError(f"average must be in [0, 1) (a decay), got {self.average!r}.")
        if self.discriminator is not None and not (
            isinstance(self.discriminator, Network) or callable(self.discriminator)
        ):
            raise ConfigError(
                "discriminator must be a ppgen.nn network such as ppgen.nn.mlp([64, 128, 1]), "
                f"got {type(self.discriminator).__name__}."
            )


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; {suggest(value, choices)}.")


def resolve_config(
    model: Model, config: GANConfig, lr: float | None
) -> tuple[GANConfig, dict[str, Any]]:
    """Fill every option from the call, else the model's preset, else :data:`DEFAULTS`.

    Returns the complete config (``preset`` named, ``lr`` set) and the preset's model arguments.
    """
    presets: Mapping[str, GANPreset] = model.extras.get("gan_presets", {})
    name = config.preset
    if name is None and "default" in presets:
        name = "default"
    if name is not None and name not in presets:
        raise ConfigError(
            f"Model {model.name!r} has no GAN preset {name!r}; "
            f"{suggest(name, presets) if presets else 'it offers none'}."
        )
    preset = presets[name] if name is not None else GANPreset()
    unknown = sorted(set(preset.options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"Preset {name!r} of {model.name!r} sets unknown option {unknown[0]!r}.")
    values = {**DEFAULTS, **preset.options}
    for f in dataclasses.fields(GANConfig):
        given = getattr(config, f.name)
        if given is not None and f.name != "preset":
            values[f.name] = given
    if lr is not None:
        values["lr"] = lr
    if values["discriminator"] is None and "discriminator" in model.extras:
        values["discriminator"] = model.extras["discriminator"]
    return GANConfig(preset=name, **values), dict(preset.model_args)


# -- the program and the objectives --------------------------------------------------------------


class GANProgram:
    """An implicit model wrapped for GAN training: it runs the model, then scores the real and
    generated batches with ``D``, recording the outputs as deterministic sites (``_gan.d_real``,
    ``_gan.d_fake``); with ``density``, also ``D`` and the target density at uniform points of
    ``domain`` (``_gan.d_pre``, ``_gan.pre_target``) for pre-training by regression.

    ``site`` is the implicit site's name once the program has run.
    """

    def __init__(
        self,
        model_fn: Callable[..., Any],
        discriminator: Network,
        site: str | None = None,
        density: Callable[[Any], Any] | None = None,
        domain: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        self.model_fn = model_fn
        self.discriminator = discriminator
        self.site = site
        self.density = density
        self.domain = domain

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.site, fake, real = generated_batch(self.model_fn, self.site, args, kwargs, True)
        D = ppgen.module("discriminator", self.discriminator)
        ppgen.deterministic(D_REAL, D(real))
        ppgen.deterministic(D_FAKE, D(fake))
        if self.density is not None:
            ops = ppgen.ops
            lo, hi = ops.asarray(self.domain[0]), ops.asarray(self.domain[1])
            shape = tuple(real.shape)
            u = ppgen.sample("_gan.pre_x", ppgen.dist.Uniform(lo, hi).expand(shape).to_event(2))
            ppgen.deterministic(D_PRE, D(u))
            ppgen.deterministic(PRE_TARGET, self.density(u))


def generated_batch(
    model_fn: Callable[..., Any],
    site: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    need_real: bool = False,
) -> tuple[str, Any, Any]:
    """Run an implicit model and return ``(site, generated, real)`` of its implicit site."""
    with capture_implicit() as captured:
        model_fn(*args, **kwargs)
    if not captured:
        raise ModelError(
            "The model declares no implicit site, so method='gan' has nothing to train; write its "
            "observation as ppgen.implicit('x', generated, obs=x_batch)."
        )
    if site is None:
        if len(captured) > 1:
            raise ModelError(
                f"The model has several implicit sites ({', '.join(captured)}); choose one with "
                "site=NAME."
            )
        site = next(iter(captured))
    if site not in captured:
        raise ModelError(f"The model has no implicit site {site!r}; {suggest(site, captured)}.")
    fake, real = captured[site]
    if need_real and real is None:
        raise ModelError(
            f"Implicit site {site!r} has no real batch to compare with; pass obs=x_batch."
        )
    return site, fake, real


def _log_d(be: Backend, out: Any, output: str) -> tuple[Any, Any]:
    """``(log D, log(1 - D))`` from the discriminator's raw output."""
    ops = be.ops
    if output == "logit":
        return -ops.softplus(-out), -ops.softplus(out)
    p = ops.clip(out, EPS, 1.0 - EPS)
    return ops.log(p), ops.log(1.0 - p)


def _probability(be: Backend, out: Any, output: str) -> Any:
    return be.ops.sigmoid(out) if output == "logit" else be.ops.clip(out, EPS, 1.0 - EPS)


def discriminator_loss(output: str = "logit") -> Callable[[Backend, TracePair], tuple[Any, Any]]:
    """``J^D = -E[log D(x_real)] - E[log(1 - D(x_fake))]`` (Goodfellow et al. 2014, eq. 1)."""

    def objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
        ops = be.ops
        log_real, _ = _log_d(be, tr.values[D_REAL], output)
        _, log_not_fake = _log_d(be, tr.values[D_FAKE], output)
        loss = -ops.mean(log_real) - ops.mean(log_not_fake)
        return loss, loss

    return objective


def generator_loss(
    kind: str = "non_saturating", output: str = "logit"
) -> Callable[[Backend, TracePair], tuple[Any, Any]]:
    """The generator's loss: ``-E[log D(G(z))]`` or, for ``"minimax"``, ``J^G = -J^D``."""

    def objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
        ops = be.ops
        log_fake, log_not_fake = _log_d(be, tr.values[D_FAKE], output)
        if kind == "non_saturating":
            loss = -ops.mean(log_fake)
            return loss, loss
        # The real-data term has no generator gradient; it is reported so that J^G = -J^D.
        log_real, _ = _log_d(be, tr.values[D_REAL], output)
        surrogate = ops.mean(log_not_fake)
        return surrogate, surrogate + be.stop_gradient(ops.mean(log_real))

    return objective


def density_regression_loss(
    output: str = "logit",
) -> Callable[[Backend, TracePair], tuple[Any, Any]]:
    """Mean squared error between ``D``'s probability and the target density (pre-training)."""

    def objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
        ops = be.ops
        p = _probability(be, tr.values[D_PRE], output)
        loss = ops.mean(ops.square(p - tr.values[PRE_TARGET]))
        return loss, loss

    return objective


# -- fitting -------------------------------------------------------------------------------------


def _no_guide(*args: Any, **kwargs: Any) -> None:
    """Implicit models have nothing to infer: the guide is empty."""


def _discriminator(value: Any, data: BoundData) -> Network:
    net = value(data) if callable(value) and not isinstance(value, Network) else value
    if not isinstance(net, Network):
        raise ConfigError(
            "method='gan' needs a discriminator: pass discriminator=ppgen.nn.mlp([D, 128, 1]) "
            "(D the data's feature count) or attach one to the model."
        )
    return net


def sampler_problem(
    model: Model, problem: SVIProblem, n: int, site: str | None = None
) -> SVIProblem:
    """A problem whose program returns ``n`` generated samples: the model's ``generate``
    program when it has one, else one batch of the model itself (its batch size)."""
    if "generate" in model.extras:
        return generate_problem(model, model_arguments(model, problem.data), n, problem.device)
    fn = model.fn

    def program(*args: Any, **kwargs: Any) -> Any:
        return generated_batch(fn, site, args, kwargs)[1]

    return dataclasses.replace(problem, model=program, guide=_no_guide)


def fit(request: FitRequest, config: GANConfig) -> FitResult:
    """Train the model's generator against a discriminator (Algorithm 1 of Goodfellow et al.)."""
    model, be = request.model, request.backend
    cfg, model_args = resolve_config(model, config, request.lr)
    data = request.problem.data
    data = BoundData(data.args, {**model_args, **data.kwargs})
    net = _discriminator(cfg.discriminator, data)
    cfg = dataclasses.replace(cfg, discriminator=net)
    assert cfg.lr is not None and cfg.pretrain is not None and cfg.k is not None
    density = None
    if cfg.pretrain == "density":
        density = model.extras.get("density")
        if density is None:
            raise ConfigError(
                f"pretrain='density' needs the target density, and model {model.name!r} offers "
                "none; use pretrain='discriminator' or 'none'."
            )
    program = GANProgram(model.fn, net, cfg.site, density, model.extras.get("domain", (-5, 5)))
    problem = dataclasses.replace(request.problem, model=program, guide=_no_guide, data=data)
    output = str(cfg.discriminator_output)

    def optim(lr: float) -> OptimConfig:
        return OptimConfig(
            name=str(cfg.optimizer),
            lr=lr,
            lr_decay=float(cfg.lr_decay or 1.0),
            momentum=float(cfg.momentum or 0.0),
            staircase=int(cfg.staircase or 0),
            beta1=float(cfg.beta1 if cfg.beta1 is not None else 0.9),
        )

    d_optim = optim(cfg.discriminator_lr or cfg.lr)
    disc = Player(
        "discriminator", discriminator_loss(output), ("discriminator",), d_optim, steps=cfg.k
    )
    gen = Player(
        "generator",
        generator_loss(str(cfg.generator_loss), output),
        None,
        optim(cfg.lr),
        average=float(cfg.average or 0.0),
    )
    phases = []
    if cfg.pretrain != "none" and cfg.pretrain_steps:
        pre_loss = density_regression_loss(output) if density is not None else disc.objective
        pre = Player("discriminator", pre_loss, ("discriminator",), d_optim)
        phases.append(Phase((pre,), int(cfg.pretrain_steps), "pretrain"))
    phases.append(Phase((disc, gen), request.steps, "train"))

    snapshots: dict[int, np.ndarray] = {}
    every = int(cfg.snapshot_every or 0)
    snap_problem = sampler_problem(model, problem, int(cfg.snapshot_size or 16), cfg.site)

    def callback(phase: str, rounds: int, state: Any) -> None:
        if phase == "train":
            snapshots[rounds] = np.asarray(be.run_program(snap_problem, state, request.seed))

    outcome = be.run_game(
        problem,
        phases,
        GameConfig(
            seed=request.seed,
            progress=request.progress,
            every=every,
            description=f"{model.name} gan ({be.name})",
        ),
        callback=callback if every else None,
    )
    site = program.site or "x"
    draws = be.run_program(sampler_problem(model, problem, 1000, cfg.site), outcome.state, 1)
    d_loss, g_loss = outcome.losses["train/discriminator"], outcome.losses["train/generator"]
    extras: dict[str, Any] = {"snapshots": snapshots, "site": site}
    if "pretrain/discriminator" in outcome.losses:
        extras["pretrain_losses"] = outcome.losses["pretrain/discriminator"]
    return FitResult(
        model=model,
        method="gan",
        backend=be.name,
        device=problem.device,
        guide="none",
        losses=g_loss,
        params=outcome.params,
        timings=outcome.timings,
        config=cfg,
        problem=problem,
        state=outcome.state,
        draws={site: np.asarray(draws)[None]},
        metrics={"loss_discriminator": d_loss, "loss_generator": g_loss},
        extras=extras,
    )


METHOD = Method(
    name="gan",
    config_type=GANConfig,
    run=fit,
    description="GAN training of implicit models (k discriminator steps per generator step)",
    default_lr=None,
    resumable=False,
)
