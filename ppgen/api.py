"""The user-facing functions: glue between the registry, the data, the backends and the methods.

No numerics live here: this module validates and resolves what the user asked for (so that bad
input fails before any long work starts) and hands a :class:`~ppgen.inference.base.FitRequest`
to the method.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.backends import BACKEND_NAMES, get_backend
from ppgen.backends.base import SVIProblem
from ppgen.errors import ConfigError, ModelError, RunDirError, suggest
from ppgen.inference.base import FitRequest, FitResult, Method, make_config
from ppgen.modeling.model import Guide, Model
from ppgen.modeling.registry import get_method, get_model

if TYPE_CHECKING:
    from ppgen.diagnostics.compare import Comparison
    from ppgen.inference.gradvar import GradVarReport

__all__ = [
    "check_fit_options",
    "compare",
    "fit",
    "gradvar",
    "resolve",
    "resolve_run",
    "sample",
]


def _check_options(
    steps: int, lr: float | None, particles: int, seed: int, threads: int | None
) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}; try steps=2000.")
    if lr is not None and (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or not lr > 0
        or not math.isfinite(lr)
    ):
        raise ConfigError(f"lr must be a positive number, got {lr!r}; try lr=0.01.")
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ConfigError(f"particles must be a positive integer, got {particles!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer, got {threads!r}.")


def check_fit_options(
    meth: Method,
    options: dict[str, Any],
    steps: int,
    lr: float | None,
    particles: int,
    seed: int,
    threads: int | None,
) -> Any:
    """Check the generic fit options and build the method's config from ``options``."""
    _check_options(steps, lr, particles, seed, threads)
    return make_config(meth.config_type, options, meth.name)


def resolve_run(run_dir: Path, model: str | Model | None = None) -> tuple[dict[str, Any], Any]:
    """Read a run directory to resume: its config and last checkpoint, checked (never unpickled).

    Raises :class:`~ppgen.errors.RunDirError` if the directory was written by another model.
    """
    from ppgen import runs

    config = runs.read_config(Path(run_dir))
    if model is not None and get_model(model).name != config["model"]:
        raise RunDirError(
            f"Run directory {run_dir} was written by model {config['model']!r}, not "
            f"{get_model(model).name!r}; resume it with that model or pick another directory."
        )
    return config, runs.load_checkpoint(Path(run_dir))


def resolve(
    model: str | Model,
    data: Any = None,
    *,
    method: str = "reparam",
    backend: str = "numpyro",
    device: str = "auto",
    guide: str | None = None,
) -> tuple[Model, Method, SVIProblem, str]:
    """Look up the model and method, check the backend and device, bind the data, pick the guide.

    Returns ``(model, method, problem, guide_name)``; raises a ppgen error on any bad input.
    """
    m = get_model(model)
    meth: Method = get_method(method)
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"Unknown backend {backend!r}; {suggest(backend, BACKEND_NAMES)}.")
    m.check_backend(backend)
    be = get_backend(backend)
    dev = be.resolve_device(device)
    bound = m.bind(data)
    chosen = m.resolve_guide(guide)
    if isinstance(chosen, Guide) and chosen.implicit and not meth.implicit_guides:
        raise ModelError(
            f"Guide {chosen.name!r} of model {m.name!r} is implicit (it has no density), so "
            f"method {meth.name!r} cannot use it; use method='avb' or pass another guide."
        )
    if isinstance(chosen, Guide):
        guide_fn, guide_name = chosen.fn, chosen.name
    else:
        guide_fn, guide_name = be.auto_guide(m.fn, chosen), f"auto_{chosen}"
    problem = SVIProblem(model=m.fn, guide=guide_fn, data=bound, device=dev, name=m.name)
    return m, meth, problem, guide_name


def fit(
    model: str | Model | None = None,
    data: Any = None,
    *,
    method: str = "reparam",
    backend: str = "numpyro",
    device: str = "auto",
    steps: int = 2000,
    lr: float | None = None,
    particles: int = 1,
    seed: int = 0,
    progress: bool = True,
    guide: str | None = None,
    threads: int | None = None,
    out: str | Path | None = None,
    checkpoint_every: int = 0,
    on_nonfinite: str = "stop",
    resume: str | Path | None = None,
    **options: Any,
) -> FitResult:
    """Fit ``model`` to ``data`` with an inference method on a backend.

    Parameters
    ----------
    model
        A :class:`~ppgen.modeling.model.Model` or a registered name (``"coin"``). May be omitted
        when resuming: the run directory names it.
    data
        The model's arguments: one array (one-argument model), a tuple, or a dict of keyword
        arguments, as numpy arrays or Python numbers. ``None`` uses the model's default data.
    method
        A registered method: ``"reparam"`` (pathwise SVI), ``"nuts"``, and any plugin's.
    backend
        ``"numpyro"`` (JAX) or ``"pyro"`` (PyTorch).
    device
        ``"auto"`` (a GPU if there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    steps, lr, particles, seed
        Optimization steps, learning rate (method default if ``None``), Monte Carlo particles per
        step (vectorized), random seed. The same seed gives the same result.
    progress
        Show a progress bar.
    guide
        Name of an attached guide, ``"auto"`` / ``"auto_normal"`` / ``"auto_mvn"`` for an
        automatic guide, or ``None`` for the model's default.
    threads
        Number of torch threads (Pyro backend); ``None`` leaves torch's setting alone.
    out
        If given, write a run directory there (config, metrics, parameters, posterior, plots).
    checkpoint_every
        With ``out``, write a checkpoint (parameters, optimizer and RNG state, losses) every
        this many steps; Ctrl-C then checkpoints and stops cleanly. 0 disables checkpoints.
    on_nonfinite
        ``"stop"`` (raise :class:`~ppgen.errors.NonFiniteError` naming the step and site,
        keeping the last good checkpoint) or ``"skip"`` (skip such updates and count them in
        ``FitResult.skipped_steps``).
    resume
        A run directory to continue from its last checkpoint, with the settings it was started
        with (read from its ``config.json``); the result equals an uninterrupted run's.
    **options
        Method options (``ReparamConfig``, ``NUTSConfig`` fields such as ``num_samples``).

    Returns
    -------
    FitResult

    Raises
    ------
    ppgen.errors.PPGenError
        On bad input (before any work starts), on a non-finite loss, or when interrupted
        (:class:`~ppgen.errors.TrainingInterrupted`, after writing a checkpoint).

    Examples
    --------
    >>> import ppgen
    >>> result = ppgen.fit("coin", steps=200, progress=False)  # doctest: +SKIP
    >>> result.posterior_samples(1000)["p"].mean()  # doctest: +SKIP
    """
    from ppgen import runs

    checkpoint = None
    if resume is not None:
        config, checkpoint = resolve_run(Path(resume), model)
        settings = config["fit"]
        model = model if model is not None else config["model"]
        method, backend, device = settings["method"], settings["backend"], settings["device"]
        steps, lr = settings["steps"], settings["lr"]
        particles, seed = settings["particles"], settings["seed"]
        guide, checkpoint_every = settings["guide"], settings["checkpoint_every"]
        on_nonfinite, options, out = settings["on_nonfinite"], settings["options"], Path(resume)
    if model is None:
        raise ConfigError("fit needs a model (a registered name or a Model), or resume=RUN_DIR.")
    if checkpoint_every and out is None:
        raise ConfigError(
            f"checkpoint_every={checkpoint_every} needs a run directory; pass out=DIR "
            "(--out DIR) to say where checkpoints go."
        )
    if (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int)
        or (checkpoint_every < 0)
    ):
        raise ConfigError(
            f"checkpoint_every must be a non-negative integer, got {checkpoint_every!r}."
        )
    if on_nonfinite not in ("stop", "skip"):
        raise ConfigError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}.")
    meth = get_method(method)
    config_obj = check_fit_options(meth, options, steps, lr, particles, seed, threads)
    m, meth, problem, guide_name = resolve(
        model, data, method=method, backend=backend, device=device, guide=guide
    )
    if not meth.resumable and (checkpoint_every or resume is not None):
        raise ConfigError(
            f"Method {meth.name!r} cannot checkpoint or resume (reparam and score can); drop "
            "checkpoint_every / resume."
        )
    data_print = _fingerprint(problem)
    if resume is not None and config.get("data_fingerprint") != data_print:
        raise RunDirError(
            f"The data differ from those run directory {resume} was fitted to; pass the same "
            "data (or none, for the model's default data) to resume it."
        )
    if out is not None and resume is None:
        out_path = Path(out)
        if (out_path / runs.CHECKPOINT).exists():
            raise RunDirError(
                f"{out_path} already holds a checkpoint; resume it with resume={str(out_path)!r} "
                "(--resume), or choose another output directory."
            )
        runs.write_config(
            out_path,
            {
                "model": m.name,
                "fit": {
                    "method": meth.name,
                    "backend": backend,
                    "device": device,
                    "steps": steps,
                    "lr": lr,
                    "particles": particles,
                    "seed": seed,
                    "guide": guide,
                    "checkpoint_every": checkpoint_every,
                    "on_nonfinite": on_nonfinite,
                    "options": options,
                },
                "data_fingerprint": data_print,
            },
        )
    if threads is not None and backend == "pyro":
        import torch

        torch.set_num_threads(threads)
    hooks = runs.Checkpointer(Path(out)) if out is not None and checkpoint_every else None
    request = FitRequest(
        model=m,
        problem=problem,
        backend=get_backend(backend),
        guide_name=guide_name,
        steps=steps,
        lr=lr if lr is not None else meth.default_lr,
        particles=particles,
        seed=seed,
        progress=progress,
        checkpoint_every=checkpoint_every,
        on_nonfinite=on_nonfinite,
        hooks=hooks,
        resume=checkpoint,
    )
    if hooks is not None:
        with hooks:
            result = meth.run(request, config_obj)
    else:
        result = meth.run(request, config_obj)
    if out is not None:
        runs.write_run(result, Path(out))
    return result


#: The methods :func:`compare` fits when none are named (those of them that are registered).
DEFAULT_COMPARE_METHODS = ("reparam", "score", "nuts")

#: What :func:`compare` changes from a method's defaults: four NUTS chains, so that R-hat means
#: something, and a 0.9 acceptance target, so that the reference sampler takes the smaller steps
#: hierarchical posteriors need (eight schools diverges now and then at 0.8).
COMPARE_OPTIONS: dict[str, dict[str, Any]] = {"nuts": {"num_chains": 4, "target_accept": 0.9}}

MethodSpec = str | FitResult


def _compare_specs(
    methods: Sequence[MethodSpec] | Mapping[str, MethodSpec] | None,
) -> dict[str, MethodSpec]:
    """Label every method to compare: ``"reparam"``, ``"reparam:auto_mvn"`` (method:guide), or a
    fitted result (labelled by its method, and its guide where two share a method)."""
    from ppgen.modeling.registry import list_methods

    if methods is None:
        registered = list_methods()
        return {name: name for name in DEFAULT_COMPARE_METHODS if name in registered}
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        if isinstance(methods, (str, FitResult)):
            methods = [methods]
        counts: dict[str, int] = {}
        for entry in methods:
            name = entry if isinstance(entry, str) else entry.method
            counts[name] = counts.get(name, 0) + 1
        items = []
        for entry in methods:
            if isinstance(entry, str):
                items.append((entry, entry))
            elif counts[entry.method] > 1:
                items.append((f"{entry.method}:{entry.guide}", entry))
            else:
                items.append((entry.method, entry))
    specs: dict[str, MethodSpec] = {}
    for label, entry in items:
        if not isinstance(entry, (str, FitResult)):
            raise ConfigError(
                f"Method {label!r} is a {type(entry).__name__}; pass a method name such as "
                "'reparam' (or 'reparam:auto_mvn' for a guide) or a FitResult."
            )
        if label in specs:
            raise ConfigError(
                f"Method {label!r} appears twice; give each fit its own label with a dict, "
                "e.g. methods={'mean-field': ..., 'full-rank': ...}."
            )
        specs[label] = entry
    if not specs:
        raise ConfigError("No methods to compare; pass methods=['reparam', 'nuts'] or similar.")
    return specs


def compare(
    model: str | Model,
    data: Any = None,
    *,
    methods: Sequence[MethodSpec] | Mapping[str, MethodSpec] | None = None,
    backend: str = "numpyro",
    device: str = "auto",
    reference: str = "auto",
    steps: int = 2000,
    lr: float | None = None,
    particles: int = 1,
    num_samples: int = 4000,
    seed: int = 0,
    progress: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    out: str | Path | None = None,
) -> Comparison:
    """Fit ``model`` with several methods and compare their posteriors with a reference.

    Parameters
    ----------
    model, data
        As in :func:`fit`.
    methods
        What to compare: method names (``"reparam"``; ``"reparam:auto_mvn"`` picks the guide),
        fitted :class:`~ppgen.inference.base.FitResult` objects, or a dict of either by label.
        ``None`` means ``reparam``, ``score`` and ``nuts``, those of them that are registered.
    backend, device
        Where the named methods run (given results keep theirs).
    reference
        ``"exact"`` (the model's analytic posterior), ``"nuts"`` (a NUTS fit, added if
        ``methods`` has none), the label of any method, or ``"auto"``: exact where the model
        has it, NUTS otherwise.
    steps, lr, particles, seed, progress
        Passed to every fit (NUTS ignores the first three).
    num_samples
        Guide draws per VI fit, for the table and for k-hat.
    options
        Method options by method name or label, e.g. ``{"nuts": {"num_samples": 2000}}``;
        compare runs NUTS with 4 chains and ``target_accept=0.9`` unless told otherwise.
    out
        If given, write ``report.md``, ``forest.png`` and ``posterior_<method>.nc`` there.

    Returns
    -------
    ppgen.diagnostics.compare.Comparison
        ``.to_frame()``, ``.to_markdown()``, ``.plot_forest()``.

    Examples
    --------
    >>> import ppgen
    >>> c = ppgen.compare("eight_schools", methods=["reparam", "nuts"])  # doctest: +SKIP
    >>> print(c.to_markdown())  # doctest: +SKIP
    """
    from ppgen.diagnostics.compare import compare_results, exact_reference
    from ppgen.errors import ModelError

    _check_options(steps, lr, particles, seed, None)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ConfigError(f"num_samples must be an integer of at least 2, got {num_samples!r}.")
    m = get_model(model)
    specs = _compare_specs(methods)
    if reference == "auto":
        reference = "exact" if m.has_exact else "nuts"
    if reference == "exact":
        if not m.has_exact:
            raise ModelError(
                f"Model {m.name!r} has no exact posterior to compare with; use reference='nuts'."
            )
    elif reference == "nuts":
        nuts = [k for k, v in specs.items() if (v if isinstance(v, str) else v.method) == "nuts"]
        if not nuts:
            specs["nuts"] = "nuts"
        reference = nuts[0] if nuts else "nuts"
    elif reference not in specs:
        raise ConfigError(
            f"Unknown reference {reference!r}; use 'exact', 'nuts', 'auto' or one of the "
            f"method labels ({', '.join(specs)})."
        )
    options = dict(options or {})
    method_names = {v.partition(":")[0] for v in specs.values() if isinstance(v, str)}
    unknown = [k for k in options if k not in specs and k not in method_names]
    if unknown:
        raise ConfigError(
            f"Options for {unknown[0]!r} match no method being compared; key them by method "
            f"name or label ({', '.join(specs)})."
        )
    # Check every method, guide and option before the first (possibly long) fit starts.
    plans: dict[str, tuple[str, str | None, dict[str, Any]]] = {}
    for label, spec in specs.items():
        if isinstance(spec, FitResult):
            if spec.model.name != m.name:
                raise ConfigError(
                    f"Result {label!r} is a fit of model {spec.model.name!r}, not {m.name!r}; "
                    "compare fits of one model."
                )
            continue
        name, _, guide = spec.partition(":")
        opts = {**COMPARE_OPTIONS.get(name, {}), **options.get(name, {}), **options.get(label, {})}
        _, meth, _, _ = resolve(
            m, data, method=name, backend=backend, device=device, guide=guide or None
        )
        make_config(meth.config_type, opts, meth.name)
        plans[label] = (name, guide or None, opts)
    results: dict[str, FitResult] = {}
    for label, spec in specs.items():
        if isinstance(spec, FitResult):
            results[label] = spec
            continue
        name, guide_name, opts = plans[label]
        results[label] = fit(
            m,
            data,
            method=name,
            backend=backend,
            device=device,
            steps=steps,
            lr=lr,
            particles=particles,
            seed=seed,
            progress=progress,
            guide=guide_name,
            **opts,
        )
    ref = exact_reference(m.exact_posterior(data), seed=seed) if reference == "exact" else reference
    comparison = compare_results(m.name, results, ref, num_samples=num_samples, seed=seed)
    if out is not None:
        from ppgen import runs

        runs.write_comparison(comparison, Path(out))
    return comparison


def _fingerprint(problem: SVIProblem) -> str:
    """A hash of the bound data, so that a resumed run can check it sees the same data."""
    digest = hashlib.sha256()
    items: list[tuple[Any, Any]] = [
        *enumerate(problem.data.args),
        *sorted(problem.data.kwargs.items()),
    ]
    for key, value in items:
        digest.update(repr(key).encode())
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def gradvar(
    model: str | Model,
    data: Any = None,
    *,
    estimators: Sequence[str] | None = None,
    backend: str = "numpyro",
    device: str = "auto",
    at: str | FitResult | Mapping[str, Any] = "init",
    repeats: int = 1000,
    particles: int | Sequence[int] = (1, 10, 100),
    seed: int = 0,
    guide: str | None = None,
    warmup: int = 100,
    reference_particles: int = 10000,
    threads: int | None = None,
    fit_options: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> GradVarReport:
    """Draw many independent gradient estimates of the negative ELBO, for several estimators
    and particle counts, at the same guide parameters, and summarize their variance.

    Parameters
    ----------
    model, data, backend, device, guide, seed, threads
        As for :func:`fit`.
    estimators
        Estimator names such as ``"reparam"``, ``"reparam+stl"``, ``"score"``, ``"score+rb"``,
        ``"score+rb+baseline"``, ``"score+rb+loo"``, ``"score+rb+cv"`` (see
        :mod:`ppgen.inference.gradvar`); ``None`` takes all of these that apply to the guide.
    at
        ``"init"`` (the guide's initial parameters for ``seed``), ``"fit"`` (after a fit with
        ``fit_options``, ``reparam`` by default, ``score`` with ``loo`` for discrete guides), a
        :class:`FitResult` of this model and backend, or constrained values by parameter name.
    repeats, particles
        Estimates per estimator and particle count; particle counts (one or several).
    warmup
        Steps that settle a moving-average baseline before its estimates are drawn.
    reference_particles
        Particles of the estimated reference gradient, when the model has no exact one.
    out
        If given, write ``gradvar.csv`` (:meth:`GradVarReport.to_frame`) and ``gradvar.png``.

    Returns
    -------
    GradVarReport

    Examples
    --------
    >>> report = ppgen.gradvar("hier_normal", particles=[10], repeats=500)  # doctest: +SKIP
    >>> report.totals()[["estimator", "variance", "snr"]]  # doctest: +SKIP
    """
    from ppgen.inference import gradvar as gv

    config = gv.GradVarConfig(
        estimators=tuple(estimators) if estimators is not None else None,
        particles=gv.particle_list(particles),
        repeats=repeats,
        seed=seed,
        warmup=warmup,
        reference_particles=reference_particles,
    )
    _check_options(1, None, 1, seed, threads)
    if isinstance(at, str) and at not in ("init", "fit"):
        raise ConfigError(
            f"at must be 'init', 'fit', a FitResult or a dict of parameter values, got {at!r}."
        )
    m, _, problem, guide_name = resolve(
        model, data, method="reparam", backend=backend, device=device, guide=guide
    )
    if threads is not None and backend == "pyro":
        import torch

        torch.set_num_threads(threads)
    params: Mapping[str, Any] | None = None
    state = None
    label = "init"
    if isinstance(at, FitResult):
        if at.model.name != m.name or at.backend != backend:
            raise ConfigError(
                f"The FitResult is of model {at.model.name!r} on {at.backend}, not {m.name!r} on "
                f"{backend}; pass a fit of the same model and backend."
            )
        state, label = at.state, f"fit ({at.method})"
    elif at == "fit":
        result = _fit_for_gradvar(m, data, backend, device, guide, seed, dict(fit_options or {}))
        state, label = result.state, f"fit ({result.method})"
    elif not isinstance(at, str):
        params, label = {k: np.asarray(v) for k, v in at.items()}, "given parameters"
    exact = gv.exact_for(m, guide_name, problem.data.args, problem.data.kwargs)
    report = gv.run_gradvar(
        get_backend(backend),
        problem,
        config,
        exact=exact,
        params=params,
        state=state,
        at=label,
        model_name=m.name,
    )
    if out is not None:
        from ppgen import runs

        target = Path(out)
        if target.exists() and not target.is_dir():
            raise RunDirError(f"Output path {target} is a file; pick a directory for --out.")
        frame = report.to_frame()
        runs.atomic_write(target / "gradvar.csv", lambda fh: frame.to_csv(fh, index=False))
        fig = report.plot()
        with runs.atomic_path(target / "gradvar.png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        fig.clear()
    return report


def _fit_for_gradvar(
    m: Model,
    data: Any,
    backend: str,
    device: str,
    guide: str | None,
    seed: int,
    options: dict[str, Any],
) -> FitResult:
    """A fit to evaluate gradients at: ``reparam`` unless told otherwise (``score`` with a
    leave-one-out baseline when the guide cannot be reparameterized)."""
    from ppgen.errors import ModelError

    explicit = "method" in options
    options.setdefault("method", "reparam")
    options.setdefault("steps", 2000)
    options.setdefault("particles", 8)
    options.setdefault("progress", False)
    try:
        return fit(m, data, backend=backend, device=device, guide=guide, seed=seed, **options)
    except ModelError:
        if explicit:
            raise
        options.update(method="score", variance_reduction="loo")
        return fit(m, data, backend=backend, device=device, guide=guide, seed=seed, **options)


def sample(run_dir: str | Path, n: int = 64, seed: int = 0, device: str = "auto") -> np.ndarray:
    """Draw ``n`` new samples from the model fitted in run directory ``run_dir``.

    The model is rebuilt from the run's ``config.json`` (model name, backend, the model's
    arguments) and its parameters from ``params.safetensors`` (which cannot run code), and the
    model's ``generate`` program draws the samples (images for ``vae`` and ``mlp_gan``, values
    for ``gan1d``).

    Returns
    -------
    numpy.ndarray
        Shape ``(n, *sample_shape)``.

    Examples
    --------
    >>> import ppgen
    >>> images = ppgen.api.sample("runs/vae-reparam-numpyro", n=16)  # doctest: +SKIP
    """
    from ppgen import runs
    from ppgen.inference.generate import ModelArguments, generate_problem

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}.")
    path = Path(run_dir)
    config = runs.read_config(path)
    m = get_model(config["model"])
    saved = config.get("model_arguments")
    if saved is None:
        raise RunDirError(
            f"{path} records no model arguments (it was written before ppgen could sample from "
            "runs); fit the model again to sample from it."
        )
    arguments = ModelArguments(
        dict(saved["scalars"]), {k: tuple(v) for k, v in saved["shapes"].items()}
    )
    params = runs.load_params(path)
    backend = config["fit"]["backend"]
    m.check_backend(backend)
    be = get_backend(backend)
    problem = generate_problem(m, arguments, n, be.resolve_device(device))
    state = be.load_state(problem, params)
    return np.asarray(be.run_program(problem, state, seed))
