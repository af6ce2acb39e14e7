"""Adversarial Variational Bayes: an implicit guide trained against a discriminator.

The guide is an implicit sampler: it maps data and noise through a network to the latents and
records them as sample sites (a ``Delta`` at the network's output), so it has no usable density
and ``log q(z | x)`` cannot enter the ELBO. A discriminator ``T(x, z)`` is trained with the
logistic loss to tell pairs ``(x, z ~ q(z | x))`` from pairs ``(x, z ~ p(z))``,

    J^T = E_q[softplus(-T(x, z))] + E_p[softplus(T(x, z))],

whose minimizer is ``T*(x, z) = log q(z | x) - log p(z)``. Substituted into the ELBO it gives the
objective the model and the guide maximize together,

    ELBO ≈ E_q[log p(x | z) - T(x, z)],

with ``T`` held fixed (its gradient in ``z`` still flows into the guide; Mescheder et al. 2017,
Proposition 2). Each round makes ``discriminator_steps`` updates of ``T``, then one update of the
model and the guide, through the backends' general game loop
(:meth:`~ppgen.backends.base.Backend.run_game`). The reported loss is the negative ELBO
estimate; it is only as good as ``T`` is close to its optimum.

``T`` sees the concatenation of the model's latent sites (events flattened) and of the observed
sites that sit in exactly the same plates (for a global latent, the data are a constant and are
left out). It is a :mod:`ppgen.nn` network declared as ``ppgen.module("discriminator", ...)``:
the call's ``discriminator=``, else the model's ``extras["discriminator"]``, else a leaky-ReLU
MLP with two hidden layers of ``hidden`` units.

A discriminator that saturates (its loss stuck near zero or unchanged, or ``|T|`` beyond
``t_limit``) makes the ELBO estimate meaningless; it is reported with a :class:`AVBWarning`
naming the round, and a non-finite loss stops the run with the round named.

References
----------
Mescheder, L., Nowozin, S. & Geiger, A. (2017). Adversarial Variational Bayes: Unifying
Variational Autoencoders and Generative Adversarial Networks. ICML.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import ppgen
from ppgen.backends.base import (
    Backend,
    GameConfig,
    OptimConfig,
    Phase,
    Player,
    TracePair,
)
from ppgen.errors import ConfigError, ModelError, NonFiniteError
from ppgen.inference.base import FitRequest, FitResult, Method
from ppgen.modeling.context import current
from ppgen.modeling.model import BoundData
from ppgen.modeling.nn import Network, mlp

__all__ = [
    "METHOD",
    "PRIOR_PREFIX",
    "T_P",
    "T_Q",
    "AVBConfig",
    "AVBProgram",
    "AVBWarning",
    "check_saturation",
    "discriminator_loss",
    "elbo_particles",
    "fit",
    "generator_loss",
]

#: Deterministic sites the AVB program records: ``T`` at the guide's and at the prior's draws.
T_Q, T_P = "_avb.t_q", "_avb.t_p"
#: Prefix of the model sites holding the prior draws the discriminator is shown.
PRIOR_PREFIX = "_avb.prior."
#: Default learning rate of the model and guide (and of ``T`` unless set apart).
DEFAULT_LR = 1e-3


class AVBWarning(RuntimeWarning):
    """The discriminator saturated or stalled, so the AVB ELBO estimate is unreliable."""


@dataclass(frozen=True)
class AVBConfig:
    """Options of ``method="avb"``.

    Attributes
    ----------
    discriminator_steps
        Updates of ``T`` per update of the model and guide (``T`` must track the moving ``q``).
    discriminator_lr
        Learning rate of ``T`` (default: the fit's ``lr``, itself 1e-3 by default).
    pretrain_steps
        Updates of ``T`` alone against the initial guide before the game, so that the first ELBO
        gradients already see a useful ``T``.
    discriminator
        A :mod:`ppgen.nn` network from ``x``-features + ``z``-features to one output, or a
        callable ``(BoundData) -> network`` (default: the model's, else an MLP).
    hidden
        Width of the default discriminator's two hidden layers.
    optimizer, lr_decay, clip_norm
        Each player's optimizer (``"adam"``, ``"sgd"``, ``"momentum"``), the learning-rate
        factor reached at the end, and gradient-norm clipping.
    saturation_loss
        A discriminator loss below this (it separates ``q`` from the prior almost perfectly,
        so ``T`` grows without bound) counts as saturated.
    t_limit
        ``|T|`` above this at the end of the run counts as exploding.
    patience
        Rounds in a row the loss must be saturated or unchanged before it is reported.
    """

    discriminator_steps: int = 1
    discriminator_lr: float | None = None
    pretrain_steps: int = 0
    discriminator: Any = None
    hidden: int = 256
    optimizer: str = "adam"
    lr_decay: float = 1.0
    clip_norm: float | None = None
    saturation_loss: float = 1e-3
    t_limit: float = 1e3
    patience: int = 20

    def __post_init__(self) -> None:
        for name in ("discriminator_steps", "hidden", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if int(self.pretrain_steps) != self.pretrain_steps or self.pretrain_steps < 0:
            raise ConfigError(
                f"pretrain_steps must be a non-negative integer, got {self.pretrain_steps!r}."
            )
        for name in ("discriminator_lr", "clip_norm"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value!r}.")
        if not (self.t_limit > 0 and self.saturation_loss >= 0):
            raise ConfigError(
                f"t_limit must be positive and saturation_loss non-negative, got {self.t_limit} "
                f"and {self.saturation_loss}."
            )
        if self.discriminator is not None and not (
            isinstance(self.discriminator, Network) or callable(self.discriminator)
        ):
            raise ConfigError(
                "discriminator must be a ppgen.nn network such as ppgen.nn.mlp([6, 256, 1]), "
                f"got {type(self.discriminator).__name__}."
            )


# -- the program the backends trace --------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    name: str
    value: Any
    fn: Any
    observed: bool
    plates: frozenset[str]


def _record_sites(fn: Callable[..., Any], args: Any, kwargs: Any) -> list[_Record]:
    """Run ``fn`` under the active backend's trace handler and return its sample sites (values
    as the enclosing handlers set them, i.e. the guide's draws for the latents)."""
    if current().backend == "pyro":
        from pyro import poutine

        with poutine.trace() as tracer:
            fn(*args, **kwargs)
        nodes = tracer.trace.nodes
    else:
        from numpyro import handlers

        with handlers.trace() as nodes:
            fn(*args, **kwargs)
    out = []
    for name, msg in nodes.items():
        if msg["type"] != "sample" or (msg.get("infer") or {}).get("_deterministic"):
            continue
        if type(msg["fn"]).__name__ == "_Subsample":
            continue
        plates = frozenset(f.name for f in msg["cond_indep_stack"])
        out.append(_Record(name, msg["value"], msg["fn"], bool(msg["is_observed"]), plates))
    return out


def _features(value: Any, fn: Any) -> Any:
    """``value`` with its event dimensions flattened into one trailing feature axis."""
    event = len(getattr(fn, "event_shape", ()))
    # Integer observations (class labels) become numbers the network can read.
    value = value * 1.0
    if event == 0:
        return value[..., None]
    shape = tuple(value.shape)
    return ppgen.ops.reshape(value, (*shape[: len(shape) - event], -1))


class AVBProgram:
    """The model followed by the discriminator: it runs the model (whose latents the backend
    replays from the implicit guide), draws the same latents from their priors
    (``_avb.prior.<name>`` sites), and records ``T`` at both (``_avb.t_q``, ``_avb.t_p``).

    ``net`` is the discriminator, or ``None`` to build the default MLP with ``hidden`` units once
    the input width is known (the program is made once per fit).
    """

    def __init__(self, model_fn: Callable[..., Any], net: Network | None, hidden: int) -> None:
        self.model_fn = model_fn
        self.net = net
        self.hidden = hidden

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ops = ppgen.ops
        sites = _record_sites(self.model_fn, args, kwargs)
        latents = [s for s in sites if not s.observed]
        if not latents:
            raise ModelError(
                "The model has no latent sample site, so method='avb' has nothing to infer; use "
                "method='gan' for implicit models or give the model a latent variable."
            )
        plates = latents[0].plates
        odd = [s.name for s in latents if s.plates != plates]
        if odd:
            raise ModelError(
                f"Latent sites {latents[0].name!r} and {odd[0]!r} sit in different plates, which "
                "the default AVB discriminator cannot pair up; give them the same plates."
            )
        z_q = ops.concatenate([_features(s.value, s.fn) for s in latents], -1)
        # Prior draws outside the plates: their distributions already carry the batch shape.
        z_p = ops.concatenate(
            [_features(ppgen.sample(PRIOR_PREFIX + s.name, s.fn), s.fn) for s in latents], -1
        )
        data = [_features(s.value, s.fn) for s in sites if s.observed and s.plates == plates]
        if data:
            x = ops.concatenate(data, -1)
            # Broadcast x over the draws' leading (particle) axes.
            x = x + ops.zeros_like(z_q[..., :1])
            z_q, z_p = ops.concatenate([x, z_q], -1), ops.concatenate([x, z_p], -1)
        if self.net is None:
            width = int(z_q.shape[-1])
            self.net = mlp([width, self.hidden, self.hidden, 1], activation="leaky_relu")
        T = ppgen.module("discriminator", self.net)
        ppgen.deterministic(T_Q, T(z_q)[..., 0])
        ppgen.deterministic(T_P, T(z_p)[..., 0])


# -- objectives ----------------------------------------------------------------------------------


def discriminator_loss(be: Backend, tr: TracePair) -> tuple[Any, Any]:
    """``J^T``: the logistic loss of telling guide draws (label 1) from prior draws (label 0)."""
    ops = be.ops
    loss = ops.mean(ops.softplus(-tr.values[T_Q])) + ops.mean(ops.softplus(tr.values[T_P]))
    return loss, loss


def _plate_scale(be: Backend, tr: TracePair) -> float:
    """How much a latent site's plates were subsampled (``size / subsample size``), so that the
    ``T`` term is scaled like the likelihood terms."""
    scale = 1.0
    name = next(n for n in tr.latent if not n.startswith(PRIOR_PREFIX))
    site = tr.model[name]
    shape = tuple(site.log_prob.shape)
    for plate in site.plates:
        if -plate.dim < len(shape):
            scale *= plate.size / shape[plate.dim]
    return scale


def elbo_particles(be: Backend, tr: TracePair) -> Any:
    """Per-particle AVB ELBO estimate ``log p(x | z) - T(x, z)``, shape ``(particles,)``."""
    ops, p = be.ops, tr.particles
    total: Any = 0.0
    for site in tr.model.values():
        if site.observed:
            total = total + ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    t = ops.sum(ops.reshape(tr.values[T_Q], (p, -1)), 1)
    return total - _plate_scale(be, tr) * t


def generator_loss(be: Backend, tr: TracePair) -> tuple[Any, Any]:
    """Negative AVB ELBO, minimized over the model's and the guide's parameters (``T`` fixed)."""
    loss = -be.ops.mean(elbo_particles(be, tr))
    return loss, loss


def _validate(tr: TracePair) -> None:
    latent = {n for n in tr.latent if not n.startswith(PRIOR_PREFIX)}
    guide = {n for n, s in tr.guide.items() if not s.auxiliary and not s.observed}
    missing = sorted(latent - guide)
    if missing:
        raise ModelError(
            f"The implicit guide records no sample site for the model's latent variable(s) "
            f"{', '.join(map(repr, missing))}; record each as ppgen.sample(name, "
            "dist.Delta(value, event_dim=...))."
        )
    extra = sorted(guide - latent)
    if extra:
        raise ModelError(
            f"The implicit guide samples {', '.join(map(repr, extra))}, which the model does not "
            "have; mark noise sites infer={'is_auxiliary': True}."
        )
    if not any(s.observed for s in tr.model.values()):
        raise ModelError("The model observes nothing, so method='avb' has no likelihood to fit.")


# -- saturation ----------------------------------------------------------------------------------


def check_saturation(
    losses: np.ndarray, config: AVBConfig, t_max: float | None = None, offset: int = 0
) -> list[str]:
    """Warn (:class:`AVBWarning`) when the discriminator's per-round ``losses`` stay below
    ``config.saturation_loss`` or unchanged for ``config.patience`` rounds, or when ``t_max``
    (the largest ``|T|`` seen) exceeds ``config.t_limit``; return the messages."""
    messages = []
    n = config.patience
    low = np.asarray(losses) < config.saturation_loss
    flat = np.abs(np.diff(np.asarray(losses))) < 1e-7
    for mask, what in (
        (low, f"its loss stayed below {config.saturation_loss:g}"),
        (flat, "its loss stopped changing"),
    ):
        run = np.convolve(mask.astype(np.int64), np.ones(n, dtype=np.int64), mode="valid")
        hits = np.flatnonzero(run >= n)
        if hits.size:
            messages.append(
                f"The AVB discriminator saturated at round {offset + int(hits[0])}: {what} for "
                f"{n} rounds, so the ELBO estimate is unreliable; lower discriminator_lr or "
                "discriminator_steps, or widen the guide's noise."
            )
    if t_max is not None and not t_max <= config.t_limit:
        messages.append(
            f"The AVB discriminator exploded by the last round ({offset + len(losses) - 1}): "
            f"|T| reached {t_max:.3g} > t_limit={config.t_limit:g}, so the ELBO estimate is "
            "unreliable; lower discriminator_lr or clip gradients (clip_norm)."
        )
    for message in messages:
        warnings.warn(message, AVBWarning, stacklevel=3)
    return messages


def _t_values(be: Backend, tr: TracePair) -> Any:
    return tr.values[T_Q], tr.values[T_P]


# -- fitting -------------------------------------------------------------------------------------


def _discriminator(value: Any, data: BoundData) -> Network | None:
    if value is None:
        return None
    net = value(data) if callable(value) and not isinstance(value, Network) else value
    if not isinstance(net, Network):
        raise ConfigError(
            "The AVB discriminator must be a ppgen.nn network such as ppgen.nn.mlp([6, 256, 1]) "
            "or a function of the data returning one."
        )
    return net


def fit(request: FitRequest, config: AVBConfig) -> FitResult:
    """Fit the model and its implicit guide against a discriminator (Mescheder et al. 2017)."""
    model, be = request.model, request.backend
    guide = model.guides.get(request.guide_name)
    if guide is None or not guide.implicit:
        implicit = [g.name for g in model.guides.values() if g.implicit]
        hint = (
            f"pass guide={implicit[0]!r}"
            if implicit
            else "declare one with @model.guide(implicit=True)"
        )
        raise ModelError(
            f"method='avb' needs an implicit guide, and guide {request.guide_name!r} of model "
            f"{model.name!r} is not one; {hint}."
        )
    lr = request.lr if request.lr is not None else DEFAULT_LR
    net = _discriminator(
        config.discriminator or model.extras.get("discriminator"), request.problem.data
    )
    program = AVBProgram(model.fn, net, config.hidden)
    problem = dataclasses.replace(request.problem, model=program)

    def optim(rate: float) -> OptimConfig:
        return OptimConfig(
            name=config.optimizer, lr=rate, lr_decay=config.lr_decay, clip_norm=config.clip_norm
        )

    d_lr = config.discriminator_lr or lr
    disc = Player(
        "discriminator",
        discriminator_loss,
        ("discriminator",),
        optim(d_lr),
        steps=config.discriminator_steps,
    )
    gen = Player("model_guide", generator_loss, None, optim(lr))
    phases = []
    if config.pretrain_steps:
        pre = Player("discriminator", discriminator_loss, ("discriminator",), optim(d_lr))
        phases.append(Phase((pre,), config.pretrain_steps, "pretrain"))
    phases.append(Phase((disc, gen), request.steps, "train"))
    game = GameConfig(
        seed=request.seed,
        particles=request.particles,
        progress=request.progress,
        description=f"{model.name} avb ({be.name})",
    )
    try:
        outcome = be.run_game(problem, phases, game, validate=_validate)
    except NonFiniteError as err:
        warnings.warn(
            f"The AVB discriminator or ELBO diverged at round {err.step}; see the error that "
            "follows.",
            AVBWarning,
            stacklevel=2,
        )
        raise
    d_loss = outcome.losses["train/discriminator"]
    g_loss = outcome.losses["train/model_guide"]
    t_q, t_p = be.trace_eval(problem, outcome.state, _t_values, 64, request.seed)
    t_max = float(max(np.max(np.abs(t_q)), np.max(np.abs(t_p))))
    saturation = check_saturation(d_loss, config, t_max)
    extras: dict[str, Any] = {
        "elbo": float(-np.mean(g_loss[-max(1, len(g_loss) // 10) :])),
        "t_max": t_max,
        "saturation": saturation,
    }
    if "pretrain/discriminator" in outcome.losses:
        extras["pretrain_losses"] = outcome.losses["pretrain/discriminator"]
    return FitResult(
        model=model,
        method="avb",
        backend=be.name,
        device=request.problem.device,
        guide=request.guide_name,
        losses=g_loss,
        params=outcome.params,
        timings=outcome.timings,
        config=dataclasses.replace(config, discriminator=None),
        # The unwrapped model and guide: posterior draws and predictive checks need no T.
        problem=request.problem,
        state=outcome.state,
        metrics={"loss_discriminator": d_loss, "elbo": -g_loss},
        extras=extras,
    )


METHOD = Method(
    name="avb",
    config_type=AVBConfig,
    run=fit,
    description="Adversarial Variational Bayes: implicit guide + discriminator T(x, z)",
    default_lr=None,
    implicit_guides=True,
    resumable=False,
)
