"""Reparameterized-gradient variational inference (the pathwise ELBO).

The ELBO is estimated from ``particles`` vectorized draws of the guide, and its gradient is
taken through the samples (Kingma & Welling 2014; Rezende et al. 2014).

References
----------
Kingma, D. P. & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic backpropagation and approximate
inference in deep generative models. ICML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppgen.backends.base import (
    Backend,
    LoopConfig,
    OptimConfig,
    TracePair,
    check_guide_covers_model,
)
from ppgen.errors import ConfigError, ModelError
from ppgen.inference.base import FitRequest, FitResult, Method

__all__ = ["METHOD", "ReparamConfig", "elbo_particles", "fit", "reparam_objective"]


@dataclass(frozen=True)
class ReparamConfig:
    """Options of ``method="reparam"``.

    Attributes
    ----------
    lr_decay
        Learning-rate factor reached at the last step (exponential schedule; 1.0 = constant).
    optimizer
        ``"adam"`` (default), ``"sgd"`` or ``"momentum"``.
    clip_norm
        Clip the gradient's global norm to this value, if given.
    """

    lr_decay: float = 1.0
    optimizer: str = "adam"
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be positive, got {self.clip_norm}.")


def elbo_particles(be: Backend, tr: TracePair) -> Any:
    """Per-particle ELBO, ``log p(x, z) - log q(z)``, shape ``(particles,)``."""
    ops = be.ops
    total = 0.0
    for site in tr.model.values():
        total = total + ops.sum(ops.reshape(site.log_prob, (tr.particles, -1)), 1)
    for site in tr.guide.values():
        if not site.observed:
            total = total - ops.sum(ops.reshape(site.log_prob, (tr.particles, -1)), 1)
    return total


def reparam_objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
    """Negative ELBO averaged over particles (its pathwise gradient is the estimator)."""
    loss = -be.ops.mean(elbo_particles(be, tr))
    return loss, loss


def check_reparameterizable(tr: TracePair) -> None:
    """Refuse guides with non-reparameterizable latent sites (pathwise gradients would be wrong)."""
    check_guide_covers_model(tr)
    for site in tr.guide.values():
        if not site.observed and not site.reparameterized:
            raise ModelError(
                f"Guide site {site.name!r} ({type(site.fn).__name__}) cannot be reparameterized, "
                "so method='reparam' would give wrong gradients; use method='score' (BBVI) for "
                "models with discrete latent variables."
            )


def fit(request: FitRequest, config: ReparamConfig) -> FitResult:
    """Fit the guide by stochastic gradient ascent on the reparameterized ELBO."""
    loop = LoopConfig(
        steps=request.steps,
        seed=request.seed,
        particles=request.particles,
        optim=OptimConfig(
            name=config.optimizer,
            lr=request.lr if request.lr is not None else 0.01,
            lr_decay=config.lr_decay,
            clip_norm=config.clip_norm,
        ),
        progress=request.progress,
        description=f"{request.model.name} reparam ({request.backend.name})",
    )
    outcome = request.backend.run_svi(
        request.problem, reparam_objective, loop, validate=check_reparameterizable
    )
    return FitResult(
        model=request.model,
        method="reparam",
        backend=request.backend.name,
        device=request.problem.device,
        guide=request.guide_name,
        losses=outcome.losses,
        params=outcome.params,
        timings=outcome.timings,
        config=config,
        problem=request.problem,
        state=outcome.state,
    )


METHOD = Method(
    name="reparam",
    config_type=ReparamConfig,
    run=fit,
    description="SVI with the reparameterized (pathwise) ELBO gradient",
)
