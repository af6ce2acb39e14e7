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

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ppgen.backends.base import (
    Backend,
    Estimator,
    Objective,
    OptimConfig,
    TraceOptions,
    TracePair,
    check_guide_covers_model,
)
from ppgen.errors import ConfigError, ModelError
from ppgen.inference.base import FitRequest, FitResult, Method

__all__ = [
    "METHOD",
    "STL",
    "ReparamConfig",
    "analytic_kl_objective",
    "elbo_particles",
    "fit",
    "iwae_objective",
    "reparam_estimator",
    "reparam_objective",
]


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
    stl
        Sticking the landing (Roeder et al. 2017): drop the guide's score term, i.e. take
        ``log q(z)`` with the guide's parameters stopped; unbiased, and the gradient's variance
        vanishes as the guide reaches the exact posterior.
    iwae
        Optimize the importance-weighted bound with ``iwae`` samples per estimate (Burda et al.
        2016) instead of the ELBO; each of the ``particles`` draws ``iwae`` guide samples and
        the reported loss is the negative bound.
    analytic_kl
        Use the closed-form ``KL(q(z) || p(z))`` for every latent site whose guide and prior
        distributions have one (Gaussian guide and prior in a VAE: Kingma & Welling 2014,
        Appendix B), and the Monte Carlo estimate for the others.

    References
    ----------
    Roeder, G., Wu, Y. & Duvenaud, D. (2017). Sticking the landing: simple, lower-variance
    gradient estimators for variational inference. NeurIPS.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
    """

    lr_decay: float = 1.0
    optimizer: str = "adam"
    clip_norm: float | None = None
    stl: bool = False
    iwae: int | None = None
    analytic_kl: bool = False

    def __post_init__(self) -> None:
        if self.analytic_kl and (self.stl or (self.iwae is not None and self.iwae > 1)):
            raise ConfigError(
                "analytic_kl=True replaces log p(z) - log q(z) by its expectation, which neither "
                "stl nor iwae (they need the per-sample log weights) can use; choose one."
            )
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be positive, got {self.clip_norm}.")
        if self.iwae is not None and (
            isinstance(self.iwae, bool) or not isinstance(self.iwae, int) or self.iwae < 1
        ):
            raise ConfigError(
                f"iwae must be a positive integer (samples per bound), got {self.iwae!r}."
            )
        if self.stl and self.iwae is not None and self.iwae > 1:
            raise ConfigError(
                "stl=True with iwae > 1 gives biased gradients of the importance-weighted bound; "
                "use one of them (or a doubly-reparameterized estimator)."
            )


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


def analytic_kl_objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
    """Negative ELBO with ``KL(q || p)`` in closed form where the trace has it (``tr.kl``)."""
    ops, p = be.ops, tr.particles
    total: Any = 0.0
    for name, site in tr.model.items():
        if name not in tr.kl:
            total = total + ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    for name, site in tr.guide.items():
        if site.observed:
            continue
        if name in tr.kl:
            total = total - ops.sum(ops.reshape(tr.kl[name], (p, -1)), 1)
        else:
            total = total - ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    loss = -ops.mean(total)
    return loss, loss


def check_analytic_kl(tr: TracePair) -> None:
    """Like :func:`check_reparameterizable`, and some latent site must have a closed-form KL."""
    check_reparameterizable(tr)
    if not tr.kl:
        raise ModelError(
            "analytic_kl=True, but no latent site's guide and prior have a closed-form KL "
            "divergence (e.g. Normal against Normal); drop analytic_kl."
        )


def reparam_objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
    """Negative ELBO averaged over particles (its pathwise gradient is the estimator)."""
    loss = -be.ops.mean(elbo_particles(be, tr))
    return loss, loss


def _stl_step(be: Backend, tr: TracePair, state: Any) -> tuple[Any, Any, Any]:
    ops, p = be.ops, tr.particles
    total: Any = 0.0
    for site in tr.model.values():
        total = total + ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    for name, site in tr.guide.items():
        if not site.observed:
            # Same value as log q(z); only the path through the guide's parameters is cut.
            lq = tr.guide_stopped[name]
            total = total - ops.sum(ops.reshape(lq, (p, -1)), 1)
    loss = -ops.mean(total)
    return loss, loss, state


#: Sticking the landing: the pathwise ELBO gradient without the guide's score term.
STL = Estimator(step=_stl_step, trace=TraceOptions(stop_guide_params=True))


def iwae_objective(samples: int) -> Objective:
    """Negative importance-weighted bound with ``samples`` guide draws per bound: the trace's
    particles are split into groups of ``samples`` and the bounds averaged."""

    def objective(be: Backend, tr: TracePair) -> tuple[Any, Any]:
        ops = be.ops
        log_w = ops.reshape(elbo_particles(be, tr), (tr.particles // samples, samples))
        loss = -ops.mean(ops.logsumexp(log_w, 1) - math.log(samples))
        return loss, loss

    return objective


def reparam_estimator(config: ReparamConfig) -> Objective | Estimator:
    """The objective (or estimator) that ``config`` asks for."""
    if config.iwae is not None and config.iwae > 1:
        return iwae_objective(config.iwae)
    if config.analytic_kl:
        return analytic_kl_objective
    return STL if config.stl else reparam_objective


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
    optim = OptimConfig(
        name=config.optimizer,
        lr=request.lr if request.lr is not None else 0.01,
        lr_decay=config.lr_decay,
        clip_norm=config.clip_norm,
    )
    loop = request.loop(optim, "reparam")
    if config.iwae is not None and config.iwae > 1:
        # Each particle is one bound over ``iwae`` guide draws, all traced in one pass.
        loop = dataclasses.replace(loop, particles=loop.particles * config.iwae)
    validate = check_analytic_kl if config.analytic_kl else check_reparameterizable
    outcome = request.run_svi(reparam_estimator(config), loop, validate=validate)
    return request.result("reparam", outcome, config)


METHOD = Method(
    name="reparam",
    config_type=ReparamConfig,
    run=fit,
    description="SVI with the reparameterized (pathwise) ELBO gradient",
)
