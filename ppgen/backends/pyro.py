"""The Pyro (PyTorch) backend: an eager training loop over a lean surrogate loss.

Parameters live in a fresh Pyro parameter-store scope per fit, so nothing leaks between fits
or tests; tensors are created on the chosen device once, never moved per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites

from ppgen.backends import base
from ppgen.backends.base import (
    Backend,
    LoopConfig,
    NUTSConfig,
    NUTSOutcome,
    Objective,
    PlateInfo,
    Site,
    SVIOutcome,
    SVIProblem,
    TracePair,
)
from ppgen.errors import DeviceError, ModelError
from ppgen.modeling import _ops_torch
from ppgen.modeling.context import use_backend

__all__ = ["PyroBackend"]

_PARTICLES = "_ppgen_particles"


class PyroState:
    """The fitted parameter-store state and the plate nesting needed to sample again."""

    def __init__(self, store: dict[str, Any], max_plate_nesting: int) -> None:
        self.store = store
        self.max_plate_nesting = max_plate_nesting


class PyroBackend(Backend):
    """Pyro / torch implementation of :class:`~ppgen.backends.base.Backend`."""

    name = "pyro"

    def devices(self) -> list[str]:
        found = ["cpu"]
        if torch.cuda.is_available():
            found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return found

    def resolve_device(self, spec: str) -> str:
        kind, index = base.parse_device(spec)
        found = self.devices()
        if kind == "auto":
            return "cuda:0" if "cuda:0" in found else "cpu"
        if kind == "cpu":
            return "cpu"
        target = f"cuda:{index or 0}"
        if target not in found:
            raise DeviceError(
                f"Device {spec!r} is not available: torch found only {', '.join(found)}; "
                "use --device cpu (or 'auto'), or install a CUDA build of torch on a GPU machine."
            )
        return target

    def asarray(self, x: Any, device: str) -> torch.Tensor:
        arr = np.asarray(x)
        dtype = torch.float32 if arr.dtype.kind in "fb" else None
        return torch.as_tensor(arr, dtype=dtype, device=torch.device(device))

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

    @property
    def ops(self) -> ModuleType:
        return _ops_torch

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def auto_guide(self, model: Callable[..., Any], kind: str) -> Callable[..., Any]:
        cls = {
            "normal": autoguide.AutoNormal,
            "mvn": autoguide.AutoMultivariateNormal,
            "delta": autoguide.AutoDelta,
        }[kind]
        return cls(model)

    # -- tracing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, problem: SVIProblem, store: Any = None) -> Iterator[Any]:
        """Fresh parameter store (or ``store``) and network cache, ppgen dispatching to Pyro."""
        with (
            pyro.get_param_store().scope(store) as state,
            use_backend("pyro", problem.device),
            pyro.validation_enabled(False),
        ):
            yield state

    def _args(self, problem: SVIProblem) -> tuple[tuple[Any, ...], dict[str, Any]]:
        bound = problem.data.map(lambda x: self.asarray(x, problem.device))
        return bound.args, bound.kwargs

    def max_plate_nesting(self, problem: SVIProblem, args: Any, kwargs: Any) -> int:
        guide_tr = poutine.trace(problem.guide).get_trace(*args, **kwargs)
        model_tr = poutine.trace(poutine.replay(problem.model, trace=guide_tr)).get_trace(
            *args, **kwargs
        )
        dims = [
            -frame.dim
            for tr in (guide_tr, model_tr)
            for site in tr.nodes.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
            if frame.vectorized and frame.dim is not None
        ]
        return max(dims, default=0)

    def _raw_traces(
        self, problem: SVIProblem, args: Any, kwargs: Any, particles: int, nesting: int
    ) -> tuple[Any, Any]:
        guide, model = problem.guide, problem.model
        if particles > 1:
            guide = _vectorize(guide, particles, nesting)
            model = _vectorize(model, particles, nesting)
        guide_tr = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
        model_tr = prune_subsample_sites(
            poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
        )
        return guide_tr, model_tr

    def trace_pair(
        self, problem: SVIProblem, args: Any, kwargs: Any, particles: int, nesting: int
    ) -> TracePair:
        """Run the guide, replay the model against it, over ``particles`` vectorized draws."""
        guide_tr, model_tr = self._raw_traces(problem, args, kwargs, particles, nesting)
        return TracePair(
            model=_sites(model_tr, particles, nesting),
            guide=_sites(guide_tr, particles, nesting),
            particles=particles,
        )

    # -- training ----------------------------------------------------------------------------
    def run_svi(
        self,
        problem: SVIProblem,
        objective: Objective,
        loop: LoopConfig,
        validate: Callable[[TracePair], None] | None = None,
    ) -> SVIOutcome:
        args, kwargs = self._args(problem)
        losses = np.empty(loop.steps, dtype=np.float64)
        timer = base.Timer()
        with poutine.seed(rng_seed=loop.seed), self._session(problem) as state:
            nesting = self.max_plate_nesting(problem, args, kwargs)
            try:
                first = self.trace_pair(problem, args, kwargs, loop.particles, nesting)
            except (RuntimeError, ValueError) as err:
                if loop.particles == 1:
                    raise
                raise ModelError(
                    f"Model {problem.name!r} fails when its {loop.particles} particles are "
                    f"vectorized ({str(err).splitlines()[0]}); write it so that latent values "
                    "with extra leading batch dimensions broadcast (e.g. ops.sum(X * w, -1) "
                    "instead of X @ w), or use particles=1."
                ) from err
            if validate is not None:
                validate(first)
            params = [p for _, p in pyro.get_param_store().named_parameters()]
            opt, sched = _optimizer(params, loop)
            bar = base.ProgressBar(loop.steps, loop.description, loop.progress)
            try:
                for start, stop in base.chunks(loop.steps, loop.chunk_size):
                    for step in range(start, stop):
                        tr = self.trace_pair(problem, args, kwargs, loop.particles, nesting)
                        surrogate, loss = objective(self, tr)
                        opt.zero_grad(set_to_none=True)
                        surrogate.backward()
                        if loop.optim.clip_norm is not None:
                            torch.nn.utils.clip_grad_norm_(params, loop.optim.clip_norm)
                        losses[step] = float(loss.detach())
                        if not np.isfinite(losses[step]):
                            base.raise_nonfinite(losses[start : step + 1], start)
                        opt.step()
                        if sched is not None:
                            sched.step()
                    timer.mark_first(stop)
                    bar.update(stop - start, losses[stop - 1])
            finally:
                bar.close()
            constrained = {
                name: self.to_numpy(value) for name, value in pyro.get_param_store().items()
            }
        return SVIOutcome(
            losses=losses,
            params=constrained,
            state=PyroState(dict(state), nesting),
            timings=timer.result(loop.steps),
        )

    def posterior_samples(
        self, problem: SVIProblem, state: Any, num_samples: int, seed: int
    ) -> dict[str, np.ndarray]:
        args, kwargs = self._args(problem)
        nesting = state.max_plate_nesting
        with poutine.seed(rng_seed=seed), self._session(problem, state.store), torch.no_grad():
            single = self._raw_traces(problem, args, kwargs, 1, nesting)[1]
            _, model_tr = self._raw_traces(problem, args, kwargs, num_samples, nesting)
            out = {}
            for name, msg in model_tr.nodes.items():
                if msg["type"] != "sample" or name.startswith("_"):
                    continue
                deterministic = bool(msg["infer"].get("_deterministic"))
                if msg["is_observed"] and not deterministic:
                    continue
                shape = tuple(single.nodes[name]["value"].shape)
                event = max(0, len(shape) - nesting) if deterministic else msg["fn"].event_dim
                out[name] = self.to_numpy(
                    _particles_first(msg["value"], num_samples, nesting, event, shape)
                )
        return out

    def run_nuts(
        self, problem: SVIProblem, config: NUTSConfig, seed: int, progress: bool
    ) -> NUTSOutcome:
        from pyro.infer import MCMC, NUTS

        args, kwargs = self._args(problem)
        timer = base.Timer()
        chains: list[dict[str, np.ndarray]] = []
        diverging: list[np.ndarray] = []
        # Pyro runs parallel chains in worker processes; sequential chains in one process are
        # simpler, deterministic and fast enough for reference posteriors.
        for chain in range(config.num_chains):
            with poutine.seed(rng_seed=seed + chain), self._session(problem):
                kernel = NUTS(
                    problem.model,
                    target_accept_prob=config.target_accept,
                    max_tree_depth=config.max_tree_depth,
                )
                mcmc = MCMC(
                    kernel,
                    num_samples=config.num_samples,
                    warmup_steps=config.num_warmup,
                    num_chains=1,
                    disable_progbar=not progress,
                )
                mcmc.run(*args, **kwargs)
                draws = mcmc.get_samples()
                det = _deterministic(problem, draws, args, kwargs)
                chains.append({k: self.to_numpy(v) for k, v in {**draws, **det}.items()})
                div = np.zeros(config.num_samples, dtype=bool)
                div[list(mcmc.diagnostics().get("divergences", {}).get("chain 0", []))] = True
                diverging.append(div)
            timer.mark_first(1)
        samples = {k: np.stack([c[k] for c in chains]) for k in chains[0]}
        return NUTSOutcome(samples, {"diverging": np.stack(diverging)}, timer.result(1))


def _vectorize(fn: Callable[..., Any], particles: int, nesting: int) -> Callable[..., Any]:
    def vectorized(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(_PARTICLES, particles, dim=-(nesting + 1)):
            return fn(*args, **kwargs)

    return vectorized


def _sites(trace: Any, particles: int, nesting: int) -> dict[str, Site]:
    sites: dict[str, Site] = {}
    for name, msg in trace.nodes.items():
        if msg["type"] != "sample" or msg["infer"].get("_deterministic"):
            continue
        lp = scale_and_mask(msg["fn"].log_prob(msg["value"]), msg["scale"], msg["mask"])
        if not isinstance(lp, torch.Tensor):
            lp = torch.as_tensor(lp)
        if particles > 1:
            # The particle plate sits left of every model plate; move it to the front.
            while lp.dim() < nesting + 1:
                lp = lp.unsqueeze(0)
            lp = lp.movedim(-(nesting + 1), 0)
        else:
            lp = lp.unsqueeze(0)
        plates = tuple(
            PlateInfo(f.name, f.dim, f.size)
            for f in msg["cond_indep_stack"]
            if f.name != _PARTICLES and f.vectorized
        )
        sites[name] = Site(
            name=name,
            value=msg["value"],
            log_prob=lp,
            fn=msg["fn"],
            observed=bool(msg["is_observed"]),
            reparameterized=bool(getattr(msg["fn"], "has_rsample", False)),
            plates=plates,
            auxiliary=bool(msg["infer"].get("is_auxiliary", False)),
        )
    return sites


def _particles_first(
    value: torch.Tensor, particles: int, nesting: int, event_dim: int, shape: tuple[int, ...]
) -> torch.Tensor:
    """Move the particle plate's dimension of ``value`` to the front, giving ``(particles, *shape)``
    where ``shape`` is the value's shape in a run without particles."""
    while value.dim() < nesting + 1 + event_dim:
        value = value.unsqueeze(0)
    value = value.movedim(value.dim() - (nesting + 1) - event_dim, 0)
    if value.shape[0] != particles:
        value = value.expand(particles, *value.shape[1:])
    return value.reshape(particles, *shape)


def _deterministic(
    problem: SVIProblem, draws: dict[str, torch.Tensor], args: Any, kwargs: Any
) -> dict[str, torch.Tensor]:
    model_tr = poutine.trace(problem.model).get_trace(*args, **kwargs)
    names = [
        n
        for n, m in model_tr.nodes.items()
        if m["type"] == "sample" and (m.get("infer") or {}).get("_deterministic")
    ]
    if not names:
        return {}
    predictive = pyro.infer.Predictive(
        problem.model, posterior_samples=draws, return_sites=names, parallel=True
    )
    with torch.no_grad():
        return dict(predictive(*args, **kwargs))


def _optimizer(params: list[torch.Tensor], loop: LoopConfig) -> tuple[Any, Any]:
    cfg = loop.optim
    opt: torch.optim.Optimizer
    if cfg.name == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    else:
        momentum = cfg.momentum if cfg.name == "momentum" else 0.0
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=momentum)
    sched = None
    if cfg.lr_decay < 1.0:
        gamma = cfg.lr_decay ** (1.0 / max(1, loop.steps))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    return opt, sched
