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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ppgen.errors import ConfigError, DeviceError, ModelError, NonFiniteError
from ppgen.modeling.model import BoundData

__all__ = [
    "Backend",
    "LoopConfig",
    "NUTSConfig",
    "NUTSOutcome",
    "Objective",
    "OptimConfig",
    "PlateInfo",
    "ProgressBar",
    "SVIOutcome",
    "SVIProblem",
    "Site",
    "Timings",
    "TracePair",
    "check_guide_covers_model",
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
    """The guide's and the model's sites from one (vectorized) run over ``particles`` draws."""

    model: Mapping[str, Site]
    guide: Mapping[str, Site]
    particles: int

    @property
    def latent(self) -> list[str]:
        """The model's unobserved sample sites."""
        return [n for n, s in self.model.items() if not s.observed]


#: ``objective(backend, trace) -> (surrogate, loss)``: the surrogate is differentiated, the loss
#: (its value without score-function terms) is reported.
Objective = Callable[["Backend", TracePair], tuple[Array, Array]]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings shared by both backends.

    ``lr_decay`` is the factor the learning rate has shrunk by at the last step (exponential
    schedule); 1.0 keeps it constant.
    """

    name: str = "adam"
    lr: float = 0.01
    lr_decay: float = 1.0
    momentum: float = 0.9
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ("adam", "sgd", "momentum"):
            raise ConfigError(f"Unknown optimizer {self.name!r}; choose adam, sgd or momentum.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}; try lr=0.01.")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}.")


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

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or self.steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {self.steps}.")
        if int(self.particles) != self.particles or self.particles < 1:
            raise ConfigError(f"particles must be a positive integer, got {self.particles}.")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}.")

    @property
    def chunk_size(self) -> int:
        """Steps between progress updates (and NumPyro's ``lax.scan`` length)."""
        if self.chunk > 0:
            return min(self.chunk, self.steps)
        return max(1, min(self.steps, 500, math.ceil(self.steps / 20)))


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

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="step", leave=False)

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


def raise_nonfinite(losses: np.ndarray, offset: int) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite loss, if there is one."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step = offset + int(bad[0])
        raise NonFiniteError(
            f"The loss became {losses[bad[0]]} at step {step}; lower the learning rate, check the "
            "data for extreme values, or constrain the parameter that diverges.",
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
        objective: Objective,
        loop: LoopConfig,
        validate: Callable[[TracePair], None] | None = None,
    ) -> SVIOutcome:
        """Optimize the model's and guide's parameters by following ``objective``'s gradient.

        ``validate`` sees the first trace before any step is taken, so that bad models are
        refused before long work starts.
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
