"""The gradient-variance lab: many independent gradient estimates at the same parameters.

For each estimator and particle count, :func:`run_gradvar` draws ``repeats`` independent
estimates of the gradient of the negative ELBO with respect to the guide's (unconstrained)
parameters and reports, per parameter and in total, the mean, the variance, the signal-to-noise
ratio, the bias against a reference gradient and the seconds per estimate.

Estimators are named ``method[+flag...]``:

- ``reparam``: the pathwise estimator; ``+stl`` sticks the landing; ``+iwae`` takes the gradient
  of the importance-weighted bound over all the particles instead (a different objective, so
  its bias against the ELBO's gradient is expected).
- ``score``: score-function gradients for every guide site (BBVI) with no variance reduction;
  ``+rb`` Rao-Blackwellizes; one of ``+baseline``, ``+loo``, ``+cv`` adds a moving-average
  baseline, a leave-one-out baseline or the control variate; ``+nonreparam`` keeps pathwise
  gradients where the guide allows them.

References
----------
Ranganath, R., Gerrish, S. & Blei, D. M. (2014). Black box variational inference. AISTATS.
Roeder, G., Wu, Y. & Duvenaud, D. (2017). Sticking the landing: simple, lower-variance gradient
estimators for variational inference. NeurIPS.
Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR.
Kool, W., van Hoof, H. & Welling, M. (2019). Buy 4 REINFORCE samples, get a baseline for free!
ICLR Workshop on Deep Reinforcement Learning Meets Structured Prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.backends.base import (
    Backend,
    Estimator,
    GradientDraws,
    Objective,
    SVIProblem,
    TracePair,
    as_estimator,
    check_guide_covers_model,
)
from ppgen.errors import ConfigError, ModelError, suggest
from ppgen.inference.reparam import ReparamConfig, check_reparameterizable, reparam_estimator
from ppgen.inference.score import ScoreConfig, score_estimator

__all__ = [
    "DEFAULT_ESTIMATORS",
    "EXACT_GRADIENT",
    "EstimatorSpec",
    "GradVarConfig",
    "GradVarReport",
    "exact_for",
    "parse_estimator",
    "particle_list",
    "run_gradvar",
]

DEFAULT_ESTIMATORS = (
    "reparam",
    "reparam+stl",
    "score",
    "score+rb",
    "score+rb+baseline",
    "score+rb+loo",
    "score+rb+cv",
)

#: Key of ``Model.extras`` holding ``{guide name: fn(constrained params, *data) -> gradient}``,
#: the exact gradient of the negative ELBO with respect to the unconstrained parameters.
EXACT_GRADIENT = "neg_elbo_grad"

_REPARAM_FLAGS = ("stl", "iwae")
_SCORE_FLAGS = ("rb", "baseline", "loo", "cv", "nonreparam")
_REDUCTIONS = ("baseline", "loo", "cv")


@dataclass(frozen=True)
class EstimatorSpec:
    """A parsed estimator name: the method, its config, and the fewest particles it needs."""

    name: str
    method: str
    config: ReparamConfig | ScoreConfig
    min_particles: int = 1

    def build(self, particles: int) -> Objective | Estimator:
        """The estimator at ``particles`` particles, refusing unsuitable guides on the first
        trace (before any estimate is drawn)."""
        if isinstance(self.config, ScoreConfig):
            return _checked(score_estimator(self.config), check_guide_covers_model)
        config = self.config
        if config.iwae is not None:
            config = replace(config, iwae=particles)
        return _checked(reparam_estimator(config), check_reparameterizable)


def _checked(estimator: Objective | Estimator, check: Callable[[TracePair], None]) -> Estimator:
    est = as_estimator(estimator)
    init = est.init

    def checked_init(backend: Backend, trace: TracePair) -> Any:
        check(trace)
        return init(backend, trace)

    return replace(est, init=checked_init)


def parse_estimator(name: str) -> EstimatorSpec:
    """Parse ``"score+rb+loo"`` and the like into an :class:`EstimatorSpec`."""
    method, *flags = name.strip().split("+")
    if method not in ("reparam", "score"):
        raise ConfigError(
            f"Estimator {name!r} must start with 'reparam' or 'score'; "
            f"{suggest(method, ['reparam', 'score'])}."
        )
    allowed = _REPARAM_FLAGS if method == "reparam" else _SCORE_FLAGS
    for flag in flags:
        if flag not in allowed:
            raise ConfigError(
                f"Estimator {name!r} has unknown flag {flag!r} for {method!r}; "
                f"{suggest(flag, allowed)}."
            )
    if len(set(flags)) != len(flags):
        raise ConfigError(f"Estimator {name!r} repeats a flag; name each flag once.")
    if method == "reparam":
        if "stl" in flags and "iwae" in flags:
            raise ConfigError(
                f"Estimator {name!r} combines stl and iwae, whose gradient is biased; use one."
            )
        config = ReparamConfig(stl="stl" in flags, iwae=1 if "iwae" in flags else None)
        return EstimatorSpec(name, method, config)
    reductions = [f for f in flags if f in _REDUCTIONS]
    if len(reductions) > 1:
        raise ConfigError(
            f"Estimator {name!r} names {' and '.join(reductions)}; choose one variance reduction."
        )
    reduction = reductions[0] if reductions else "none"
    score = ScoreConfig(
        sites="nonreparam" if "nonreparam" in flags else "all",
        rao_blackwell="rb" in flags,
        variance_reduction=reduction,
    )
    return EstimatorSpec(name, method, score, 2 if reduction in ("loo", "cv") else 1)


@dataclass(frozen=True)
class GradVarConfig:
    """Settings of a gradient-variance study (validated before any work starts)."""

    estimators: tuple[str, ...] | None = None
    particles: tuple[int, ...] = (1, 10, 100)
    repeats: int = 1000
    seed: int = 0
    warmup: int = 100
    reference_particles: int = 10000
    reference_repeats: int = 20

    def __post_init__(self) -> None:
        if not self.particles or any(
            isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in self.particles
        ):
            raise ConfigError(
                f"particles must be positive integers, got {self.particles!r}; try (1, 10, 100)."
            )
        for label, value, least in (
            ("repeats", self.repeats, 2),
            ("reference_particles", self.reference_particles, 1),
            ("reference_repeats", self.reference_repeats, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{label} must be an integer >= {least}, got {value!r}.")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer, got {self.warmup!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}.")
        if self.estimators is not None:
            if not self.estimators:
                raise ConfigError("estimators is empty; name at least one, e.g. 'score+rb+loo'.")
            for name in self.estimators:
                parse_estimator(name)


@dataclass
class GradVarReport:
    """Gradient estimates of several estimators at the same parameters, and their summary.

    Attributes
    ----------
    draws
        ``(estimator, particles) -> GradientDraws`` (per-parameter arrays ``(repeats, ...)``).
    reference
        The reference gradient by parameter; ``reference_kind`` says where it comes from
        (``"exact"`` or ``"reparam, N particles x R"``), ``reference_se`` its standard error
        (zero when exact).
    params
        The guide's constrained parameter values the estimates were drawn at.
    skipped
        ``(estimator, particles, reason)`` for combinations that were not drawn.
    """

    model: str
    backend: str
    at: str
    repeats: int
    draws: dict[tuple[str, int], GradientDraws]
    reference: dict[str, np.ndarray]
    reference_kind: str
    reference_se: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def estimators(self) -> list[str]:
        return list(dict.fromkeys(e for e, _ in self.draws))

    def to_frame(self, per_element_max: int = 64) -> Any:
        """One row per estimator, particle count and parameter element, plus a ``total`` row.

        Columns: ``estimator, particles, parameter, mean, variance, snr, bias,
        seconds_per_estimate, variance_x_seconds, reference``. Parameters with more than
        ``per_element_max`` elements get one row, and the ``total`` row sums over all of them:
        there ``mean`` and ``bias`` are Euclidean norms of the mean and bias vectors,
        ``variance`` is the trace of the covariance, and ``snr`` is
        ``|mean| / sqrt(variance)``.
        """
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for (est, particles), d in self.draws.items():
            blocks = []
            for name, g in d.grads.items():
                flat = g.reshape(g.shape[0], -1).astype(np.float64)
                ref = np.broadcast_to(
                    np.asarray(self.reference[name], np.float64).reshape(-1), flat.shape[1:]
                )
                blocks.append((flat, ref))
                if flat.shape[1] > per_element_max:
                    rows.append(_row(est, particles, name, flat, ref, d.seconds))
                    continue
                for i in range(flat.shape[1]):
                    label = name if g.ndim == 1 else f"{name}{_index(g.shape[1:], i)}"
                    rows.append(
                        _row(est, particles, label, flat[:, i : i + 1], ref[i : i + 1], d.seconds)
                    )
            flat = np.concatenate([b[0] for b in blocks], axis=1)
            ref = np.concatenate([b[1] for b in blocks])
            rows.append(_row(est, particles, "total", flat, ref, d.seconds))
        return pd.DataFrame(rows)

    def totals(self) -> Any:
        """The ``total`` rows of :meth:`to_frame`, one per estimator and particle count."""
        frame = self.to_frame()
        return frame[frame["parameter"] == "total"].reset_index(drop=True)

    def plot(self, path: str | Path | None = None) -> Any:
        """Total variance against particles (log-log) and SNR per estimator; saved to ``path``
        (PNG) if given. Returns the matplotlib figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        totals = self.totals()
        fig, (ax_var, ax_snr) = plt.subplots(1, 2, figsize=(12.5, 4.2))
        for est in self.estimators:
            sub = totals[totals["estimator"] == est].sort_values("particles")
            ax_var.plot(sub["particles"], sub["variance"], marker="o", label=est)
            ax_snr.plot(sub["particles"], sub["snr"], marker="o", label=est)
        ax_var.set(
            xscale="log",
            yscale="log",
            xlabel="particles",
            ylabel="trace of gradient covariance",
            title=f"{self.model}: gradient variance ({self.backend}, at {self.at})",
        )
        ax_snr.set(
            xscale="log",
            yscale="log",
            xlabel="particles",
            ylabel="|mean| / sd (total)",
            title="signal-to-noise ratio",
        )
        for ax in (ax_var, ax_snr):
            ax.grid(True, which="both", alpha=0.3)
        # One legend for both panels, outside them, so that it hides no line.
        handles, labels = ax_var.get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 0.84, 1))
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def __repr__(self) -> str:
        return (
            f"GradVarReport(model={self.model!r}, backend={self.backend!r}, at={self.at!r}, "
            f"estimators={self.estimators}, repeats={self.repeats})"
        )


def _index(shape: tuple[int, ...], i: int) -> str:
    return "[" + ",".join(str(k) for k in np.unravel_index(i, shape)) + "]"


def _row(
    est: str, particles: int, name: str, flat: np.ndarray, ref: np.ndarray, seconds: float
) -> dict[str, Any]:
    mean = flat.mean(0)
    variance = float(flat.var(0, ddof=1).sum())
    norm = float(np.linalg.norm(mean))
    bias = mean - ref
    single = flat.shape[1] == 1
    return {
        "estimator": est,
        "particles": particles,
        "parameter": name,
        "mean": float(mean[0]) if single else norm,
        "variance": variance,
        "snr": norm / math.sqrt(variance) if variance > 0 else math.inf,
        "bias": float(bias[0]) if single else float(np.linalg.norm(bias)),
        "seconds_per_estimate": seconds,
        "variance_x_seconds": variance * seconds,
        "reference": float(ref[0]) if single else float(np.linalg.norm(ref)),
    }


def run_gradvar(
    backend: Backend,
    problem: SVIProblem,
    config: GradVarConfig,
    *,
    exact: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    params: Mapping[str, np.ndarray] | None = None,
    state: Any = None,
    at: str = "init",
    model_name: str = "model",
) -> GradVarReport:
    """Draw every estimator's gradient estimates at the same parameters and summarize them.

    ``exact(constrained params) -> gradient`` gives the reference gradient when the model
    knows it; otherwise the reference is the mean of ``reference_repeats`` reparameterized
    estimates over ``reference_particles`` particles (or, for guides that cannot be
    reparameterized, of ``score+rb+loo`` estimates). Estimators that do not apply (a
    ``reparam`` estimator on a discrete guide when the estimators were not named explicitly, a
    leave-one-out one at one particle) are skipped and listed in ``report.skipped``.
    """
    explicit = config.estimators is not None
    names = config.estimators if config.estimators is not None else DEFAULT_ESTIMATORS
    specs = [parse_estimator(n) for n in names]
    where = {"params": params, "state": state, "seed": config.seed}
    draws: dict[tuple[str, int], GradientDraws] = {}
    skipped: list[tuple[str, int, str]] = []
    for spec in specs:
        for particles in config.particles:
            if particles < spec.min_particles:
                skipped.append((spec.name, particles, f"needs particles >= {spec.min_particles}"))
                continue
            try:
                draws[(spec.name, particles)] = backend.gradient_draws(
                    problem,
                    spec.build(particles),
                    particles=particles,
                    repeats=config.repeats,
                    warmup=config.warmup,
                    **where,
                )
            except ModelError as err:
                if explicit or spec.method != "reparam":
                    raise
                skipped.append((spec.name, particles, str(err)))
                break
    if not draws:
        raise ConfigError(
            "No estimator could be drawn at these particle counts; add a particle count >= 2 "
            "or a reparam/score estimator that fits this guide."
        )
    at_params = next(iter(draws.values())).params
    if exact is not None:
        reference = {k: np.asarray(v, np.float64) for k, v in exact(at_params).items()}
        se = {k: np.zeros_like(v) for k, v in reference.items()}
        kind = "exact"
    else:
        reference, se, kind = _estimated_reference(backend, problem, config, where)
    return GradVarReport(
        model=model_name,
        backend=backend.name,
        at=at,
        repeats=config.repeats,
        draws=draws,
        reference=reference,
        reference_kind=kind,
        reference_se=se,
        params=at_params,
        skipped=skipped,
    )


def _estimated_reference(
    backend: Backend, problem: SVIProblem, config: GradVarConfig, where: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
    n, r = config.reference_particles, config.reference_repeats
    for name in ("reparam", "score+rb+loo"):
        try:
            d = backend.gradient_draws(
                problem,
                parse_estimator(name).build(n),
                particles=max(n, 2),
                repeats=r,
                **where,
            )
        except ModelError:
            continue
        mean = {k: g.astype(np.float64).mean(0) for k, g in d.grads.items()}
        se = {k: g.astype(np.float64).std(0, ddof=1) / math.sqrt(r) for k, g in d.grads.items()}
        return mean, se, f"{name}, {max(n, 2)} particles x {r}"
    raise ModelError("Neither reparam nor score+rb+loo applies to this guide; pass exact=...")


def exact_for(
    model: Any, guide_name: str, bound_args: tuple[Any, ...], bound_kwargs: dict[str, Any]
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None:
    """The model's exact gradient for ``guide_name`` bound to its data, if it provides one."""
    table = getattr(model, "extras", {}).get(EXACT_GRADIENT, {})
    fn = table.get(guide_name)
    if fn is None:
        return None

    def exact(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(fn(params, *bound_args, **bound_kwargs))

    return exact


def particle_list(particles: int | Sequence[int]) -> tuple[int, ...]:
    """``10`` or ``[1, 10, 100]`` as a tuple (checked by :class:`GradVarConfig`)."""
    if isinstance(particles, Sequence):
        return tuple(particles)
    return (particles,)
