"""What every inference method shares: the request it receives and the result it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ppgen.backends.base import (
    Backend,
    Checkpoint,
    Estimator,
    LoopConfig,
    LoopHooks,
    Objective,
    OptimConfig,
    SVIOutcome,
    SVIProblem,
    Timings,
    TracePair,
)
from ppgen.errors import ConfigError, suggest
from ppgen.modeling.model import Model

__all__ = ["FitRequest", "FitResult", "Method", "make_config"]


@dataclass(frozen=True)
class FitRequest:
    """Everything a method needs, already validated and resolved by :func:`ppgen.fit`."""

    model: Model
    problem: SVIProblem
    backend: Backend
    guide_name: str
    steps: int
    lr: float | None
    particles: int
    seed: int
    progress: bool
    checkpoint_every: int = 0
    on_nonfinite: str = "stop"
    hooks: LoopHooks | None = None
    resume: Checkpoint | None = None

    def loop(self, optim: OptimConfig, description: str) -> LoopConfig:
        """The training-loop settings of this request (steps, seed, particles, checkpoints)."""
        return LoopConfig(
            steps=self.steps,
            seed=self.seed,
            particles=self.particles,
            optim=optim,
            progress=self.progress,
            description=f"{self.model.name} {description} ({self.backend.name})",
            checkpoint_every=self.checkpoint_every,
            on_nonfinite=self.on_nonfinite,
        )

    def run_svi(
        self,
        objective: Objective | Estimator,
        loop: LoopConfig,
        validate: Callable[[TracePair], None] | None = None,
    ) -> SVIOutcome:
        """Run the backend's training loop with this request's checkpoint hooks and resume."""
        return self.backend.run_svi(
            self.problem, objective, loop, validate=validate, hooks=self.hooks, resume=self.resume
        )

    def result(self, method: str, outcome: SVIOutcome, config: Any) -> FitResult:
        """The :class:`FitResult` of a training loop's ``outcome`` for this request."""
        return FitResult(
            model=self.model,
            method=method,
            backend=self.backend.name,
            device=self.problem.device,
            guide=self.guide_name,
            losses=outcome.losses,
            params=outcome.params,
            timings=outcome.timings,
            config=config,
            problem=self.problem,
            state=outcome.state,
            skipped_steps=outcome.skipped,
        )


@dataclass
class FitResult:
    """The outcome of :func:`ppgen.fit`, whatever the method.

    Attributes
    ----------
    losses
        Loss per step (the negative ELBO for VI methods; empty for NUTS).
    params
        Fitted parameters, constrained, as numpy arrays by name (empty for NUTS).
    timings
        Compile (first chunk) and per-step seconds.
    metrics
        Further per-step series as long as ``losses`` (e.g. each GAN player's loss), by name.
    extras
        What a method or model keeps for reports (e.g. GAN sample snapshots, pre-training
        losses), by name.
    """

    model: Model
    method: str
    backend: str
    device: str
    guide: str
    losses: np.ndarray
    params: dict[str, np.ndarray]
    timings: Timings
    config: Any
    problem: SVIProblem
    state: Any = None
    draws: dict[str, np.ndarray] | None = None
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    skipped_steps: int = 0
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def posterior_samples(self, num_samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Posterior draws of the latent and deterministic sites, by name.

        VI methods draw ``num_samples`` fresh samples from the fitted guide. MCMC results return
        their stored draws, chains concatenated (a random subset if ``num_samples`` is smaller).
        """
        if num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {num_samples}.")
        if self.draws is not None:
            flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in self.draws.items()}
            total = len(next(iter(flat.values())))
            if num_samples >= total:
                return flat
            idx = np.random.default_rng(seed).choice(total, num_samples, replace=False)
            return {k: v[np.sort(idx)] for k, v in flat.items()}
        from ppgen.backends import get_backend

        return get_backend(self.backend).posterior_samples(
            self.problem, self.state, num_samples, seed
        )

    def to_arviz(
        self, num_samples: int = 1000, seed: int = 0, pointwise: bool | None = None
    ) -> Any:
        """ArviZ ``InferenceData``: posterior (guide draws for VI, chains for MCMC), sample
        stats for MCMC, and pointwise log-likelihood, posterior predictive and observed data
        (``pointwise``: see :func:`ppgen.diagnostics.arviz.from_fit`)."""
        from ppgen.diagnostics.arviz import from_fit

        return from_fit(self, num_samples=num_samples, seed=seed, pointwise=pointwise)

    def __repr__(self) -> str:
        last = f", final loss {self.losses[-1]:.4g}" if self.losses.size else ""
        return (
            f"FitResult(model={self.model.name!r}, method={self.method!r}, "
            f"backend={self.backend!r}, device={self.device!r}{last})"
        )


@dataclass(frozen=True)
class Method:
    """A registered inference method: a name, a typed config, and the function that runs it."""

    name: str
    config_type: type
    run: Callable[[FitRequest, Any], FitResult]
    description: str
    default_lr: float | None = 0.01
    #: Whether the method can fit an implicit guide (one without a density, e.g. AVB's).
    implicit_guides: bool = False
    #: Whether the method's loop takes checkpoints and resumes from them exactly.
    resumable: bool = True


def make_config(config_type: type, options: dict[str, Any], method: str) -> Any:
    """Build ``config_type`` from keyword options, rejecting unknown names with a suggestion."""
    names = [f.name for f in fields(config_type)]
    unknown = [k for k in options if k not in names]
    if unknown:
        valid = ", ".join(names) or "none"
        raise ConfigError(
            f"Method {method!r} has no option {unknown[0]!r}; "
            f"{suggest(unknown[0], names) if names else 'it takes none'} (options: {valid})."
        )
    return config_type(**options)
