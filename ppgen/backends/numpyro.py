"""The NumPyro (JAX) backend: a jitted step, run in chunks inside ``lax.scan``.

One chunk of ``LoopConfig.chunk_size`` steps is one compiled call; the progress bar advances
between chunks and nothing retraces after the first one (a short last chunk is padded with
masked steps instead of being compiled again).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer.autoguide as autoguide
import optax
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

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
        self, problem: SVIProblem, args: Any, kwargs: Any, particles: int
    ) -> Callable[[dict[str, Any], jax.Array], TracePair]:
        """A pure function ``(constrained params, key) -> TracePair`` over vectorized particles."""
        meta: dict[str, dict[str, SiteMeta]] = {}

        def one(params: dict[str, Any], key: jax.Array) -> dict[str, dict[str, tuple[Any, Any]]]:
            k1, k2 = jax.random.split(key)
            guide = handlers.substitute(handlers.seed(problem.guide, k1), data=params)
            model = handlers.substitute(handlers.seed(problem.model, k2), data=params)
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
            return out

        def traced(params: dict[str, Any], key: jax.Array) -> TracePair:
            if particles == 1:
                out = jax.tree.map(lambda x: x[None], one(params, key))
            else:
                keys = jax.random.split(key, particles)
                out = jax.vmap(one, in_axes=(None, 0))(params, keys)
            return TracePair(
                model=_sites(out["model"], meta["model"]),
                guide=_sites(out["guide"], meta["guide"]),
                particles=particles,
            )

        return traced

    # -- training ----------------------------------------------------------------------------
    def run_svi(
        self,
        problem: SVIProblem,
        objective: Objective,
        loop: LoopConfig,
        validate: Callable[[TracePair], None] | None = None,
    ) -> SVIOutcome:
        device = self._device(problem.device)
        with use_backend("numpyro", problem.device), jax.default_device(device):
            args, kwargs = self._args(problem)
            init_key, train_key = jax.random.split(jax.random.PRNGKey(loop.seed))
            uparams, transforms = self.init_params(problem, args, kwargs, init_key)
            traced = self.trace_fn(problem, args, kwargs, loop.particles)
            if validate is not None:
                validate(traced(self.constrain(uparams, transforms), init_key))
            tx = _optimizer(loop)
            opt_state = tx.init(uparams)

            def loss_fn(u: dict[str, Any], key: jax.Array) -> tuple[Any, Any]:
                surrogate, loss = objective(self, traced(self.constrain(u, transforms), key))
                return surrogate, loss

            chunk = loop.chunk_size
            padded = loop.steps % chunk != 0

            def body(carry: Any, step: jax.Array) -> tuple[Any, Any]:
                params, state = carry
                key = jax.random.fold_in(train_key, step)
                (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key)
                updates, new_state = tx.update(grads, state, params)
                new_params = optax.apply_updates(params, updates)
                if padded:
                    # Steps past the end leave everything as it was.
                    active = step < loop.steps
                    new_params, new_state = jax.tree.map(
                        lambda n, o: jnp.where(active, n, o), (new_params, new_state), carry
                    )
                return (new_params, new_state), loss

            @jax.jit
            def run_chunk(carry: Any, start: jax.Array) -> tuple[Any, Any]:
                return jax.lax.scan(body, carry, start + jnp.arange(chunk))

            losses = np.empty(loop.steps, dtype=np.float64)
            timer = base.Timer()
            bar = base.ProgressBar(loop.steps, loop.description, loop.progress)
            carry = (uparams, opt_state)
            try:
                for start, stop in base.chunks(loop.steps, chunk):
                    new_carry, chunk_losses = run_chunk(carry, jnp.asarray(start))
                    values = np.asarray(chunk_losses)[: stop - start]
                    # The parameters of the last good chunk are kept on a non-finite loss.
                    base.raise_nonfinite(values, start)
                    carry = new_carry
                    losses[start:stop] = values
                    timer.mark_first(stop)
                    bar.update(stop - start, float(values[-1]))
            finally:
                bar.close()
            params = self.constrain(carry[0], transforms)
            jax.block_until_ready(params)
        return SVIOutcome(
            losses=losses,
            params=_flatten(params),
            state=NumPyroState(params),
            timings=timer.result(loop.steps),
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
            mcmc.run(jax.random.PRNGKey(seed), *args, extra_fields=("diverging",), **kwargs)
            samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
            stats = {
                k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()
            }
        timer.mark_first(1)
        return NUTSOutcome(samples, stats, timer.result(1))


def _sites(arrays: dict[str, tuple[Any, Any]], meta: dict[str, SiteMeta]) -> dict[str, Site]:
    return {
        name: Site(
            name=name,
            value=value,
            log_prob=lp,
            fn=meta[name].fn,
            observed=meta[name].observed,
            reparameterized=meta[name].reparameterized,
            plates=meta[name].plates,
            auxiliary=meta[name].auxiliary,
        )
        for name, (value, lp) in arrays.items()
    }


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
    if cfg.lr_decay < 1.0:
        lr = optax.exponential_decay(cfg.lr, transition_steps=loop.steps, decay_rate=cfg.lr_decay)
    if cfg.name == "adam":
        tx = optax.adam(lr)
    else:
        tx = optax.sgd(lr, momentum=cfg.momentum if cfg.name == "momentum" else None)
    if cfg.clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx
