"""The Pyro (PyTorch) backend: an eager training loop over a lean surrogate loss.

Parameters live in a fresh Pyro parameter-store scope per fit, so nothing leaks between fits
or tests; tensors are created on the chosen device once, never moved per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.ops.provenance import get_provenance, track_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import transform_to

from ppgen.backends import base
from ppgen.backends.base import (
    Backend,
    Checkpoint,
    Estimator,
    LoopConfig,
    LoopHooks,
    NUTSConfig,
    NUTSOutcome,
    Objective,
    PlateInfo,
    Site,
    SVIOutcome,
    SVIProblem,
    TraceOptions,
    TracePair,
)
from ppgen.errors import DeviceError, ModelError, RunDirError
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
        self,
        problem: SVIProblem,
        args: Any,
        kwargs: Any,
        particles: int,
        nesting: int,
        detach_samples: bool = False,
    ) -> tuple[Any, Any]:
        guide, model = problem.guide, problem.model
        if particles > 1:
            guide = _vectorize(guide, particles, nesting)
            model = _vectorize(model, particles, nesting)
        # Outside the trace, so that the trace (and the rest of the guide) sees stopped values.
        with _DetachSamples() if detach_samples else contextlib.nullcontext():
            guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        # Replay against the full guide trace: its subsample sites carry the minibatch indices,
        # so the model sees the same data points the guide encoded.
        model_tr = prune_subsample_sites(
            poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
        )
        return prune_subsample_sites(guide_tr), model_tr

    def trace_pair(
        self,
        problem: SVIProblem,
        args: Any,
        kwargs: Any,
        particles: int,
        nesting: int,
        options: TraceOptions | None = None,
        dependencies: _Deps | None = None,
    ) -> TracePair:
        """Run the guide, replay the model against it, over ``particles`` vectorized draws.

        With ``options.dependencies``, pass ``dependencies`` from :func:`_dependencies` (computed
        once per fit) to avoid tracking provenance at every step.
        """
        options = options or TraceOptions()
        if options.dependencies and dependencies is None:
            dependencies = _dependencies(problem, args, kwargs)
        guide_tr, model_tr = self._raw_traces(
            problem, args, kwargs, particles, nesting, options.detach_samples
        )
        stopped: dict[str, Any] = {}
        if options.stop_guide_params:
            stopped = _stopped_guide_log_probs(problem, guide_tr, args, kwargs, particles, nesting)
        model_deps, guide_deps = dependencies if options.dependencies and dependencies else ({}, {})
        return TracePair(
            guide_stopped=stopped,
            model_deps=model_deps,
            guide_deps=guide_deps,
            model=_sites(model_tr, particles, nesting),
            guide=_sites(guide_tr, particles, nesting),
            particles=particles,
            values=_deterministic_values(guide_tr, model_tr, particles),
            kl=base.LazyMapping(_kl_thunks(guide_tr, model_tr, particles, nesting)),
        )

    # -- gradient estimates at fixed parameters ------------------------------------------------
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
    ) -> base.GradientDraws:
        est = base.as_estimator(estimator)
        args, kwargs = self._args(problem)
        # A copy, so that the draws never touch a fit's parameters.
        store_state = None
        if state is not None:
            store_state = {
                "params": {
                    k: v.detach().clone().requires_grad_(True)
                    for k, v in state.store["params"].items()
                },
                "constraints": dict(state.store["constraints"]),
            }
        with poutine.seed(rng_seed=seed), self._session(problem, store_state):
            nesting = self.max_plate_nesting(problem, args, kwargs)
            guide_tr = poutine.trace(problem.guide).get_trace(*args, **kwargs)
            guide_params = [n for n, m in guide_tr.nodes.items() if m["type"] == "param"]
            store = pyro.get_param_store()
            for name, value in (params or {}).items():
                if name in store:
                    store[name] = self.asarray(value, problem.device)
            deps = _dependencies(problem, args, kwargs) if est.trace.dependencies else None

            def trace() -> TracePair:
                return self.trace_pair(problem, args, kwargs, particles, nesting, est.trace, deps)

            first = trace()
            obj_state = est.init(self, first)
            del first
            named = dict(store.named_parameters())
            tensors = list(named.values())
            for _ in range(warmup):
                tr = trace()
                _, _, obj_state = est.step(self, tr, obj_state)
                obj_state = _detached(obj_state)
            reported = [n for n in named if n in guide_params]
            grads: dict[str, list[torch.Tensor]] = {n: [] for n in reported}
            losses = []
            start = time.perf_counter()
            for _ in range(repeats):
                for p in tensors:
                    p.grad = None
                tr = trace()
                loss, _ = _backward(self, est, tr, obj_state, tensors)
                losses.append(loss.detach())
                for n in reported:
                    g = named[n].grad
                    grads[n].append(torch.zeros_like(named[n]) if g is None else g.clone())
            seconds = (time.perf_counter() - start) / repeats
            values = {n: self.to_numpy(store[n]) for n in reported}
        return base.GradientDraws(
            grads={n: torch.stack(g).cpu().numpy() for n, g in grads.items()},
            losses=torch.stack(losses).cpu().numpy().astype(np.float64),
            seconds=seconds,
            params=values,
        )

    # -- training ----------------------------------------------------------------------------
    def run_svi(
        self,
        problem: SVIProblem,
        objective: Objective | Estimator,
        loop: LoopConfig,
        validate: Callable[[TracePair], None] | None = None,
        hooks: LoopHooks | None = None,
        resume: Checkpoint | None = None,
    ) -> SVIOutcome:
        args, kwargs = self._args(problem)
        est = base.as_estimator(objective)
        losses = np.full(loop.steps, np.nan)
        skipped = 0
        timer = base.Timer()
        with poutine.seed(rng_seed=loop.seed), self._session(problem) as state:
            nesting = self.max_plate_nesting(problem, args, kwargs)
            # Provenance tracking is slow: once per fit, not per step.
            deps = _dependencies(problem, args, kwargs) if est.trace.dependencies else None
            try:
                first = self.trace_pair(
                    problem, args, kwargs, loop.particles, nesting, est.trace, deps
                )
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
            obj_state = est.init(self, first)
            del first
            store = pyro.get_param_store()
            names = [name for name, _ in store.named_parameters()]
            params = [p for _, p in store.named_parameters()]
            opt, sched = _optimizer(params, loop)
            begin = 0
            if resume is not None:
                resume, saved_state = _split_objective(resume)
                _restore(resume, names, params, opt, sched, loop)
                obj_state = _objective_restored(obj_state, saved_state)
                begin = resume.step
                losses[:begin] = resume.losses[:begin]
                skipped = resume.skipped

            def checkpoint(step: int) -> Checkpoint:
                ckpt = _checkpoint(step, names, params, opt, sched, losses, skipped)
                # The estimator's state (a moving-average baseline) resumes exactly too.
                ckpt.arrays.update(_objective_arrays(obj_state))
                return ckpt

            bar = base.ProgressBar(loop.steps, loop.description, loop.progress, initial=begin)
            try:
                for start, stop in base.chunks(loop.steps, loop.chunk_size):
                    if stop <= begin:
                        continue
                    for step in range(start, stop):
                        tr = self.trace_pair(
                            problem, args, kwargs, loop.particles, nesting, est.trace, deps
                        )
                        # What opt.zero_grad(set_to_none=True) does, without its per-call
                        # profiler hooks (a few percent of a small model's step).
                        for p in params:
                            p.grad = None
                        loss, obj_state = _backward(self, est, tr, obj_state, params)
                        losses[step] = float(loss.detach())
                        if not (np.isfinite(losses[step]) and _grads_finite(params)):
                            if loop.on_nonfinite == "stop":
                                site = base.first_nonfinite_site(tr, self.to_numpy)
                                what = "loss" if not np.isfinite(losses[step]) else "gradient"
                                base.raise_nonfinite(np.array([np.nan]), step, site, what)
                            skipped += 1
                        else:
                            if loop.optim.clip_norm is not None:
                                torch.nn.utils.clip_grad_norm_(params, loop.optim.clip_norm)
                            opt.step()
                        if sched is not None:
                            sched.step()
                    timer.mark_first(stop)
                    bar.update(stop - start, losses[stop - 1])
                    base.after_chunk(hooks, loop, stop, checkpoint)
            finally:
                bar.close()
            constrained = {name: self.to_numpy(value) for name, value in store.items()}
        return SVIOutcome(
            losses=losses,
            params=constrained,
            state=PyroState(dict(state), nesting),
            timings=timer.result(loop.steps - begin),
            skipped=skipped,
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

    # -- predictive checks and importance weights ---------------------------------------------
    def predictive(
        self, problem: SVIProblem, state: Any, samples: Mapping[str, np.ndarray], seed: int
    ) -> base.PredictiveDraws:
        args, kwargs = self._args(problem)
        store = state.store if state is not None else None
        ll: dict[str, list[np.ndarray]] = {}
        rep: dict[str, list[np.ndarray]] = {}
        with poutine.seed(rng_seed=seed), self._session(problem, store), torch.no_grad():
            # Any: Pyro's message TypedDict types "fn" as a plain callable.
            single: Any = prune_subsample_sites(
                poutine.trace(problem.model).get_trace(*args, **kwargs)
            )
            nesting = _nesting(single)
            latent = {
                n: m
                for n, m in single.nodes.items()
                if m["type"] == "sample" and not m["is_observed"]
            }
            observed = {n: m for n, m in single.nodes.items() if _is_likelihood(n, m)}
            total = len(next(iter(samples[n] for n in latent))) if latent else 1
            for start, stop in base.chunks(total, _PREDICTIVE_CHUNK):
                n = stop - start
                cond = {}
                for name, msg in latent.items():
                    # The particle plate sits left of the model's plates: pad the draw's shape.
                    shape = tuple(msg["value"].shape)
                    pad = nesting - (len(shape) - msg["fn"].event_dim)
                    value = self.asarray(np.asarray(samples[name][start:stop]), problem.device)
                    cond[name] = value.reshape(n, *([1] * pad), *shape)
                model = poutine.condition(_vectorize(problem.model, n, nesting), data=cond)
                tr: Any = poutine.trace(model).get_trace(*args, **kwargs)
                for name, msg0 in observed.items():
                    fn, value = tr.nodes[name]["fn"], tr.nodes[name]["value"]
                    lp_shape = tuple(msg0["fn"].log_prob(msg0["value"]).shape)
                    lp = _particles_first(fn.log_prob(value), n, nesting, 0, lp_shape)
                    draw = _particles_first(
                        fn.sample(), n, nesting, fn.event_dim, tuple(msg0["value"].shape)
                    )
                    ll.setdefault(name, []).append(self.to_numpy(lp))
                    rep.setdefault(name, []).append(self.to_numpy(draw))
        return base.PredictiveDraws(
            log_likelihood={k: np.concatenate(v) for k, v in ll.items()},
            replicates={k: np.concatenate(v) for k, v in rep.items()},
            observed={k: self.to_numpy(m["value"]) for k, m in observed.items()},
        )

    def importance_draws(
        self, problem: SVIProblem, state: Any, num_samples: int, seed: int
    ) -> base.ImportanceDraws:
        args, kwargs = self._args(problem)
        joint, guide = [], []
        with poutine.seed(rng_seed=seed), self._session(problem, state.store), torch.no_grad():
            for start, stop in base.chunks(num_samples, _PREDICTIVE_CHUNK):
                tr = self.trace_pair(problem, args, kwargs, stop - start, state.max_plate_nesting)
                lp, lq = base.log_joint_and_guide(tr, self.ops)
                joint.append(self.to_numpy(lp))
                guide.append(self.to_numpy(lq))
        return base.ImportanceDraws(
            log_joint=np.concatenate(joint).astype(np.float64),
            log_guide=np.concatenate(guide).astype(np.float64),
        )

    # -- games, saved parameters, programs ----------------------------------------------------
    def run_game(
        self,
        problem: SVIProblem,
        phases: Sequence[base.Phase],
        config: base.GameConfig,
        validate: Callable[[TracePair], None] | None = None,
        callback: base.GameCallback | None = None,
    ) -> base.GameOutcome:
        args, kwargs = self._args(problem)
        losses = {
            f"{ph.name}/{pl.name}": np.full(ph.rounds, np.nan) for ph in phases for pl in ph.players
        }
        total = sum(ph.rounds for ph in phases)
        timer = base.Timer()
        done = 0
        with poutine.seed(rng_seed=config.seed), self._session(problem):
            nesting = self.max_plate_nesting(problem, args, kwargs)
            first = self.trace_pair(problem, args, kwargs, config.particles, nesting)
            if validate is not None:
                validate(first)
            del first
            store = pyro.get_param_store()
            named = dict(store.named_parameters())

            def trace() -> TracePair:
                return self.trace_pair(problem, args, kwargs, config.particles, nesting)

            bar = base.ProgressBar(total, config.description, config.progress)
            # Moving averages of the averaging players' (unconstrained) parameters, by name.
            averages: dict[str, torch.Tensor] = {}
            try:
                for ph in phases:
                    names = ph.assign(list(named))
                    groups = [[named[n] for n in g] for g in names]
                    opts = [
                        _optimizer(group, LoopConfig(steps=ph.rounds * pl.steps, optim=pl.optim))
                        for pl, group in zip(ph.players, groups, strict=True)
                    ]
                    averages = {
                        n: named[n].detach().clone()
                        for pl, g in zip(ph.players, names, strict=True)
                        if pl.average > 0
                        for n in g
                    }
                    players = list(zip(ph.players, names, groups, opts, strict=True))
                    for start, stop in base.chunks(ph.rounds, config.chunk_size(ph.rounds)):
                        for r in range(start, stop):
                            for pl, group_names, params, opt in players:
                                loss = self._player_updates(trace, pl, params, opt, r)
                                losses[f"{ph.name}/{pl.name}"][r] = loss
                                with torch.no_grad():
                                    for n in group_names if pl.average > 0 else ():
                                        averages[n].lerp_(named[n].detach(), 1.0 - pl.average)
                        done += stop - start
                        timer.mark_first(done)
                        last = losses[f"{ph.name}/{ph.players[-1].name}"][stop - 1]
                        bar.update(stop - start, float(last))
                        if callback is not None and config.every and stop % config.every == 0:
                            with torch.no_grad():
                                snapshot = _state(store, averages)
                                callback(ph.name, stop, PyroState(snapshot, nesting))
            finally:
                bar.close()
            final = _state(store, averages)
            constrained = {
                name: self.to_numpy(transform_to(final["constraints"][name])(value))
                for name, value in final["params"].items()
            }
        state = PyroState(final, nesting)
        return base.GameOutcome(losses, constrained, state, timer.result(total))

    def _player_updates(
        self,
        trace: Callable[[], TracePair],
        player: base.Player,
        params: list[torch.Tensor],
        optimizer: tuple[torch.optim.Optimizer, Any],
        step: int,
    ) -> float:
        """One round of ``player``: its ``steps`` updates; returns their mean loss."""
        opt, sched = optimizer
        total = 0.0
        for _ in range(player.steps):
            tr = trace()
            surrogate, loss = player.objective(self, tr)
            # Gradients of this player's parameters only: the others stay fixed this update.
            grads = torch.autograd.grad(surrogate, params, allow_unused=True)
            value = float(loss.detach())
            if not np.isfinite(value):
                site = base.first_nonfinite_site(tr, self.to_numpy)
                base.raise_nonfinite(np.array([value]), step, site, f"{player.name} loss")
            for p, g in zip(params, grads, strict=True):
                p.grad = torch.zeros_like(p) if g is None else g
            if player.optim.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, player.optim.clip_norm)
            opt.step()
            if sched is not None:
                sched.step()
            total += value
        return total / player.steps

    def load_state(self, problem: SVIProblem, params: Mapping[str, np.ndarray]) -> PyroState:
        args, kwargs = self._args(problem)
        with poutine.seed(rng_seed=0), self._session(problem) as state, torch.no_grad():
            # One run declares every parameter with its constraint; then the saved values win.
            nesting = self.max_plate_nesting(problem, args, kwargs)
            store = pyro.get_param_store()
            for name in list(store.keys()):
                if name not in params:
                    raise RunDirError(
                        f"The saved parameters lack {name!r}, which model {problem.name!r} "
                        "declares; load them with the model and arguments that wrote them."
                    )
                saved = torch.as_tensor(np.asarray(params[name]), device=problem.device)
                if tuple(saved.shape) != tuple(store[name].shape):
                    raise RunDirError(
                        f"The saved {name!r} has shape {tuple(saved.shape)}, but model "
                        f"{problem.name!r} needs {tuple(store[name].shape)}; load it with the "
                        "arguments that wrote it."
                    )
                store[name] = saved.to(store[name].dtype)
            snapshot = _state(store)
        del state
        return PyroState(snapshot, nesting)

    def run_program(self, problem: SVIProblem, state: Any, seed: int) -> Any:
        args, kwargs = self._args(problem)
        with poutine.seed(rng_seed=seed), self._session(problem, state.store), torch.no_grad():
            out = problem.model(*args, **kwargs)
        return _to_numpy_tree(out)

    def trace_eval(
        self,
        problem: SVIProblem,
        state: Any,
        fn: Callable[[Backend, TracePair], Any],
        particles: int,
        seed: int,
    ) -> Any:
        args, kwargs = self._args(problem)
        with poutine.seed(rng_seed=seed), self._session(problem, state.store), torch.no_grad():
            nesting = max(state.max_plate_nesting, self.max_plate_nesting(problem, args, kwargs))
            out = fn(self, self.trace_pair(problem, args, kwargs, particles, nesting))
        return _to_numpy_tree(out)


def _state(store: Any, replace: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The parameter store's state (its tensors, not copies) as a plain dict, with the
    unconstrained values in ``replace`` (e.g. moving averages) instead of the store's."""
    state = dict(store.get_state())
    if replace:
        state["params"] = {**state["params"], **replace}
    return state


def _to_numpy_tree(x: Any) -> Any:
    """Tensors (in dicts, lists, tuples) copied to numpy; everything else as it is."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, dict):
        return {k: _to_numpy_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_numpy_tree(v) for v in x)
    return x


#: Draws per vectorized run in :meth:`PyroBackend.predictive` (bounds memory on big models).
_PREDICTIVE_CHUNK = 1000


def _nesting(trace: Any) -> int:
    """How many plate dimensions the sites of ``trace`` use."""
    dims = [
        -frame.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return max(dims, default=0)


def _is_likelihood(name: str, msg: Any) -> bool:
    """An observed data site: not a deterministic record, not a ``factor`` term."""
    return (
        msg["type"] == "sample"
        and bool(msg["is_observed"])
        and not msg["infer"].get("_deterministic")
        and type(msg["fn"]).__name__ != "Unit"
        and not name.startswith("_")
    )


def _backward(
    backend: PyroBackend, est: Estimator, tr: TracePair, state: Any, params: list[torch.Tensor]
) -> tuple[torch.Tensor, Any]:
    """One step of ``est`` on ``tr``: its estimate lands in ``params``' ``.grad``; returns the
    loss and the estimator's next state."""
    surrogate, loss, new_state = est.step(backend, tr, state)
    if est.combine is None:
        surrogate.backward()
    else:
        for p, jac in zip(params, _entry_grads(surrogate, params), strict=True):
            if jac is not None:
                p.grad = est.combine(backend, jac).detach()
    return loss, _detached(new_state)


def _entry_grads(rows: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """The gradient of every entry of ``rows`` with respect to each parameter, shaped
    ``(*rows.shape, *param.shape)`` (``None`` where a parameter is unused)."""
    flat = rows.reshape(-1)
    eye = torch.eye(flat.numel(), dtype=flat.dtype, device=flat.device)
    grads: Sequence[torch.Tensor | None]
    try:
        # One vectorized backward pass over all entries.
        grads = torch.autograd.grad(
            flat, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True
        )
    except RuntimeError:
        # Some operations have no batching rule: one backward pass per entry instead.
        per_entry: list[Sequence[Any]] = [
            torch.autograd.grad(f, params, retain_graph=True, allow_unused=True) for f in flat
        ]
        grads = [
            None if per_entry[0][i] is None else torch.stack([g[i] for g in per_entry])
            for i in range(len(params))
        ]
    return [
        None if g is None else g.reshape(*rows.shape, *p.shape)
        for g, p in zip(grads, params, strict=True)
    ]


_OBJECTIVE = "objective/"


def _objective_arrays(tree: Any, prefix: str = _OBJECTIVE) -> dict[str, np.ndarray]:
    """An estimator's state (nested dicts of tensors) as named arrays for a checkpoint."""
    if isinstance(tree, torch.Tensor):
        return {prefix.rstrip("/"): tree.detach().cpu().numpy().copy()}
    if isinstance(tree, dict):
        out: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            out.update(_objective_arrays(value, f"{prefix}{key}/"))
        return out
    return {}


def _objective_restored(tree: Any, arrays: dict[str, np.ndarray], prefix: str = _OBJECTIVE) -> Any:
    """``tree`` with every tensor replaced by its saved value, where the checkpoint has one."""
    if isinstance(tree, torch.Tensor):
        saved = arrays.get(prefix.rstrip("/"))
        return tree if saved is None else torch.as_tensor(saved, dtype=tree.dtype).to(tree.device)
    if isinstance(tree, dict):
        return {k: _objective_restored(v, arrays, f"{prefix}{k}/") for k, v in tree.items()}
    return tree


def _split_objective(ckpt: Checkpoint) -> tuple[Checkpoint, dict[str, np.ndarray]]:
    """The checkpoint without the estimator's arrays, and those arrays."""
    state = {k: v for k, v in ckpt.arrays.items() if k.startswith(_OBJECTIVE)}
    rest = {k: v for k, v in ckpt.arrays.items() if not k.startswith(_OBJECTIVE)}
    return dataclasses.replace(ckpt, arrays=rest), state


def _detached(tree: Any) -> Any:
    """``tree`` (nested dicts, lists, tuples of tensors) with every tensor detached."""
    if isinstance(tree, torch.Tensor):
        return tree.detach()
    if isinstance(tree, dict):
        return {k: _detached(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_detached(v) for v in tree)
    return tree


class _DetachSamples(Messenger):
    """Stop the gradient of every sampled (not observed) value as the program runs."""

    def _postprocess_message(self, msg: Any) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["value"] = msg["value"].detach()


#: Per model site and per guide site, the guide sites its log-density depends on.
_Deps = tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]


class _TrackSamples(Messenger):
    """Tag every sampled value with its site's name; provenance then flows through the ops."""

    def _postprocess_message(self, msg: Any) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["value"] = track_provenance(msg["value"], frozenset({msg["name"]}))


def _log_prob(msg: Any) -> torch.Tensor:
    return msg["fn"].log_prob(msg["value"])


def _dependencies(problem: SVIProblem, args: Any, kwargs: Any) -> _Deps | None:
    """Which guide sites each model and guide log-density depends on, by provenance tracking
    of one unvectorized run (Wingate et al. 2011), or ``None`` where tracking fails.

    The random state is restored afterwards: asking for dependencies changes no draw."""
    rng = pyro.util.get_rng_state()
    try:
        with torch.no_grad():
            with _TrackSamples():
                guide_tr = poutine.trace(problem.guide).get_trace(*args, **kwargs)
            model_tr = poutine.trace(poutine.replay(problem.model, trace=guide_tr)).get_trace(
                *args, **kwargs
            )
            deps = []
            for tr in (model_tr, guide_tr):
                deps.append(
                    {
                        name: get_provenance(_log_prob(msg))
                        for name, msg in prune_subsample_sites(tr).nodes.items()
                        if msg["type"] == "sample"
                        and not (msg["infer"] or {}).get("_deterministic")
                    }
                )
    except Exception:
        # Some operations do not propagate provenance; the caller falls back to site order.
        return None
    finally:
        pyro.util.set_rng_state(rng)
    return deps[0], deps[1]


class _StopParams(Messenger):
    """Hand the program its parameters with gradients stopped."""

    def _postprocess_message(self, msg: Any) -> None:
        if msg["type"] == "param":
            msg["value"] = msg["value"].detach()


def _stopped_guide_log_probs(
    problem: SVIProblem, guide_tr: Any, args: Any, kwargs: Any, particles: int, nesting: int
) -> dict[str, torch.Tensor]:
    """Each guide site's log-density at its traced (attached) value, parameters stopped.

    The guide runs again, replayed against its own trace: later sites still see earlier values
    with their gradients, only the parameters are cut (sticking the landing).
    """
    guide = problem.guide if particles == 1 else _vectorize(problem.guide, particles, nesting)
    with _StopParams():
        tr = poutine.trace(poutine.replay(guide, trace=guide_tr)).get_trace(*args, **kwargs)
    sites = _sites(prune_subsample_sites(tr), particles, nesting)
    return {name: site.log_prob for name, site in sites.items() if not site.observed}


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


def _batch_first(x: torch.Tensor, particles: int, nesting: int) -> torch.Tensor:
    """A batch-shaped array (like a log-density) with the particle axis moved to the front."""
    if particles == 1:
        return x.unsqueeze(0)
    while x.dim() < nesting + 1:
        x = x.unsqueeze(0)
    return x.movedim(-(nesting + 1), 0)


def _deterministic_values(guide_tr: Any, model_tr: Any, particles: int) -> dict[str, Any]:
    """Deterministic sites with a leading particle axis (vectorized values already lead with it;
    values that do not depend on the particles are broadcast)."""
    out: dict[str, Any] = {}
    for tr in (guide_tr, model_tr):
        for name, msg in tr.nodes.items():
            if msg["type"] == "sample" and msg["infer"].get("_deterministic"):
                value = msg["value"]
                if particles == 1 or value.dim() == 0 or value.shape[0] != particles:
                    value = value.unsqueeze(0).expand(particles, *value.shape)
                out[name] = value
    return out


def _kl_thunks(
    guide_tr: Any, model_tr: Any, particles: int, nesting: int
) -> dict[str, Callable[[], Any]]:
    """Closed-form ``KL(q || p)`` per latent site, computed only when asked for."""
    thunks: dict[str, Callable[[], Any]] = {}
    for name, g in guide_tr.nodes.items():
        m = model_tr.nodes.get(name)
        if (
            g["type"] != "sample"
            or g["is_observed"]
            or m is None
            or m["type"] != "sample"
            or m["is_observed"]
        ):
            continue
        if not _has_closed_form_kl(type(_unwrap(g["fn"])), type(_unwrap(m["fn"]))):
            continue

        def thunk(g: Any = g, m: Any = m) -> Any:
            kl = torch.distributions.kl_divergence(g["fn"], m["fn"])
            kl = scale_and_mask(kl, m["scale"], m["mask"])
            return _batch_first(torch.as_tensor(kl), particles, nesting)

        thunks[name] = thunk
    return thunks


def _unwrap(fn: Any) -> Any:
    """The base distribution under Pyro's Independent / expand wrappers (for KL lookup)."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


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
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))
    else:
        momentum = cfg.momentum if cfg.name == "momentum" else 0.0
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=momentum)
    sched: Any = None
    if cfg.lr_decay < 1.0 and cfg.staircase > 0:
        sched = torch.optim.lr_scheduler.StepLR(
            opt,
            step_size=max(1, loop.steps // cfg.staircase),
            gamma=cfg.lr_decay ** (1.0 / cfg.staircase),
        )
    elif cfg.lr_decay < 1.0:
        gamma = cfg.lr_decay ** (1.0 / max(1, loop.steps))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    return opt, sched


def _grads_finite(params: list[torch.Tensor]) -> bool:
    # One reduction and one host sync per step: a sum is finite only if every entry is. As few
    # torch calls as possible: for small models each call's overhead, not its arithmetic, counts.
    total = None
    for p in params:
        if p.grad is not None:
            total = p.grad.sum() if total is None else total + p.grad.sum()
    return total is None or math.isfinite(total.item())


#: ``(type(q), type(p)) -> whether torch has a closed-form KL``: a pure memo of torch's lookup,
#: which scans its whole registry and would otherwise run at every training step.
_CLOSED_FORM_KL: dict[tuple[type, type], bool] = {}


def _has_closed_form_kl(q: type, p: type) -> bool:
    """Whether torch registers ``KL(q || p)`` for these distribution types."""
    if (q, p) not in _CLOSED_FORM_KL:
        from torch.distributions.kl import _dispatch_kl

        _CLOSED_FORM_KL[q, p] = _dispatch_kl(q, p) is not NotImplemented
    return _CLOSED_FORM_KL[q, p]


def _checkpoint(
    step: int,
    names: list[str],
    params: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: Any,
    losses: np.ndarray,
    skipped: int,
) -> Checkpoint:
    """The loop's state as arrays: unconstrained parameters, optimizer moments, torch RNG."""
    arrays: dict[str, np.ndarray] = {
        f"param/{name}": p.detach().cpu().numpy().copy()
        for name, p in zip(names, params, strict=True)
    }
    opt_state = opt.state_dict()
    for index, slots in opt_state["state"].items():
        for key, value in slots.items():
            arrays[f"optim/{names[index]}/{key}"] = (
                value.detach().cpu().numpy().copy()
                if isinstance(value, torch.Tensor)
                else np.asarray(value)
            )
    arrays["rng/torch"] = torch.get_rng_state().numpy().copy()
    meta = {
        "param_groups": [
            {k: v for k, v in group.items() if k != "params"} for group in opt_state["param_groups"]
        ],
        "scheduler": sched.state_dict() if sched is not None else None,
    }
    return Checkpoint(step, arrays, meta, losses[:step].copy(), skipped)


def _restore(
    ckpt: Checkpoint,
    names: list[str],
    params: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: Any,
    loop: LoopConfig,
) -> None:
    fresh = {f"param/{n}": p.detach().cpu().numpy() for n, p in zip(names, params, strict=True)}
    fresh["rng/torch"] = torch.get_rng_state().numpy()
    saved = {k: v for k, v in ckpt.arrays.items() if not k.startswith("optim/")}
    base.check_resume(Checkpoint(ckpt.step, saved, ckpt.meta, ckpt.losses), fresh, "this fit")
    if not 0 < ckpt.step <= loop.steps:
        raise RunDirError(
            f"The checkpoint is at step {ckpt.step}, outside this run's 1..{loop.steps}; resume "
            "with the same number of steps that wrote it."
        )
    with torch.no_grad():
        for name, p in zip(names, params, strict=True):
            p.copy_(torch.from_numpy(ckpt.arrays[f"param/{name}"]))
    state: dict[int, dict[str, Any]] = {}
    for key, value in ckpt.arrays.items():
        if key.startswith("optim/"):
            name, _, slot = key[len("optim/") :].rpartition("/")
            if name not in names:
                raise RunDirError(
                    f"The checkpoint's optimizer state names parameter {name!r}, which this fit "
                    "does not have; resume with the model and guide that wrote it."
                )
            state.setdefault(names.index(name), {})[slot] = torch.from_numpy(value.copy())
    groups = [{**group, "params": list(range(len(params)))} for group in ckpt.meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
    if sched is not None and ckpt.meta.get("scheduler") is not None:
        sched.load_state_dict(ckpt.meta["scheduler"])
    torch.set_rng_state(torch.from_numpy(ckpt.arrays["rng/torch"].copy()))
