"""The one interface both backends implement.

Every inference method above this layer is written against :class:`Backend`: it receives a
:class:`TracePair` (the guide's and the model's sites, with values and log-densities whose first
axis is the particle) and returns a scalar surrogate to differentiate. The backend owns arrays,
devices, RNG, tracing, gradients, optimizers and the training loop.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ppgen.errors import (
    ConfigError,
    DeviceError,
    ModelError,
    NonFiniteError,
    RunDirError,
    TrainingInterrupted,
)
from ppgen.modeling.model import BoundData

__all__ = [
    "Backend",
    "Checkpoint",
    "Estimator",
    "GameCallback",
    "GameConfig",
    "GameOutcome",
    "GradientDraws",
    "ImportanceDraws",
    "LazyMapping",
    "LoopConfig",
    "LoopHooks",
    "NUTSConfig",
    "NUTSOutcome",
    "Objective",
    "OptimConfig",
    "Phase",
    "PlateInfo",
    "Player",
    "PredictiveDraws",
    "ProgressBar",
    "SVIOutcome",
    "SVIProblem",
    "Site",
    "Timings",
    "TraceOptions",
    "TracePair",
    "as_estimator",
    "check_guide_covers_model",
    "check_resume",
    "log_joint_and_guide",
    "parse_device",
]

Array = Any


@dataclass(frozen=True)
class PlateInfo:
    """A plate a site sits in: name, batch dimension (negative) and full size."""

    name: str
    dim: int
    size: int


@dataclass(frozen=True)
class Site:
    """One sample site of a traced model or guide.

    ``log_prob`` has the particle axis first, then the site's batch dimensions (scale and mask
    already applied). ``fn`` is the backend's distribution object.
    """

    name: str
    value: Array
    log_prob: Array
    fn: Any
    observed: bool
    reparameterized: bool
    plates: tuple[PlateInfo, ...] = ()
    auxiliary: bool = False


@dataclass(frozen=True)
class TracePair:
    """The guide's and the model's sites from one (vectorized) run over ``particles`` draws.

    ``model`` and ``guide`` list their sites in execution order.

    ``values`` holds the deterministic sites (guide's, then model's) with the particle axis
    first. ``kl`` holds, for each latent site whose guide and prior distributions have a
    closed-form KL divergence, ``KL(q || p)`` shaped like that site's ``log_prob`` (particle
    axis first, model scale applied); it is only computed when read (Pyro) or dropped by the
    compiler when unused (NumPyro).
    """

    model: Mapping[str, Site]
    guide: Mapping[str, Site]
    particles: int
    values: Mapping[str, Array] = field(default_factory=dict)
    kl: Mapping[str, Array] = field(default_factory=dict)
    #: Each guide site's ``log_prob`` with the guide's parameters stopped (values still attached),
    #: filled only when traced with ``TraceOptions(stop_guide_params=True)``.
    guide_stopped: Mapping[str, Array] = field(default_factory=dict)
    #: For each model (guide) site, the guide's latent sites whose sampled values its
    #: log-density depends on, directly or through later guide sites; filled only when traced
    #: with ``TraceOptions(dependencies=True)`` and the backend could track provenance.
    model_deps: Mapping[str, frozenset[str]] = field(default_factory=dict)
    guide_deps: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def latent(self) -> list[str]:
        """The model's unobserved sample sites."""
        return [n for n, s in self.model.items() if not s.observed]


#: ``objective(backend, trace) -> (surrogate, loss)``: the surrogate is differentiated, the loss
#: (its value without score-function terms) is reported.
Objective = Callable[["Backend", TracePair], tuple[Array, Array]]


@dataclass(frozen=True)
class TraceOptions:
    """How a backend traces the guide for an :class:`Estimator`.

    Attributes
    ----------
    detach_samples
        The guide's sampled values carry no gradient: they are stopped as the guide runs, so
        later guide sites and the model see stopped values and every gradient of the guide's
        parameters comes from score terms (the BBVI setting).
    stop_guide_params
        Also record each guide site's log-density with the guide's parameters stopped (values
        still attached) in :attr:`TracePair.guide_stopped` (sticking the landing).
    dependencies
        Also record which guide sites each log-density depends on (provenance tracking, done
        once) in :attr:`TracePair.model_deps` and :attr:`TracePair.guide_deps`.
    """

    detach_samples: bool = False
    stop_guide_params: bool = False
    dependencies: bool = False


def _no_state(backend: Backend, trace: TracePair) -> Any:
    return None


@dataclass(frozen=True)
class Estimator:
    """A gradient estimator that needs more from the loop than an :data:`Objective` does.

    Attributes
    ----------
    step
        ``step(backend, trace, state) -> (surrogate, loss, new_state)``. ``state`` (a pytree of
        backend arrays, or ``None``) is carried from step to step and never differentiated.
    init
        ``init(backend, first_trace) -> state`` before the first step.
    trace
        How the backend traces the guide.
    combine
        ``None``: the gradient of the scalar ``surrogate`` is the estimate. Otherwise the
        surrogate has shape ``(k, particles)``, and each parameter's estimate is
        ``combine(backend, jac)`` where ``jac``, shaped ``(k, particles, *param_shape)``, holds
        the gradient of every entry (estimators that weigh particles' gradients per coordinate).
    """

    step: Callable[[Backend, TracePair, Any], tuple[Array, Array, Any]]
    init: Callable[[Backend, TracePair], Any] = _no_state
    trace: TraceOptions = field(default_factory=TraceOptions)
    combine: Callable[[Backend, Array], Array] | None = None


def as_estimator(objective: Objective | Estimator) -> Estimator:
    """``objective`` as a stateless :class:`Estimator` (an estimator passes through)."""
    if isinstance(objective, Estimator):
        return objective

    def step(backend: Backend, trace: TracePair, state: Any) -> tuple[Array, Array, Any]:
        surrogate, loss = objective(backend, trace)
        return surrogate, loss, state

    return Estimator(step=step)


@dataclass
class GradientDraws:
    """Independent gradient estimates at fixed parameters (see :meth:`Backend.gradient_draws`).

    ``grads`` maps each of the guide's parameters (unconstrained, as the optimizer sees them) to
    an array ``(repeats, *shape)``; ``losses`` has shape ``(repeats,)``; ``seconds`` is the wall
    time per estimate, compilation excluded; ``params`` holds the guide's constrained parameter
    values the estimates were drawn at.
    """

    grads: dict[str, np.ndarray]
    losses: np.ndarray
    seconds: float
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings shared by both backends.

    ``lr_decay`` is the factor the learning rate has shrunk by at the last step (exponential
    schedule); 1.0 keeps it constant. With ``staircase = n > 0`` the rate instead drops by
    ``lr_decay ** (1 / n)`` every ``steps / n`` steps (TensorFlow's staircase schedule).
    ``beta1`` is Adam's first-moment decay (GANs often use 0.5).
    """

    name: str = "adam"
    lr: float = 0.01
    lr_decay: float = 1.0
    momentum: float = 0.9
    clip_norm: float | None = None
    staircase: int = 0
    beta1: float = 0.9

    def __post_init__(self) -> None:
        if self.name not in ("adam", "sgd", "momentum"):
            raise ConfigError(f"Unknown optimizer {self.name!r}; choose adam, sgd or momentum.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}; try lr=0.01.")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}.")
        if int(self.staircase) != self.staircase or self.staircase < 0:
            raise ConfigError(f"staircase must be a non-negative integer, got {self.staircase}.")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"beta1 must be in [0, 1) (Adam's moment decay), got {self.beta1}.")


@dataclass(frozen=True)
class LoopConfig:
    """How long and how to run a training loop."""

    steps: int
    seed: int = 0
    particles: int = 1
    optim: OptimConfig = field(default_factory=OptimConfig)
    progress: bool = True
    chunk: int = 0
    description: str = "fit"
    checkpoint_every: int = 0
    on_nonfinite: str = "stop"

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or self.steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {self.steps}.")
        if int(self.checkpoint_every) != self.checkpoint_every or self.checkpoint_every < 0:
            raise ConfigError(
                f"checkpoint_every must be a non-negative integer, got {self.checkpoint_every}."
            )
        if self.on_nonfinite not in ("stop", "skip"):
            raise ConfigError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}.")
        if int(self.particles) != self.particles or self.particles < 1:
            raise ConfigError(f"particles must be a positive integer, got {self.particles}.")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}.")

    @property
    def chunk_size(self) -> int:
        """Steps between progress updates (and NumPyro's ``lax.scan`` length)."""
        size = self.chunk if self.chunk > 0 else min(500, math.ceil(self.steps / 20))
        size = max(1, min(size, self.steps))
        if self.checkpoint_every > 0:
            # Checkpoints fall on chunk boundaries, so a resumed run replays the same chunks.
            size = min(size, self.checkpoint_every)
            while self.checkpoint_every % size:
                size -= 1
        return size


@dataclass
class Checkpoint:
    """A training loop's complete state after ``step`` steps, as plain arrays.

    ``arrays`` holds parameters, optimizer state and RNG state under backend-chosen names;
    ``meta`` holds the JSON-able rest; ``losses`` the losses of steps ``0 .. step - 1``.
    Resuming from it reproduces the uninterrupted run exactly (bitwise on CPU).
    """

    step: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    losses: np.ndarray
    skipped: int = 0


class LoopHooks(abc.ABC):
    """What a training loop reports to, between chunks (abstract; see ``ppgen.runs``)."""

    @abc.abstractmethod
    def save(self, checkpoint: Checkpoint) -> None:
        """Persist ``checkpoint`` (called every ``checkpoint_every`` steps and on interrupt)."""

    @abc.abstractmethod
    def interrupted(self) -> bool:
        """Whether the user asked the run to stop (Ctrl-C)."""


def check_resume(checkpoint: Checkpoint, fresh: dict[str, np.ndarray], what: str) -> None:
    """Refuse a checkpoint whose arrays don't match the freshly initialized state by name,
    shape and dtype (a checkpoint of another model, guide or optimizer)."""
    missing = sorted(set(fresh) - set(checkpoint.arrays))
    extra = sorted(set(checkpoint.arrays) - set(fresh))
    if missing or extra:
        name = (missing or extra)[0]
        raise RunDirError(
            f"The checkpoint does not match {what}: {name!r} is "
            f"{'missing from it' if missing else 'not part of this model'}; resume with the "
            "model, guide, method and options that wrote it."
        )
    for name, value in fresh.items():
        saved = checkpoint.arrays[name]
        if saved.shape != value.shape or saved.dtype != value.dtype:
            raise RunDirError(
                f"The checkpoint's {name!r} has shape {saved.shape} and dtype {saved.dtype}, but "
                f"{what} needs {value.shape} {value.dtype}; resume with the settings that wrote it."
            )


@dataclass(frozen=True)
class SVIProblem:
    """A model, a guide and bound data, ready for a backend."""

    model: Callable[..., Any]
    guide: Callable[..., Any]
    data: BoundData
    device: str
    name: str = "model"


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds: the first step or chunk (compilation, initialization), the mean per
    later step, and the whole loop."""

    compile_s: float
    step_s: float
    total_s: float


@dataclass
class SVIOutcome:
    """What a training loop returns: losses per step, constrained parameters by name, the
    backend state needed to draw from the guide again, and timings."""

    losses: np.ndarray
    params: dict[str, np.ndarray]
    state: Any
    timings: Timings
    skipped: int = 0


@dataclass(frozen=True)
class NUTSConfig:
    """Settings of the NUTS reference sampler."""

    num_warmup: int = 500
    num_samples: int = 1000
    num_chains: int = 1
    target_accept: float = 0.8
    max_tree_depth: int = 10

    def __post_init__(self) -> None:
        for name in ("num_warmup", "num_samples", "num_chains"):
            value = getattr(self, name)
            if int(value) != value or value < (0 if name == "num_warmup" else 1):
                raise ConfigError(f"{name} must be a positive integer, got {value}.")
        if not 0 < self.target_accept < 1:
            raise ConfigError(f"target_accept must be in (0, 1), got {self.target_accept}.")


@dataclass
class NUTSOutcome:
    """Draws by site with shape ``(chains, draws, *site_shape)`` and per-draw sample stats."""

    samples: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    timings: Timings


@dataclass
class PredictiveDraws:
    """What the model says about its observed sites under given latent draws.

    Per observed site (deterministic and factor sites excluded): ``log_likelihood`` is the
    pointwise log-density of the observed value, shape ``(draws, *batch_shape)``; ``replicates``
    are fresh draws from the site's distribution, shape ``(draws, *value_shape)``; ``observed``
    is the observed value itself.
    """

    log_likelihood: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]


@dataclass
class ImportanceDraws:
    """``log p(x, z)`` and ``log q(z)`` for draws ``z`` of the fitted guide, shape ``(draws,)``."""

    log_joint: np.ndarray
    log_guide: np.ndarray

    @property
    def log_weights(self) -> np.ndarray:
        """Log importance ratios ``log p(x, z) - log q(z)``."""
        return self.log_joint - self.log_guide


# -- games: alternating updates of several parameter groups ---------------------------------------


@dataclass(frozen=True)
class Player:
    """One player of a game: the parameters it updates, its loss, its optimizer.

    Attributes
    ----------
    name
        Label for losses and messages (``"discriminator"``).
    objective
        ``objective(backend, trace) -> (surrogate, loss)``, minimized over this player's
        parameters only; the other players' parameters are held fixed.
    params
        Parameter names, or module names (``"discriminator"`` claims every
        ``"discriminator$..."`` parameter), that this player updates. ``None`` claims every
        parameter that no other player of the phase claims.
    optim
        This player's optimizer; its schedule spans the player's updates in the phase.
    steps
        Updates per round (k discriminator steps per generator step).
    average
        Decay of an exponential moving average of this player's parameters, updated after each
        of its rounds (0: none). The phase's outcome (parameters, state, callbacks) carries the
        average while training continues from the raw parameters: Polyak averaging, which
        steadies the oscillating iterates of a game (Yazıcı et al. 2019).

    References
    ----------
    Yazıcı, Y., Foo, C.-S., Winkler, S., Yap, K.-H., Piliouras, G. & Chandrasekhar, V. (2019).
    The unusual effectiveness of averaging in GAN training. ICLR.
    """

    name: str
    objective: Objective
    params: tuple[str, ...] | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1
    average: float = 0.0

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or self.steps < 1:
            raise ConfigError(
                f"Player {self.name!r} needs at least one update per round, got {self.steps}."
            )
        if not 0.0 <= self.average < 1.0:
            raise ConfigError(
                f"Player {self.name!r}: average must be in [0, 1) (an EMA decay), got "
                f"{self.average}."
            )

    def claims(self, param: str) -> bool:
        """Whether ``param`` is named by ``params`` (exactly, or as ``module$...``)."""
        return self.params is not None and any(
            param == p or param.startswith(f"{p}$") for p in self.params
        )


@dataclass(frozen=True)
class Phase:
    """``rounds`` rounds in which each player, in order, makes its ``steps`` updates."""

    players: tuple[Player, ...]
    rounds: int
    name: str = "train"

    def __post_init__(self) -> None:
        if int(self.rounds) != self.rounds or self.rounds < 1:
            raise ConfigError(f"Phase {self.name!r} needs at least one round, got {self.rounds}.")
        if not self.players:
            raise ConfigError(f"Phase {self.name!r} has no players; give it at least one.")

    def assign(self, names: list[str]) -> list[list[str]]:
        """Split parameter ``names`` between the players; every player must get some."""
        groups: list[list[str]] = [[] for _ in self.players]
        for name in names:
            owners = [i for i, p in enumerate(self.players) if p.claims(name)]
            if len(owners) > 1:
                raise ConfigError(
                    f"Parameter {name!r} is claimed by players "
                    f"{self.players[owners[0]].name!r} and {self.players[owners[1]].name!r}; "
                    "give each parameter to one player."
                )
            if not owners:
                owners = [i for i, p in enumerate(self.players) if p.params is None][:1]
            if owners:
                groups[owners[0]].append(name)
        for player, group in zip(self.players, groups, strict=True):
            if not group:
                raise ModelError(
                    f"Player {player.name!r} has no parameters to update (it claims "
                    f"{list(player.params or ())}, the model has {sorted(names)}); declare its "
                    "network with ppgen.module under that name."
                )
        return groups


@dataclass(frozen=True)
class GameConfig:
    """How to run a game: seed, particles per trace, progress, and a callback period.

    ``every``: call the callback every this many rounds of each phase (0: never); NumPyro's
    compiled chunks are sized to divide it.
    """

    seed: int = 0
    particles: int = 1
    progress: bool = True
    chunk: int = 0
    every: int = 0
    description: str = "game"

    def __post_init__(self) -> None:
        if int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}.")
        if int(self.particles) != self.particles or self.particles < 1:
            raise ConfigError(f"particles must be a positive integer, got {self.particles}.")
        if int(self.every) != self.every or self.every < 0:
            raise ConfigError(f"every must be a non-negative integer, got {self.every}.")

    def chunk_size(self, rounds: int) -> int:
        """Rounds between progress updates (NumPyro's ``lax.scan`` length); divides ``every``."""
        size = self.chunk if self.chunk > 0 else min(500, math.ceil(rounds / 20))
        size = max(1, min(size, rounds))
        if self.every > 0:
            size = min(size, self.every)
            while self.every % size:
                size -= 1
        return size


#: ``callback(phase, rounds_done, state)``: ``state`` works with :meth:`Backend.run_program`.
GameCallback = Callable[[str, int, Any], None]


@dataclass
class GameOutcome:
    """What a game returns: per-round losses (the mean over the round's updates) keyed
    ``"phase/player"``, constrained parameters by name, the backend state, and timings."""

    losses: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    state: Any
    timings: Timings


class LazyMapping(Mapping[str, Any]):
    """A read-only mapping whose values are computed from thunks on first access."""

    def __init__(self, thunks: dict[str, Callable[[], Any]]) -> None:
        self._thunks = thunks
        self._done: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._done:
            self._done[key] = self._thunks[key]()
        return self._done[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._thunks)

    def __len__(self) -> int:
        return len(self._thunks)


def parse_device(spec: str) -> tuple[str, int | None]:
    """Split ``"cuda:1"`` into ``("cuda", 1)``; validate the form."""
    kind, _, index = spec.partition(":")
    if kind not in ("auto", "cpu", "cuda", "gpu") or (index and not index.isdigit()):
        raise DeviceError(
            f"Unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index)."
        )
    if kind in ("auto", "cpu") and index:
        raise DeviceError(f"Device {spec!r} takes no index; use {kind!r}.")
    return ("cuda" if kind == "gpu" else kind), (int(index) if index else None)


def check_guide_covers_model(trace: TracePair, what: str = "guide") -> None:
    """Raise if the guide misses a latent site of the model or names one the model lacks."""
    latent = set(trace.latent)
    guide = {n for n, s in trace.guide.items() if not s.auxiliary and not s.observed}
    missing = sorted(latent - guide)
    if missing:
        raise ModelError(
            f"The {what} has no sample site for the model's latent variable(s) "
            f"{', '.join(map(repr, missing))}; add a matching ppgen.sample to the guide or use "
            "guide='auto'."
        )
    extra = sorted(guide - set(trace.model))
    if extra:
        raise ModelError(
            f"The {what} samples {', '.join(map(repr, extra))}, which the model does not have; "
            "rename the guide site to match the model or mark it infer={'is_auxiliary': True}."
        )


class ProgressBar:
    """A tqdm progress bar that advances by whole chunks and shows the latest loss."""

    def __init__(self, total: int, description: str, enabled: bool, initial: int = 0) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=description, unit="step", leave=False
            )

    def update(self, n: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(n)
            self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def chunks(steps: int, size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` step ranges of at most ``size`` steps."""
    for start in range(0, steps, size):
        yield start, min(steps, start + size)


def raise_nonfinite(
    losses: np.ndarray, offset: int, site: str | None = None, what: str = "loss"
) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite loss (and the site whose
    log-density or value went non-finite, where known), if there is one."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step = offset + int(bad[0])
        where = f" (site {site!r} has a non-finite log-density or value)" if site else ""
        raise NonFiniteError(
            f"The {what} became non-finite at step {step}{where}; lower the learning rate, check "
            "the data for extreme values, or constrain the parameter that diverges "
            "(on_nonfinite='skip' skips such steps instead).",
            step=step,
            site=site,
        )


def raise_nonfinite_round(losses: np.ndarray, offset: int, players: Sequence[Player]) -> None:
    """Raise :class:`NonFiniteError` naming the first round (rows of ``losses``) and the player
    (columns) whose loss is not finite, if there is one."""
    bad = np.argwhere(~np.isfinite(losses))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        raise_nonfinite(np.array([np.nan]), offset + row, what=f"{players[col].name} loss")


def log_joint_and_guide(trace: TracePair, ops: ModuleType) -> tuple[Array, Array]:
    """Each particle's ``log p(x, z)`` (all model sites) and ``log q(z)`` (the guide's latent
    and auxiliary sites), as backend arrays of shape ``(particles,)``."""
    p = trace.particles
    joint: Any = 0.0
    guide: Any = 0.0
    for site in trace.model.values():
        joint = joint + ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    for site in trace.guide.values():
        if not site.observed:
            guide = guide + ops.sum(ops.reshape(site.log_prob, (p, -1)), 1)
    return joint, guide


def first_nonfinite_site(trace: TracePair, to_numpy: Callable[[Any], np.ndarray]) -> str | None:
    """The first site (guide first, then model) whose value or log-density is not finite."""
    for part in (trace.guide, trace.model):
        for name, site in part.items():
            for x in (site.value, site.log_prob):
                arr = to_numpy(x)
                if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                    return name
    return None


def after_chunk(
    hooks: LoopHooks | None, loop: LoopConfig, step: int, checkpoint: Callable[[int], Checkpoint]
) -> None:
    """Checkpoint when due, and on a pending interrupt checkpoint and stop."""
    if hooks is None:
        return
    due = loop.checkpoint_every > 0 and (step % loop.checkpoint_every == 0 or step == loop.steps)
    stop = hooks.interrupted() and step < loop.steps
    if due or stop:
        hooks.save(checkpoint(step))
    if stop:
        raise TrainingInterrupted(
            f"Interrupted after step {step} of {loop.steps}; the checkpoint was saved, resume "
            "with `ppgen fit --resume DIR` or ppgen.fit(resume=DIR).",
            step=step,
        )


class Timer:
    """Measures the first chunk apart from the rest."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.first_steps = 0

    def mark_first(self, steps: int) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start
            self.first_steps = steps

    def result(self, steps: int) -> Timings:
        total = time.perf_counter() - self.start
        first = self.first if self.first is not None else total
        rest = steps - self.first_steps
        per_step = (total - first) / rest if rest > 0 else first / max(1, steps)
        return Timings(compile_s=first, step_s=per_step, total_s=total)


class Backend(abc.ABC):
    """The interface every backend implements (abstract; see ``pyro.py`` and ``numpyro.py``)."""

    name: str

    # -- arrays and devices ------------------------------------------------------------------
    @abc.abstractmethod
    def devices(self) -> list[str]:
        """Devices this backend can see, e.g. ``["cpu", "cuda:0"]``."""

    @abc.abstractmethod
    def resolve_device(self, spec: str) -> str:
        """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a concrete device, or raise
        :class:`~ppgen.errors.DeviceError` naming the devices found."""

    @abc.abstractmethod
    def asarray(self, x: Any, device: str) -> Array:
        """Put a numpy array (or number) on ``device`` as a backend array."""

    @abc.abstractmethod
    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy a backend array to host memory."""

    @property
    @abc.abstractmethod
    def ops(self) -> ModuleType:
        """The ``ppgen.ops`` implementation for this backend."""

    @abc.abstractmethod
    def stop_gradient(self, x: Array) -> Array:
        """``x`` with gradients stopped."""

    # -- guides, training, sampling ----------------------------------------------------------
    @abc.abstractmethod
    def auto_guide(self, model: Callable[..., Any], kind: str) -> Callable[..., Any]:
        """An automatic guide of ``kind`` (``"normal"``, ``"mvn"``, ``"delta"``) for ``model``."""

    @abc.abstractmethod
    def run_svi(
        self,
        problem: SVIProblem,
        objective: Objective | Estimator,
        loop: LoopConfig,
        validate: Callable[[TracePair], None] | None = None,
        hooks: LoopHooks | None = None,
        resume: Checkpoint | None = None,
    ) -> SVIOutcome:
        """Optimize the model's and guide's parameters by following ``objective``'s gradient.

        ``validate`` sees the first trace before any step is taken, so that bad models are
        refused before long work starts. ``hooks`` receives checkpoints every
        ``loop.checkpoint_every`` steps and is asked between chunks whether to stop; ``resume``
        continues from a checkpoint, reproducing the uninterrupted run exactly.
        """

    @abc.abstractmethod
    def posterior_samples(
        self, problem: SVIProblem, state: Any, num_samples: int, seed: int
    ) -> dict[str, np.ndarray]:
        """Draw latent and deterministic sites from the fitted guide (``state`` from
        :meth:`run_svi`), leading axis ``num_samples``."""

    @abc.abstractmethod
    def run_nuts(
        self, problem: SVIProblem, config: NUTSConfig, seed: int, progress: bool
    ) -> NUTSOutcome:
        """Run NUTS on the model and return draws grouped by chain."""

    @abc.abstractmethod
    def predictive(
        self, problem: SVIProblem, state: Any, samples: Mapping[str, np.ndarray], seed: int
    ) -> PredictiveDraws:
        """Run the model conditioned on each draw of ``samples`` (latent sites by name, leading
        axis the draw; other names are ignored) and return, per observed site, the pointwise
        log-likelihood and posterior-predictive replicates. ``state`` holds fitted model
        parameters (``None`` for MCMC)."""

    @abc.abstractmethod
    def importance_draws(
        self, problem: SVIProblem, state: Any, num_samples: int, seed: int
    ) -> ImportanceDraws:
        """``log p(x, z)`` and ``log q(z)`` for ``num_samples`` draws ``z`` of the fitted guide
        (``state`` from :meth:`run_svi`)."""

    @abc.abstractmethod
    def gradient_draws(
        self,
        problem: SVIProblem,
        estimator: Objective | Estimator,
        *,
        particles: int,
        repeats: int,
        seed: int,
        params: Mapping[str, np.ndarray] | None = None,
        state: Any = None,
        warmup: int = 0,
    ) -> GradientDraws:
        """``repeats`` independent estimates of the gradient of ``estimator``'s surrogate with
        respect to the guide's (unconstrained) parameters, each over ``particles`` particles,
        all at the same parameters.

        The parameters are a fit's ``state`` if given, else the constrained values ``params``
        by name, else the initial values for ``seed``. ``warmup`` steps first advance the
        estimator's state (e.g. a moving-average baseline) at those parameters; the state is
        then frozen, so that the estimates are independent.
        """

    # -- games, saved parameters, programs -------------------------------------------------------
    @abc.abstractmethod
    def run_game(
        self,
        problem: SVIProblem,
        phases: Sequence[Phase],
        config: GameConfig,
        validate: Callable[[TracePair], None] | None = None,
        callback: GameCallback | None = None,
    ) -> GameOutcome:
        """Alternating optimization: in each round of each phase, every player in turn makes
        its ``steps`` updates of its own parameters, following its own objective's gradient
        with its own optimizer (GANs: Goodfellow et al. 2014, Algorithm 1). Parameters carry
        over from one phase to the next (pre-training, then the game).

        ``validate`` sees the first trace before any step is taken; ``callback`` is called
        every ``config.every`` rounds with a state that :meth:`run_program` accepts.
        """

    @abc.abstractmethod
    def load_state(self, problem: SVIProblem, params: Mapping[str, np.ndarray]) -> Any:
        """Rebuild a fitted state from constrained parameters by name (as a run directory
        stores them) for the parameters that ``problem``'s model and guide declare."""

    @abc.abstractmethod
    def run_program(self, problem: SVIProblem, state: Any, seed: int) -> Any:
        """Call ``problem.model`` on its data with the parameters of ``state`` (no gradients)
        and return its return value with arrays copied to numpy."""

    @abc.abstractmethod
    def trace_eval(
        self,
        problem: SVIProblem,
        state: Any,
        fn: Callable[[Backend, TracePair], Any],
        particles: int,
        seed: int,
    ) -> Any:
        """Trace guide and model with the parameters of ``state`` over ``particles`` draws and
        return ``fn(backend, trace)`` with arrays copied to numpy (no gradients)."""
