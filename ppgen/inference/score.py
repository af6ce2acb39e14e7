"""Black-box variational inference (BBVI): score-function gradients of the ELBO.

The gradient of the ELBO ``E_q[log p(x, z) - log q(z)]`` with respect to the guide's
parameters is estimated as ``E_q[grad log q(z) * (log p(x, z) - log q(z))]`` from vectorized
particles, written as a surrogate loss (``log q * stop_gradient(signal)``) so that the backend's
automatic differentiation produces it. One implementation serves both backends: it reads only
the :class:`~ppgen.backends.base.TracePair` (per-site log-densities with the particle axis first
and the plates each site sits in).

Three things keep its variance in check:

- **Rao-Blackwellization**: each guide site's score is multiplied only by the cost terms that can
  depend on it: the guide's terms from that site on, the model's terms from the first of those
  sites on (the dependency structure implied by execution order, as in Pyro's dense trace
  graph), and, inside a plate, only the terms of the same plate slice.
- **Baselines**: a moving average of each site's learning signal; or the leave-one-out mean
  over the other particles (RLOO; VarGrad is the same estimator up to scale).
- **Control variates**: Ranganath et al.'s per-component control variate ``a * grad log q``
  with ``a = Cov(f h, h) / Var(h)`` estimated, per parameter coordinate, from the particles
  (from the *other* particles for each one, which keeps the estimate unbiased).

References
----------
Ranganath, R., Gerrish, S. & Blei, D. M. (2014). Black box variational inference. AISTATS.
Kool, W., van Hoof, H. & Welling, M. (2019). Buy 4 REINFORCE samples, get a baseline for free!
ICLR Workshop on Deep Reinforcement Learning Meets Structured Prediction.
Richter, L., Boustati, A., Nüsken, N., Ruiz, F. J. R. & Akyildiz, Ö. D. (2020). VarGrad: a
low-variance gradient estimator for variational inference. NeurIPS.
Schulman, J., Heess, N., Weber, T. & Abbeel, P. (2015). Gradient estimation using stochastic
computation graphs. NeurIPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppgen.backends.base import (
    Backend,
    Estimator,
    OptimConfig,
    PlateInfo,
    TraceOptions,
    TracePair,
    check_guide_covers_model,
)
from ppgen.errors import ConfigError
from ppgen.inference.base import FitRequest, FitResult, Method
from ppgen.inference.reparam import elbo_particles

__all__ = [
    "METHOD",
    "REDUCTIONS",
    "SITES",
    "ScoreConfig",
    "fit",
    "learning_signals",
    "score_estimator",
]

SITES = ("all", "nonreparam")
REDUCTIONS = ("none", "baseline", "loo", "cv")

Array = Any


@dataclass(frozen=True)
class ScoreConfig:
    """Options of ``method="score"``.

    Attributes
    ----------
    sites
        ``"all"``: score-function gradients for every guide site, even reparameterizable ones
        (the BBVI setting; the guide's samples are stopped as it runs). ``"nonreparam"``:
        pathwise gradients where the guide's distribution allows them, score-function
        gradients for the rest.
    rao_blackwell
        Multiply each site's score only by the cost terms that depend on it (on by default).
    variance_reduction
        ``"none"``, ``"baseline"`` (moving average of each site's learning signal, per plate
        slice), ``"loo"`` (leave-one-out mean over the other particles) or ``"cv"`` (Ranganath
        et al.'s per-coordinate control variate). ``"loo"`` and ``"cv"`` need ``particles >= 2``.
        ``"cv"`` needs every particle's own gradient (a Jacobian over the particles), so its cost
        per step grows with the square of the particle count; ``"loo"`` stays linear.
    baseline_decay
        Decay of the moving-average baseline (bias-corrected like Adam's moments).
    lr_decay, optimizer, clip_norm
        As for ``method="reparam"``.
    """

    sites: str = "all"
    rao_blackwell: bool = True
    variance_reduction: str = "baseline"
    baseline_decay: float = 0.9
    lr_decay: float = 1.0
    optimizer: str = "adam"
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.sites not in SITES:
            raise ConfigError(f"sites must be 'all' or 'nonreparam', got {self.sites!r}.")
        if self.variance_reduction not in REDUCTIONS:
            raise ConfigError(
                f"variance_reduction must be one of {', '.join(REDUCTIONS)}, got "
                f"{self.variance_reduction!r}."
            )
        if not 0 <= self.baseline_decay < 1:
            raise ConfigError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}.")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be positive, got {self.clip_norm}.")

    def check_particles(self, particles: int) -> None:
        """Refuse a particle count the variance reduction cannot work with."""
        if self.variance_reduction in ("loo", "cv") and particles < 2:
            raise ConfigError(
                f"variance_reduction={self.variance_reduction!r} estimates its baseline from the "
                f"other particles and needs particles >= 2, got {particles}; raise particles or "
                "use variance_reduction='baseline'."
            )


def _score_sites(tr: TracePair, sites: str) -> list[str]:
    return [
        name
        for name, site in tr.guide.items()
        if not site.observed and (sites == "all" or not site.reparameterized)
    ]


def _align(
    ops: Any, lp: Array, plates: tuple[PlateInfo, ...], target: Array, keep: dict[int, str]
) -> Array:
    """Sum ``lp`` (particles first) over every batch dimension that is not a plate it shares
    with the target site (``keep``: dim -> plate name), shaped to broadcast against ``target``."""
    own = {p.dim: p.name for p in plates}
    batch = lp.ndim - 1
    kept = [d for d in range(-batch, 0) if d in keep and own.get(d) == keep[d] and -d < target.ndim]
    summed = tuple(lp.ndim + d for d in range(-batch, 0) if d not in kept)
    if summed:
        lp = ops.sum(lp, summed)
    shape = [lp.shape[0]] + [1] * (target.ndim - 1)
    for d in kept:
        shape[target.ndim + d] = lp.shape[lp.ndim - len(kept) + kept.index(d)]
    return ops.reshape(lp, tuple(shape))


def learning_signals(
    be: Backend, tr: TracePair, names: list[str], rao_blackwell: bool
) -> dict[str, Array]:
    """Each score site's learning signal (the cost its score is multiplied by), gradients
    stopped, shaped to broadcast against that site's ``log_prob`` (particle axis first).

    Without Rao-Blackwellization every site gets the whole per-particle ELBO. With it, a guide
    site ``s`` gets only the terms that depend on its value: the model's ``log p`` and the
    guide's ``-log q`` terms whose provenance includes ``s`` (directly or through later guide
    sites), and inside each plate that ``s`` and a term share, only the term's own slice. Where
    the backend could not track provenance, execution order stands in for it: the guide's terms
    from ``s`` on and the model's terms from the first of those sites on (Pyro's dense graph).
    """
    ops, p = be.ops, tr.particles
    if not rao_blackwell:
        elbo = be.stop_gradient(elbo_particles(be, tr))
        return {s: ops.reshape(elbo, (p,) + (1,) * (tr.guide[s].log_prob.ndim - 1)) for s in names}
    signals = {}
    for s in names:
        target = tr.guide[s].log_prob
        keep = {pl.dim: pl.name for pl in tr.guide[s].plates}
        model_terms, guide_terms = _downstream(tr, s)
        total: Any = 0.0
        for t in guide_terms:
            site = tr.guide[t]
            total = total - _align(ops, site.log_prob, site.plates, target, keep)
        for c in model_terms:
            site = tr.model[c]
            total = total + _align(ops, site.log_prob, site.plates, target, keep)
        signals[s] = be.stop_gradient(total)
    return signals


def _downstream(tr: TracePair, s: str) -> tuple[list[str], list[str]]:
    """The model and guide sites whose log-densities can depend on guide site ``s``."""
    latent = [n for n, site in tr.guide.items() if not site.observed]
    if tr.model_deps and tr.guide_deps:
        # A site the tracking did not see is kept: leaving a dependent term out would bias.
        model = [c for c in tr.model if s in tr.model_deps.get(c, frozenset({s}))]
        guide = [t for t in latent if s in tr.guide_deps.get(t, frozenset({s}))]
        return model, guide
    order = list(tr.model)
    guide = latent[latent.index(s) :]
    first = min((order.index(t) for t in guide if t in tr.model), default=len(order))
    return order[first:], guide


def _pathwise(be: Backend, tr: TracePair, score: set[str]) -> Array:
    """Per-particle ELBO terms whose gradient is pathwise: the model's ``log p`` and the
    ``-log q`` of guide sites that are not score sites (a score site's own ``grad log q`` term
    has expectation zero and only adds variance, so it is left out)."""
    ops, p = be.ops, tr.particles
    total: Any = 0.0
    for site in tr.model.values():
        total = total + ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    for name, site in tr.guide.items():
        if not site.observed and name not in score:
            total = total - ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    return total


def _per_particle(ops: Any, x: Array, p: int) -> Array:
    return ops.sum(ops.reshape(x, (p, -1)), 1)


def score_estimator(config: ScoreConfig) -> Estimator:
    """The BBVI estimator that ``config`` describes, for any backend."""
    reduction = config.variance_reduction
    decay = config.baseline_decay

    def signals_of(be: Backend, tr: TracePair) -> dict[str, Array]:
        return learning_signals(be, tr, _score_sites(tr, config.sites), config.rao_blackwell)

    def init(be: Backend, tr: TracePair) -> Any:
        if reduction != "baseline":
            return None
        ops = be.ops
        avg = {s: ops.zeros_like(ops.mean(f, 0)) for s, f in signals_of(be, tr).items()}
        return {"avg": avg, "steps": ops.asarray(0.0)}

    def step(be: Backend, tr: TracePair, state: Any) -> tuple[Array, Array, Any]:
        ops, p = be.ops, tr.particles
        signals = signals_of(be, tr)
        loss = -ops.mean(be.stop_gradient(elbo_particles(be, tr)))
        path = _pathwise(be, tr, set(signals))
        if reduction == "cv":
            # Row 0 gives f * h (and the pathwise part), row 1 gives h, per particle.
            f_h: Any = path
            h: Any = 0.0
            for s, f in signals.items():
                lq = tr.guide[s].log_prob
                f_h = f_h + _per_particle(ops, lq * f, p)
                h = h + _per_particle(ops, lq, p)
            return -ops.stack([f_h, h + 0.0 * path]), loss, state
        new_state = state
        if reduction == "baseline":
            steps = state["steps"]
            # Bias-corrected moving average; no baseline before the first update.
            denom = 1.0 - decay**steps
            ready = steps > 0
            avg = {}
            for s, f in signals.items():
                b = ops.where(ready, state["avg"][s] / ops.where(ready, denom, 1.0), 0.0)
                avg[s] = decay * state["avg"][s] + (1.0 - decay) * ops.mean(f, 0)
                signals[s] = f - b
            new_state = {"avg": avg, "steps": steps + 1.0}
        elif reduction == "loo":
            for s, f in signals.items():
                # f minus the mean of the other particles' signals.
                signals[s] = (f - ops.mean(f, 0)) * (p / (p - 1))
        score: Any = 0.0
        for s, f in signals.items():
            score = score + ops.sum(tr.guide[s].log_prob * f)
        surrogate = -(ops.mean(path) + score / p)
        return surrogate, loss, new_state

    return Estimator(
        step=step,
        init=init,
        trace=TraceOptions(detach_samples=config.sites == "all", dependencies=config.rao_blackwell),
        combine=_cv_combine if reduction == "cv" else None,
    )


def _cv_combine(be: Backend, jac: Array) -> Array:
    """Ranganath et al.'s control variate, per parameter coordinate: ``mean_p (x_p - a_p y_p)``
    with ``x = grad(f log q)``, ``y = grad log q`` and ``a_p = Cov(x, y) / Var(y)`` over the
    particles other than ``p`` (so that ``a_p`` is independent of particle ``p`` and the
    estimate stays unbiased)."""
    ops = be.ops
    x, y = jac[0], jac[1]
    n = x.shape[0] - 1
    # Covariances are shift-invariant: centre first so that float32 sums do not cancel.
    x = x - ops.mean(x, 0)
    y = y - ops.mean(y, 0)
    sx, sy = ops.sum(x, 0), ops.sum(y, 0)
    sxy, syy = ops.sum(x * y, 0), ops.sum(y * y, 0)
    mx, my = (sx - x) / n, (sy - y) / n
    cov = (sxy - x * y) / n - mx * my
    second = (syy - y * y) / n
    var = second - my * my
    # Where the other particles' scores (nearly) agree, e.g. discrete draws that all came out
    # the same, ``var`` is rounding noise that would blow ``a`` up: use no control variate.
    usable = var > 1e-4 * second + 1e-30
    a = ops.where(usable, cov / ops.where(usable, var, 1.0), 0.0)
    # The centring shifted x by mean(x) and y by mean(y); undo it for the estimate itself.
    return ops.mean(jac[0] - a * jac[1], 0)


def fit(request: FitRequest, config: ScoreConfig) -> FitResult:
    """Fit the guide by stochastic gradient ascent with score-function (BBVI) gradients."""
    config.check_particles(request.particles)
    optim = OptimConfig(
        name=config.optimizer,
        lr=request.lr if request.lr is not None else 0.01,
        lr_decay=config.lr_decay,
        clip_norm=config.clip_norm,
    )
    outcome = request.run_svi(
        score_estimator(config), request.loop(optim, "score"), validate=check_guide_covers_model
    )
    return request.result("score", outcome, config)


METHOD = Method(
    name="score",
    config_type=ScoreConfig,
    run=fit,
    description="BBVI: score-function ELBO gradients with Rao-Blackwellization and baselines",
)
