"""The NumPyro (JAX) backend: a jitted step, run in chunks inside ``lax.scan``.

One chunk of ``LoopConfig.chunk_size`` steps is one compiled call; the progress bar advances
between chunks and nothing retraces after the first one (a short last chunk is padded with
masked steps instead of being compiled again).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer.autoguide as autoguide
import optax
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.primitives import Messenger

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
from ppgen.modeling import _ops_jax
from ppgen.modeling.context import use_backend

__all__ = ["NumPyroBackend"]


class SiteMeta(NamedTuple):
    """The static part of a site: what stays the same from one step to the next."""

    fn: Any
    observed: bool
    reparameterized: bool
    plates: tuple[PlateInfo, ...]
    auxiliary: bool


class NumPyroState(NamedTuple):
    """Constrained parameters of a fit: all NumPyro needs to draw from the guide again."""

    params: dict[str, Any]


class NumPyroBackend(Backend):
    """NumPyro / JAX implementation of :class:`~ppgen.backends.base.Backend`."""

    name = "numpyro"

    def devices(self) -> list[str]:
        found = ["cpu"]
        try:
            found += [f"cuda:{i}" for i, _ in enumerate(jax.devices("gpu"))]
        except RuntimeError:
            pass
        return found

    def _device(self, name: str) -> Any:
        if name == "cpu":
            return jax.devices("cpu")[0]
        return jax.devices("gpu")[int(name.partition(":")[2] or 0)]

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
                f"Device {spec!r} is not available: JAX found only {', '.join(found)}; "
                "use --device cpu (or 'auto'), or install ppgen[cuda] on a GPU machine."
            )
        return target

    def asarray(self, x: Any, device: str) -> jax.Array:
        arr = np.asarray(x)
        if arr.dtype.kind in "fb":
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int32)
        return jax.device_put(arr, self._device(device))

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    @property
    def ops(self) -> ModuleType:
        return _ops_jax

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

    def auto_guide(self, model: Callable[..., Any], kind: str) -> Callable[..., Any]:
        cls = {
            "normal": autoguide.AutoNormal,
            "mvn": autoguide.AutoMultivariateNormal,
            "delta": autoguide.AutoDelta,
        }[kind]
        return cls(model)

    # -- tracing -----------------------------------------------------------------------------
    def _args(self, problem: SVIProblem) -> tuple[tuple[Any, ...], dict[str, Any]]:
        bound = problem.data.map(lambda x: self.asarray(x, problem.device))
        return bound.args, bound.kwargs

    def init_params(
        self, problem: SVIProblem, args: Any, kwargs: Any, key: jax.Array
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run guide and model once; return unconstrained initial values and their transforms."""
        k1, k2 = jax.random.split(key)
        try:
            guide_tr = handlers.trace(handlers.seed(problem.guide, k1)).get_trace(*args, **kwargs)
        except RuntimeError as err:
            if "valid initial parameters" not in str(err):
                raise
            raise ModelError(
                f"The automatic guide found no starting point where model {problem.name!r} has a "
                "finite log density; check the model's supports against its data, or write a "
                "guide."
            ) from err
        model_tr = handlers.trace(
            handlers.replay(handlers.seed(problem.model, k2), trace=guide_tr)
        ).get_trace(*args, **kwargs)
        transforms: dict[str, Any] = {}
        unconstrained: dict[str, Any] = {}
        for tr in (guide_tr, model_tr):
            for name, msg in tr.items():
                if msg["type"] != "param" or name in transforms:
                    continue
                constraint = msg["kwargs"].get("constraint")
                t = biject_to(constraint) if constraint is not None else None
                transforms[name] = t
                value = msg["value"]
                unconstrained[name] = value if t is None else jax.tree.map(t.inv, value)
        return unconstrained, transforms

    def constrain(
        self, unconstrained: dict[str, Any], transforms: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            k: v if transforms[k] is None else jax.tree.map(transforms[k], v)
            for k, v in unconstrained.items()
        }

    def trace_fn(
        self,
        problem: SVIProblem,
        args: Any,
        kwargs: Any,
        particles: int,
        options: TraceOptions | None = None,
    ) -> Callable[[dict[str, Any], jax.Array], TracePair]:
        """A pure function ``(constrained params, key) -> TracePair`` over vectorized particles."""
        meta: dict[str, dict[str, SiteMeta]] = {}
        options = options or TraceOptions()

        def one(params: dict[str, Any], key: jax.Array) -> dict[str, dict[str, Any]]:
            k1, k2 = jax.random.split(key)
            guide = handlers.substitute(handlers.seed(problem.guide, k1), data=params)
            model = handlers.substitute(handlers.seed(problem.model, k2), data=params)
            # Outside the trace, so that the trace (and the rest of the guide) sees stopped values.
            with _DetachSamples() if options.detach_samples else contextlib.nullcontext():
                guide_tr = handlers.trace(guide).get_trace(*args, **kwargs)
            model_tr = handlers.trace(handlers.replay(model, trace=guide_tr)).get_trace(
                *args, **kwargs
            )
            out = {}
            for part, tr in (("guide", guide_tr), ("model", model_tr)):
                arrays, meta[part] = {}, {}
                for name, msg in tr.items():
                    if msg["type"] != "sample":
                        continue
                    lp = msg["fn"].log_prob(msg["value"])
                    if msg.get("scale") is not None:
                        lp = msg["scale"] * lp
                    arrays[name] = (jnp.asarray(msg["value"]), jnp.asarray(lp))
                    meta[part][name] = SiteMeta(
                        fn=msg["fn"],
                        observed=bool(msg["is_observed"]),
                        reparameterized=bool(getattr(msg["fn"], "has_rsample", False)),
                        plates=tuple(
                            PlateInfo(f.name, f.dim, f.size) for f in msg["cond_indep_stack"]
                        ),
                        auxiliary=bool((msg.get("infer") or {}).get("is_auxiliary", False)),
                    )
                out[part] = arrays
            out["values"] = _deterministic_values(guide_tr, model_tr)
            out["kl"] = _kl_values(guide_tr, model_tr)
            out["stopped"] = {}
            if options.stop_guide_params:
                out["stopped"] = _stopped_guide_log_probs(
                    problem, params, k1, guide_tr, args, kwargs
                )
            return out

        # Dependencies are structural: tracked once, on the first call, then reused.
        deps: list[tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]] = []

        def traced(params: dict[str, Any], key: jax.Array) -> TracePair:
            if options.dependencies and not deps:
                deps.append(_dependencies(problem, args, kwargs, params) or ({}, {}))
            if particles == 1:
                out = jax.tree.map(lambda x: x[None], one(params, key))
            else:
                keys = jax.random.split(key, particles)
                out = jax.vmap(one, in_axes=(None, 0))(params, keys)
            model_deps, guide_deps = deps[0] if deps else ({}, {})
            return TracePair(
                guide_stopped=out["stopped"],
                model_deps=model_deps,
                guide_deps=guide_deps,
                model=_sites(out["model"], meta["model"]),
                guide=_sites(out["guide"], meta["guide"]),
                particles=particles,
                values=out["values"],
                kl=out["kl"],
            )

        return traced

    # -- gradient estimates at fixed parameters ------------------------------------------------
    def _grad_fn(self, est: Estimator, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``jax.value_and_grad(fn, has_aux=True)``, or its per-entry form for estimators that
        combine the gradients of several per-particle surrogates themselves."""
        if est.combine is None:
            return jax.value_and_grad(fn, has_aux=True)
        combine = est.combine
        return _entry_grads(fn, lambda jac: combine(self, jac))

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
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            init_key, warm_key, key = jax.random.split(jax.random.PRNGKey(seed), 3)
            uparams, transforms = self.init_params(problem, args, kwargs, init_key)
            guide_tr = handlers.trace(handlers.seed(problem.guide, init_key)).get_trace(
                *args, **kwargs
            )
            guide_params = [n for n, m in guide_tr.items() if m["type"] == "param"]
            given = dict(state.params) if state is not None else dict(params or {})
            for name, value in given.items():
                if name in uparams:
                    t = transforms[name]
                    value = jax.tree.map(jnp.asarray, value)
                    uparams[name] = value if t is None else jax.tree.map(t.inv, value)
            uparams = _strongly_typed(uparams)
            traced = self.trace_fn(problem, args, kwargs, particles, est.trace)
            obj_state = est.init(self, traced(self.constrain(uparams, transforms), init_key))

            def loss_fn(u: dict[str, Any], k: jax.Array, s: Any) -> tuple[Any, Any]:
                surrogate, loss, s = est.step(self, traced(self.constrain(u, transforms), k), s)
                return surrogate, (loss, jax.lax.stop_gradient(s))

            grad_fn = self._grad_fn(est, loss_fn)
            if warmup > 0:

                def advance(s: Any, k: jax.Array) -> tuple[Any, None]:
                    return loss_fn(uparams, k, s)[1][1], None

                obj_state = jax.jit(lambda s, ks: jax.lax.scan(advance, s, ks)[0])(
                    obj_state, jax.random.split(warm_key, warmup)
                )

            def one(k: jax.Array) -> tuple[Any, Any]:
                (_, (loss, _)), grads = grad_fn(uparams, k, obj_state)
                return {n: grads[n] for n in guide_params if n in grads}, loss

            # One estimate after another inside one compiled call, as in the training loop: the
            # time per estimate is that of a step, not of a batch of them.
            keys = jax.random.split(key, repeats)
            compiled = jax.jit(lambda ks: jax.lax.map(one, ks)).lower(keys).compile()
            start = time.perf_counter()
            grads, losses = jax.block_until_ready(compiled(keys))
            seconds = (time.perf_counter() - start) / repeats
            values = self.constrain(uparams, transforms)
        return base.GradientDraws(
            grads=_flatten(grads),
            losses=np.asarray(losses, dtype=np.float64),
            seconds=seconds,
            params=_flatten({n: values[n] for n in guide_params if n in values}),
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
        device = self._device(problem.device)
        with use_backend("numpyro", problem.device), jax.default_device(device):
            args, kwargs = self._args(problem)
            init_key, train_key = jax.random.split(jax.random.PRNGKey(loop.seed))
            uparams, transforms = self.init_params(problem, args, kwargs, init_key)
            est = base.as_estimator(objective)
            traced = self.trace_fn(problem, args, kwargs, loop.particles, est.trace)
            first = traced(self.constrain(uparams, transforms), init_key)
            if validate is not None:
                validate(first)
            tx = _optimizer(loop)
            # Weakly typed initial values (Python scalars in a guide's init) would come back
            # strongly typed from the first chunk and make the second chunk compile again.
            # The estimator's state (None for plain objectives) rides along as a third slot; via
            # the host, so that it is not committed to a device when the parameters are not
            # (a mix would make the second chunk compile again).
            obj_state = jax.device_get(est.init(self, first))
            carry: Any = _strongly_typed((uparams, tx.init(uparams), obj_state))
            del first
            losses = np.full(loop.steps, np.nan)
            skipped = 0
            begin = 0
            if resume is not None:
                carry = _restore(resume, carry, loop)
                begin = resume.step
                losses[:begin] = resume.losses[:begin]
                skipped = resume.skipped
            site_names: list[str] = []

            def loss_fn(u: dict[str, Any], key: jax.Array, obj_state: Any) -> tuple[Any, Any]:
                tr = traced(self.constrain(u, transforms), key)
                surrogate, loss, obj_state = est.step(self, tr, obj_state)
                # Which sites are finite, so that a non-finite loss can name its culprit. A sum
                # is finite only if every entry is, and XLA shares the log-density sums with the
                # ELBO's: checking entry by entry cost up to a third of a small model's step.
                site_names[:] = [*tr.guide, *tr.model]
                finite = jnp.stack(
                    [
                        jnp.isfinite(jnp.sum(site.log_prob)) & jnp.isfinite(jnp.sum(site.value))
                        for part in (tr.guide, tr.model)
                        for site in part.values()
                    ]
                )
                return surrogate, (loss, finite, jax.lax.stop_gradient(obj_state))

            grad_fn = self._grad_fn(est, loss_fn)
            chunk = loop.chunk_size
            padded = loop.steps % chunk != 0
            skip = loop.on_nonfinite == "skip"

            def body(carry: Any, step: jax.Array) -> tuple[Any, Any]:
                params, state, obj_state = carry
                key = jax.random.fold_in(train_key, step)
                (_, (loss, finite, new_obj)), grads = grad_fn(params, key, obj_state)
                ok = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
                updates, new_state = tx.update(grads, state, params)
                new_carry = (optax.apply_updates(params, updates), new_state, new_obj)
                keep = step < loop.steps if padded else True
                if skip:
                    keep = keep & ok
                if skip or padded:
                    # Skipped steps and steps past the end leave everything as it was.
                    new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
                return new_carry, (loss, ok, finite)

            @jax.jit
            def run_chunk(carry: Any, start: jax.Array) -> tuple[Any, Any]:
                return jax.lax.scan(body, carry, start + jnp.arange(chunk))

            def checkpoint(step: int) -> Checkpoint:
                return _checkpoint(step, carry, losses, skipped, loop)

            timer = base.Timer()
            bar = base.ProgressBar(loop.steps, loop.description, loop.progress, initial=begin)
            try:
                for start, stop in base.chunks(loop.steps, chunk):
                    if stop <= begin:
                        continue
                    new_carry, (chunk_losses, oks, finite) = run_chunk(carry, jnp.asarray(start))
                    n = stop - start
                    values, oks = np.asarray(chunk_losses)[:n], np.asarray(oks)[:n]
                    if not skip and not oks.all():
                        # The parameters of the last good chunk are kept.
                        bad = int(np.flatnonzero(~oks)[0])
                        flags = np.asarray(finite)[bad]
                        site = site_names[int(np.argmin(flags))] if not flags.all() else None
                        what = "loss" if not np.isfinite(values[bad]) else "gradient"
                        base.raise_nonfinite(np.array([np.nan]), start + bad, site, what)
                    skipped += int((~oks).sum())
                    carry = new_carry
                    losses[start:stop] = values
                    timer.mark_first(stop)
                    bar.update(n, float(values[-1]))
                    base.after_chunk(hooks, loop, stop, checkpoint)
            finally:
                bar.close()
            params = self.constrain(carry[0], transforms)
            jax.block_until_ready(params)
        return SVIOutcome(
            losses=losses,
            params=_flatten(params),
            state=NumPyroState(params),
            timings=timer.result(loop.steps - begin),
            skipped=skipped,
        )

    def posterior_samples(
        self, problem: SVIProblem, state: Any, num_samples: int, seed: int
    ) -> dict[str, np.ndarray]:
        from numpyro.infer import Predictive

        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            key = jax.random.PRNGKey(seed)
            guide_tr = handlers.trace(
                handlers.substitute(handlers.seed(problem.guide, key), data=state.params)
            ).get_trace(*args, **kwargs)
            model_tr = handlers.trace(
                handlers.replay(handlers.seed(problem.model, key), trace=guide_tr)
            ).get_trace(*args, **kwargs)
            names = [
                n
                for n, m in model_tr.items()
                if (m["type"] == "sample" and not m["is_observed"]) or m["type"] == "deterministic"
            ]
            predictive = Predictive(
                problem.model,
                guide=problem.guide,
                params=state.params,
                num_samples=num_samples,
                return_sites=names,
            )
            out = predictive(key, *args, **kwargs)
        return {k: np.asarray(v) for k, v in out.items()}

    def run_nuts(
        self, problem: SVIProblem, config: NUTSConfig, seed: int, progress: bool
    ) -> NUTSOutcome:
        from numpyro.infer import MCMC, NUTS

        timer = base.Timer()
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            kernel = NUTS(
                problem.model,
                target_accept_prob=config.target_accept,
                max_tree_depth=config.max_tree_depth,
            )
            mcmc = MCMC(
                kernel,
                num_warmup=config.num_warmup,
                num_samples=config.num_samples,
                num_chains=config.num_chains,
                chain_method="vectorized" if config.num_chains > 1 else "sequential",
                progress_bar=progress,
            )
            fields = ("diverging", "accept_prob", "energy", "num_steps")
            mcmc.run(jax.random.PRNGKey(seed), *args, extra_fields=fields, **kwargs)
            samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
            # ArviZ's names, so that its energy plot and BFMI find them.
            arviz_names = {"accept_prob": "acceptance_rate", "num_steps": "n_steps"}
            stats = {
                arviz_names.get(k, k): np.asarray(v)
                for k, v in mcmc.get_extra_fields(group_by_chain=True).items()
            }
        timer.mark_first(1)
        return NUTSOutcome(samples, stats, timer.result(1))

    # -- predictive checks and importance weights ---------------------------------------------
    def predictive(
        self, problem: SVIProblem, state: Any, samples: Mapping[str, np.ndarray], seed: int
    ) -> base.PredictiveDraws:
        params = state.params if state is not None else {}
        ll: dict[str, list[np.ndarray]] = {}
        rep: dict[str, list[np.ndarray]] = {}
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            key = jax.random.PRNGKey(seed)
            single = handlers.trace(
                handlers.substitute(handlers.seed(problem.model, key), data=params)
            ).get_trace(*args, **kwargs)
            latent = [
                n for n, m in single.items() if m["type"] == "sample" and not m["is_observed"]
            ]
            observed = [n for n, m in single.items() if _is_likelihood(n, m)]

            def one(draw: dict[str, Any], k: jax.Array) -> dict[str, tuple[Any, Any]]:
                k_model, k_rep = jax.random.split(k)
                model = handlers.substitute(handlers.seed(problem.model, k_model), data=params)
                tr = handlers.trace(handlers.condition(model, data=draw)).get_trace(*args, **kwargs)
                out = {}
                for i, name in enumerate(observed):
                    fn = tr[name]["fn"]
                    out[name] = (
                        fn.log_prob(tr[name]["value"]),
                        fn.sample(jax.random.fold_in(k_rep, i)),
                    )
                return out

            # Compiled once: every chunk has the same size (the last one padded and cut back).
            vectorized = jax.jit(jax.vmap(one))
            total = len(samples[latent[0]]) if latent else 1
            size = min(total, _PREDICTIVE_CHUNK)
            for start, stop in base.chunks(total, size):
                pad = size - (stop - start)
                draws = {
                    n: jnp.asarray(_pad_rows(np.asarray(samples[n][start:stop]), pad))
                    for n in latent
                }
                keys = jax.random.split(jax.random.fold_in(key, start), size)
                out = vectorized(draws, keys)
                for name, (lp, draw) in out.items():
                    ll.setdefault(name, []).append(np.asarray(lp)[: stop - start])
                    rep.setdefault(name, []).append(np.asarray(draw)[: stop - start])
        return base.PredictiveDraws(
            log_likelihood={k: np.concatenate(v) for k, v in ll.items()},
            replicates={k: np.concatenate(v) for k, v in rep.items()},
            observed={k: np.asarray(single[k]["value"]) for k in observed},
        )

    def importance_draws(
        self, problem: SVIProblem, state: Any, num_samples: int, seed: int
    ) -> base.ImportanceDraws:
        joint, guide = [], []
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            key = jax.random.PRNGKey(seed)
            # One compiled chunk size; the last chunk's surplus draws are dropped.
            size = min(num_samples, _PREDICTIVE_CHUNK)
            traced = self.trace_fn(problem, args, kwargs, size)

            @jax.jit
            def densities(params: dict[str, Any], k: jax.Array) -> Any:
                return base.log_joint_and_guide(traced(params, k), self.ops)

            for start, stop in base.chunks(num_samples, size):
                lp, lq = densities(state.params, jax.random.fold_in(key, start))
                joint.append(np.asarray(lp)[: stop - start])
                guide.append(np.asarray(lq)[: stop - start])
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
        total = sum(ph.rounds for ph in phases)
        losses: dict[str, np.ndarray] = {}
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
            uparams, transforms = self.init_params(problem, args, kwargs, init_key)
            traced = self.trace_fn(problem, args, kwargs, config.particles)
            if validate is not None:
                validate(traced(self.constrain(uparams, transforms), init_key))
            uparams = _strongly_typed(uparams)
            timer = base.Timer()
            bar = base.ProgressBar(total, config.description, config.progress)
            done = 0
            try:
                for index, ph in enumerate(phases):
                    phase_key = jax.random.fold_in(train_key, index)
                    run_chunk, carry = self._game_phase(ph, config, traced, transforms, uparams)
                    phase_losses = np.full((ph.rounds, len(ph.players)), np.nan)
                    chunk = config.chunk_size(ph.rounds)
                    for start, stop in base.chunks(ph.rounds, chunk):
                        new_carry, chunk_losses = run_chunk(carry, jnp.asarray(start), phase_key)
                        values = np.asarray(chunk_losses)[: stop - start]
                        # On a non-finite loss the parameters of the last good chunk are kept.
                        base.raise_nonfinite_round(values, start, ph.players)
                        carry = new_carry
                        phase_losses[start:stop] = values
                        done += stop - start
                        timer.mark_first(done)
                        bar.update(stop - start, float(values[-1, -1]))
                        if callback is not None and config.every and stop % config.every == 0:
                            state = NumPyroState(self.constrain(_averaged(carry), transforms))
                            callback(ph.name, stop, state)
                    for i, pl in enumerate(ph.players):
                        losses[f"{ph.name}/{pl.name}"] = phase_losses[:, i]
                    # The next phase trains on from the raw parameters; the outcome is averaged.
                    uparams, final = carry[0], _averaged(carry)
            finally:
                bar.close()
            params = self.constrain(final, transforms)
            jax.block_until_ready(params)
        return base.GameOutcome(losses, _flatten(params), NumPyroState(params), timer.result(total))

    def _game_phase(
        self,
        phase: base.Phase,
        config: base.GameConfig,
        traced: Callable[[dict[str, Any], jax.Array], TracePair],
        transforms: dict[str, Any],
        uparams: dict[str, Any],
    ) -> tuple[Callable[[Any, jax.Array, jax.Array], Any], Any]:
        """The compiled chunk of rounds of one phase, and its initial carry."""
        groups = phase.assign(list(uparams))
        txs = [
            _optimizer(LoopConfig(steps=phase.rounds * pl.steps, optim=pl.optim))
            for pl in phase.players
        ]
        states = tuple(
            tx.init({n: uparams[n] for n in group}) for tx, group in zip(txs, groups, strict=True)
        )
        chunk = config.chunk_size(phase.rounds)
        padded = phase.rounds % chunk != 0

        def player_round(i: int, params: dict[str, Any], state: Any, key: jax.Array) -> Any:
            player, group, tx = phase.players[i], groups[i], txs[i]

            def update(carry: Any, j: jax.Array) -> tuple[Any, Any]:
                params, state = carry
                k = jax.random.fold_in(key, j)

                def loss_fn(own: dict[str, Any]) -> tuple[Any, Any]:
                    # Only this player's parameters are differentiated; the rest are constants.
                    full = {**params, **own}
                    return player.objective(self, traced(self.constrain(full, transforms), k))

                own = {n: params[n] for n in group}
                (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(own)
                updates, state = tx.update(grads, state, own)
                return ({**params, **optax.apply_updates(own, updates)}, state), loss

            (params, state), losses = jax.lax.scan(
                update, (params, state), jnp.arange(player.steps)
            )
            return params, state, jnp.mean(losses)

        def body(carry: Any, r: jax.Array, phase_key: jax.Array) -> tuple[Any, Any]:
            params, states, averages = carry
            new_states, new_averages, round_losses = [], [], []
            for i, player in enumerate(phase.players):
                key = jax.random.fold_in(jax.random.fold_in(phase_key, r), i)
                params, state, loss = player_round(i, params, states[i], key)
                new_states.append(state)
                round_losses.append(loss)
                average = averages[i]
                if player.average > 0:
                    own = {n: params[n] for n in groups[i]}
                    average = optax.incremental_update(own, average, 1.0 - player.average)
                new_averages.append(average)
            new_carry = (params, tuple(new_states), tuple(new_averages))
            if padded:
                # Rounds past the end leave everything as it was.
                new_carry = jax.tree.map(
                    lambda n, o: jnp.where(r < phase.rounds, n, o), new_carry, carry
                )
            return new_carry, jnp.stack(round_losses)

        @jax.jit
        def run_chunk(carry: Any, start: jax.Array, key: jax.Array) -> tuple[Any, Any]:
            return jax.lax.scan(lambda c, r: body(c, r, key), carry, start + jnp.arange(chunk))

        averages = tuple(
            {n: uparams[n] for n in group} if pl.average > 0 else {}
            for pl, group in zip(phase.players, groups, strict=True)
        )
        return run_chunk, _strongly_typed((uparams, states, averages))

    def load_state(self, problem: SVIProblem, params: Mapping[str, np.ndarray]) -> NumPyroState:
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            uparams, transforms = self.init_params(problem, args, kwargs, jax.random.PRNGKey(0))
            fresh = self.constrain(uparams, transforms)
            leaves, treedef = jax.tree_util.tree_flatten_with_path(fresh)
            names = list(_flatten(fresh))
            loaded = []
            for name, (_, leaf) in zip(names, leaves, strict=True):
                if name not in params:
                    raise RunDirError(
                        f"The saved parameters lack {name!r}, which model {problem.name!r} "
                        "declares; load them with the model and arguments that wrote them."
                    )
                saved = np.asarray(params[name])
                if saved.shape != tuple(jnp.shape(leaf)):
                    raise RunDirError(
                        f"The saved {name!r} has shape {saved.shape}, but model {problem.name!r} "
                        f"needs {tuple(jnp.shape(leaf))}; load it with the arguments that wrote it."
                    )
                loaded.append(jnp.asarray(saved, dtype=jnp.result_type(leaf)))
        return NumPyroState(jax.tree_util.tree_unflatten(treedef, loaded))

    def run_program(self, problem: SVIProblem, state: Any, seed: int) -> Any:
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            key = jax.random.PRNGKey(seed)
            model = handlers.substitute(handlers.seed(problem.model, key), data=state.params)
            out = model(*args, **kwargs)
        return jax.tree.map(np.asarray, out)

    def trace_eval(
        self,
        problem: SVIProblem,
        state: Any,
        fn: Callable[[Backend, TracePair], Any],
        particles: int,
        seed: int,
    ) -> Any:
        with (
            use_backend("numpyro", problem.device),
            jax.default_device(self._device(problem.device)),
        ):
            args, kwargs = self._args(problem)
            arrays, static = _split_static(args, kwargs)
            # One compiled function per model, guide, fn and static arguments: evaluating data
            # in chunks of one shape compiles once.
            key = (problem.model, problem.guide, fn, particles, repr(static), problem.device)
            run = _EVAL_CACHE.get(key)
            if run is None:

                def evaluate(params: Any, rng: jax.Array, arrays: Any) -> Any:
                    a, kw = _merge_static(arrays, static)
                    return fn(self, self.trace_fn(problem, a, kw, particles)(params, rng))

                run = _EVAL_CACHE[key] = jax.jit(evaluate)
                while len(_EVAL_CACHE) > 16:
                    _EVAL_CACHE.pop(next(iter(_EVAL_CACHE)))
            out = run(state.params, jax.random.PRNGKey(seed), arrays)
        return jax.tree.map(np.asarray, out)


def _averaged(carry: Any) -> dict[str, Any]:
    """A game phase's parameters with each averaging player's moving average in place."""
    params = dict(carry[0])
    for average in carry[2]:
        params.update(average)
    return params


#: Compiled functions of :meth:`NumPyroBackend.trace_eval`, oldest first.
_EVAL_CACHE: dict[Any, Any] = {}


def _split_static(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Arrays (traced by jit) apart from the other arguments (baked into the compiled code)."""

    def is_array(x: Any) -> bool:
        return isinstance(x, jax.Array)

    arrays = (
        {i: a for i, a in enumerate(args) if is_array(a)},
        {k: v for k, v in kwargs.items() if is_array(v)},
    )
    static = (
        tuple((i, a) for i, a in enumerate(args) if not is_array(a)),
        tuple(sorted((k, v) for k, v in kwargs.items() if not is_array(v))),
        len(args),
    )
    return arrays, static


def _merge_static(arrays: Any, static: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    positional = {**arrays[0], **dict(static[0])}
    return tuple(positional[i] for i in range(static[2])), {**arrays[1], **dict(static[1])}


#: Draws per vectorized run in :meth:`NumPyroBackend.predictive` (bounds memory on big models).
_PREDICTIVE_CHUNK = 1000


def _pad_rows(x: np.ndarray, pad: int) -> np.ndarray:
    """``x`` with its last row repeated ``pad`` more times along the first axis."""
    return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


def _is_likelihood(name: str, msg: dict[str, Any]) -> bool:
    """An observed data site, not a ``factor`` term."""
    return (
        msg["type"] == "sample"
        and bool(msg["is_observed"])
        and type(msg["fn"]).__name__ != "Unit"
        and not name.startswith("_")
    )


def _deterministic_values(guide_tr: Any, model_tr: Any) -> dict[str, Any]:
    return {
        name: jnp.asarray(msg["value"])
        for tr in (guide_tr, model_tr)
        for name, msg in tr.items()
        if msg["type"] == "deterministic"
    }


def _kl_values(guide_tr: Any, model_tr: Any) -> dict[str, Any]:
    """Closed-form ``KL(q || p)`` per latent site where NumPyro has one (XLA drops it unused)."""
    from numpyro.distributions.kl import kl_divergence

    out: dict[str, Any] = {}
    for name, g in guide_tr.items():
        m = model_tr.get(name)
        if g["type"] != "sample" or g["is_observed"] or m is None or m["type"] != "sample":
            continue
        if m["is_observed"]:
            continue
        try:
            kl = kl_divergence(g["fn"], m["fn"])
        except (NotImplementedError, ValueError, TypeError):
            continue
        out[name] = kl if m.get("scale") is None else m["scale"] * kl
    return out


class _DetachSamples(Messenger):
    """Stop the gradient of every sampled (not observed) value as the program runs."""

    def postprocess_message(self, msg: Any) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["value"] = jax.lax.stop_gradient(msg["value"])


def _dependencies(
    problem: SVIProblem, args: Any, kwargs: Any, params: dict[str, Any]
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]] | None:
    """Which guide sites each model and guide log-density depends on, by provenance tracking
    through JAX's abstract evaluation (Wingate et al. 2011), or ``None`` where it fails.

    Each latent value is replaced by ``0 * sample + input`` so that it depends both on its own
    input and on whatever its distribution depended on: dependencies are transitive.
    """

    def guide_values() -> dict[str, Any]:
        guide = handlers.substitute(handlers.seed(problem.guide, 0), data=params)
        tr = handlers.trace(guide).get_trace(*args, **kwargs)
        return {
            n: m["value"] for n, m in tr.items() if m["type"] == "sample" and not m["is_observed"]
        }

    def log_probs(**latents: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        def tagged(msg: Any) -> Any:
            if msg["type"] == "sample" and not msg["is_observed"] and msg["name"] in latents:
                return 0 * msg["fn"](*msg["args"], **msg["kwargs"]) + latents[msg["name"]]
            return None

        guide = handlers.substitute(
            handlers.substitute(handlers.seed(problem.guide, 0), data=params),
            substitute_fn=tagged,
        )
        guide_tr = handlers.trace(guide).get_trace(*args, **kwargs)
        model = handlers.substitute(handlers.seed(problem.model, 0), data=params)
        model_tr = handlers.trace(handlers.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
        out: list[dict[str, Any]] = []
        for tr in (model_tr, guide_tr):
            out.append(
                {n: m["fn"].log_prob(m["value"]) for n, m in tr.items() if m["type"] == "sample"}
            )
        return out[0], out[1]

    try:
        from numpyro.ops.provenance import eval_provenance

        model_deps, guide_deps = eval_provenance(log_probs, **jax.eval_shape(guide_values))
    except Exception:
        # Some primitives have no provenance rule; the caller falls back to site order.
        return None
    return dict(model_deps), dict(guide_deps)


def _stopped_guide_log_probs(
    problem: SVIProblem,
    params: dict[str, Any],
    key: jax.Array,
    guide_tr: Any,
    args: Any,
    kwargs: Any,
) -> dict[str, Any]:
    """Each guide site's log-density at its traced (attached) value, parameters stopped.

    The guide runs again, replayed against its own trace: later sites still see earlier values
    with their gradients, only the parameters are cut (sticking the landing).
    """
    stopped = jax.tree.map(jax.lax.stop_gradient, params)
    guide = handlers.substitute(handlers.seed(problem.guide, key), data=stopped)
    tr = handlers.trace(handlers.replay(guide, trace=guide_tr)).get_trace(*args, **kwargs)
    out = {}
    for name, msg in tr.items():
        if msg["type"] == "sample" and not msg["is_observed"]:
            lp = msg["fn"].log_prob(msg["value"])
            out[name] = lp if msg.get("scale") is None else msg["scale"] * lp
    return out


def _entry_grads(fn: Callable[..., Any], combine: Callable[[Any], Any]) -> Callable[..., Any]:
    """Like ``jax.value_and_grad(fn, has_aux=True)`` for an ``fn`` whose first output is a
    ``(k, particles)`` matrix: each parameter's gradient is ``combine`` of the gradients of all
    entries, shaped ``(k, particles, *param_shape)``."""

    def wrapped(u: Any, *rest: Any) -> tuple[Any, Any]:
        def split(v: Any) -> tuple[Any, Any]:
            rows, aux = fn(v, *rest)
            return rows, (rows, aux)

        jac, (rows, aux) = jax.jacrev(split, has_aux=True)(u)
        return (rows, aux), jax.tree.map(combine, jac)

    return wrapped


def _sites(arrays: dict[str, tuple[Any, Any]], meta: dict[str, SiteMeta]) -> dict[str, Site]:
    # In execution order (``meta``'s), not the sorted order that JAX gives pytree dicts: score
    # estimators read the order as the dependency structure.
    return {
        name: Site(
            name=name,
            value=arrays[name][0],
            log_prob=arrays[name][1],
            fn=meta[name].fn,
            observed=meta[name].observed,
            reparameterized=meta[name].reparameterized,
            plates=meta[name].plates,
            auxiliary=meta[name].auxiliary,
        )
        for name in meta
        if name in arrays
    }


def _strongly_typed(tree: Any) -> Any:
    """``tree`` with every array's weak type made strong, so that jitted calls see one signature."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), tree)


def _flatten(params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Name every leaf: a network's parameter tree becomes ``net$params.Dense_0.kernel``."""
    flat: dict[str, np.ndarray] = {}
    for name, value in params.items():
        leaves = jax.tree_util.tree_flatten_with_path(value)[0]
        for path, leaf in leaves:
            suffix = ".".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
            flat[f"{name}.{suffix}" if suffix else name] = np.asarray(leaf)
    return flat


def _optimizer(loop: LoopConfig) -> optax.GradientTransformation:
    cfg = loop.optim
    lr: Any = cfg.lr
    if cfg.lr_decay < 1.0 and cfg.staircase > 0:
        lr = optax.exponential_decay(
            cfg.lr,
            transition_steps=max(1, loop.steps // cfg.staircase),
            decay_rate=cfg.lr_decay ** (1.0 / cfg.staircase),
            staircase=True,
        )
    elif cfg.lr_decay < 1.0:
        lr = optax.exponential_decay(cfg.lr, transition_steps=loop.steps, decay_rate=cfg.lr_decay)
    if cfg.name == "adam":
        tx = optax.adam(lr, b1=cfg.beta1)
    else:
        tx = optax.sgd(lr, momentum=cfg.momentum if cfg.name == "momentum" else None)
    if cfg.clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx


def _leaves(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{prefix}{jax.tree_util.keystr(path)}": np.asarray(leaf) for path, leaf in leaves}


def _checkpoint(
    step: int, carry: Any, losses: np.ndarray, skipped: int, loop: LoopConfig
) -> Checkpoint:
    """Parameters, optimizer state and the estimator's state (a moving-average baseline) as
    named arrays; the RNG is the seed and the step."""
    arrays = {**_leaves(carry[0], "param"), **_leaves(carry[1], "optim")}
    arrays.update(_leaves(carry[2:], "objective"))
    return Checkpoint(step, arrays, {"seed": loop.seed}, losses[:step].copy(), skipped)


def _restore(ckpt: Checkpoint, fresh: Any, loop: LoopConfig) -> Any:
    expected = {**_leaves(fresh[0], "param"), **_leaves(fresh[1], "optim")}
    expected.update(_leaves(fresh[2:], "objective"))
    base.check_resume(ckpt, expected, "this fit")
    if ckpt.meta.get("seed") != loop.seed:
        raise RunDirError(
            f"The checkpoint was written with seed {ckpt.meta.get('seed')}, not {loop.seed}; "
            "resume with the seed that wrote it."
        )
    if not 0 < ckpt.step <= loop.steps:
        raise RunDirError(
            f"The checkpoint is at step {ckpt.step}, outside this run's 1..{loop.steps}; resume "
            "with the same number of steps that wrote it."
        )
    paths, treedef = jax.tree_util.tree_flatten_with_path(fresh)
    names = [
        ("param", "optim")[i] + jax.tree_util.keystr(path[1:])
        if i < 2
        else "objective" + jax.tree_util.keystr((jax.tree_util.SequenceKey(i - 2), *path[1:]))
        for (path, _) in paths
        for i in [path[0].idx]
    ]
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(ckpt.arrays[n]) for n in names])
