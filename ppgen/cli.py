"""The ``ppgen`` command line: parses arguments, calls :mod:`ppgen.api`, prints.

Errors that ppgen raises on purpose print one line and exit with status 2 (a traceback only with
``--debug``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(fn: F) -> F:
    """Turn ppgen errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ppgen.errors import PPGenError, TrainingInterrupted

        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except TrainingInterrupted as err:
            click.echo(f"interrupted: {err}", err=True)
            sys.exit(130)
        except PPGenError as err:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {err}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="ppgen")
def cli(debug: bool) -> None:
    """ppgen: deep generative models on Pyro and NumPyro, several inference methods, honest
    comparisons."""


@cli.command("list")
@_friendly
def list_cmd() -> None:
    """List models, inference methods, backends and devices."""
    from ppgen.backends import BACKEND_NAMES, get_backend
    from ppgen.modeling.registry import list_methods, list_models

    click.echo("models:")
    for name, entry in list_models().items():
        model = entry.value
        backends = ",".join(model.backends)
        guides = ",".join(model.guides) or f"auto_{model.auto}"
        click.echo(
            f"  {name:<16} {model.description}  [backends: {backends}; guides: {guides}; "
            f"from {entry.source}]"
        )
    click.echo("methods:")
    for name, entry in list_methods().items():
        click.echo(f"  {name:<16} {entry.value.description}  [from {entry.source}]")
    click.echo("backends and devices:")
    for name in BACKEND_NAMES:
        try:
            devices = ", ".join(get_backend(name).devices())
        except Exception as err:
            devices = f"unavailable ({type(err).__name__}: {err})"
        click.echo(f"  {name:<16} {devices}")


@cli.command("fit")
@click.argument("name", required=False)
@click.option("--method", default="reparam", show_default=True, help="Inference method.")
@click.option(
    "--backend", default="numpyro", show_default=True, help="numpyro (JAX) or pyro (PyTorch)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--steps", default=2000, show_default=True, type=int, help="Optimization steps.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--lr", default=None, type=float, help="Learning rate (method default if unset).")
@click.option("--particles", default=1, show_default=True, type=int, help="Particles per step.")
@click.option("--guide", default=None, help="Guide name, or auto / auto_normal / auto_mvn.")
@click.option("--threads", default=None, type=int, help="torch threads (Pyro backend).")
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="Run directory (default: runs/NAME-METHOD-BACKEND).",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Method option, e.g. -o num_samples=2000 (repeatable).",
)
@click.option(
    "--checkpoint-every",
    default=0,
    show_default=True,
    type=int,
    help="Checkpoint every N steps into the run directory (0: never).",
)
@click.option(
    "--resume",
    default=None,
    type=click.Path(path_type=Path),
    help="Continue the run in this directory from its last checkpoint.",
)
@click.option(
    "--on-nonfinite",
    default="stop",
    show_default=True,
    type=click.Choice(["stop", "skip"]),
    help="On a NaN/inf loss or gradient: stop with an error, or skip the update.",
)
@click.option("--dry-run", is_flag=True, help="Check the arguments and exit without fitting.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def fit_cmd(
    name: str | None,
    method: str,
    backend: str,
    device: str,
    steps: int,
    seed: int,
    lr: float | None,
    particles: int,
    guide: str | None,
    threads: int | None,
    out: Path | None,
    options: tuple[str, ...],
    checkpoint_every: int,
    resume: Path | None,
    on_nonfinite: str,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Fit model NAME and write a run directory (or continue one with --resume DIR)."""
    from ppgen import api
    from ppgen.errors import ConfigError

    parsed = _parse_options(options)
    if resume is not None:
        if dry_run:
            api.resolve_run(resume, name)
            click.echo(f"ok: {resume} can be resumed")
            return
        result = api.fit(name, resume=resume, progress=not quiet)
        _report(result, resume)
        return
    if name is None:
        raise ConfigError("ppgen fit needs a model NAME (see `ppgen list`), or --resume RUN_DIR.")
    if dry_run:
        m, meth, problem, guide_name = api.resolve(
            name, method=method, backend=backend, device=device, guide=guide
        )
        api.check_fit_options(meth, parsed, steps, lr, particles, seed, threads)
        click.echo(
            f"ok: would fit {m.name!r} with {meth.name} on {backend} ({problem.device}), "
            f"guide {guide_name}, {steps} steps"
        )
        return
    out = out or Path("runs") / f"{name}-{method}-{backend}"
    result = api.fit(
        name,
        method=method,
        backend=backend,
        device=device,
        steps=steps,
        seed=seed,
        lr=lr,
        particles=particles,
        guide=guide,
        threads=threads,
        progress=not quiet,
        out=out,
        checkpoint_every=checkpoint_every,
        on_nonfinite=on_nonfinite,
        **parsed,
    )
    _report(result, out)


def _report(result: Any, out: Path) -> None:
    from ppgen.runs import summarize

    click.echo(f"{result!r}")
    if "elbo" in result.extras:
        click.echo(f"ELBO estimate (last 10% of steps): {result.extras['elbo']:.4f}")
    if result.skipped_steps:
        click.echo(f"skipped {result.skipped_steps} steps with a non-finite loss or gradient")
    click.echo(f"run directory: {out}")
    quality = Path(out) / "quality.json"
    if quality.is_file():
        import json

        click.echo("sample quality (quality.json):")
        for key, value in json.loads(quality.read_text()).items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            click.echo(f"  {key:<34}{shown}")
    rows = summarize(result.posterior_samples(num_samples=1000, seed=0))
    click.echo(f"{'parameter':<20}{'mean':>10}{'sd':>10}{'5%':>10}{'95%':>10}")
    for row in rows:
        click.echo(
            f"{row['parameter']:<20}{row['mean']:>10.4f}{row['sd']:>10.4f}"
            f"{row['q5']:>10.4f}{row['q95']:>10.4f}"
        )


@cli.command("compare")
@click.argument("name")
@click.option(
    "--methods",
    default=None,
    help="Comma-separated methods, METHOD or METHOD:GUIDE (default: reparam,score,nuts, those "
    "registered).",
)
@click.option(
    "--backend", default="numpyro", show_default=True, help="numpyro (JAX) or pyro (PyTorch)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--reference", default="auto", show_default=True, help="exact, nuts, a method, or auto."
)
@click.option("--steps", default=2000, show_default=True, type=int, help="Steps per VI fit.")
@click.option("--lr", default=None, type=float, help="Learning rate (method default if unset).")
@click.option("--particles", default=1, show_default=True, type=int, help="Particles per step.")
@click.option(
    "--num-samples", default=4000, show_default=True, type=int, help="Guide draws per VI fit."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="Output directory (default: runs/NAME-compare).",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="METHOD.KEY=VALUE",
    help="Method option, e.g. -o nuts.num_samples=2000 (repeatable).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly
def compare_cmd(
    name: str,
    methods: str | None,
    backend: str,
    device: str,
    reference: str,
    steps: int,
    lr: float | None,
    particles: int,
    num_samples: int,
    seed: int,
    out: Path | None,
    options: tuple[str, ...],
    quiet: bool,
) -> None:
    """Fit model NAME with several methods; write report.md, forest.png and posterior_*.nc."""
    from ppgen import api
    from ppgen.errors import ConfigError

    per_method: dict[str, dict[str, Any]] = {}
    for key, value in _parse_options(options).items():
        method, dot, option = key.partition(".")
        if not dot or not method or not option:
            raise ConfigError(
                f"Option {key!r} names no method; write METHOD.KEY=VALUE, e.g. "
                "-o nuts.num_samples=2000."
            )
        per_method.setdefault(method, {})[option] = value
    out = out or Path("runs") / f"{name}-compare"
    comparison = api.compare(
        name,
        methods=[m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        backend=backend,
        device=device,
        reference=reference,
        steps=steps,
        lr=lr,
        particles=particles,
        num_samples=num_samples,
        seed=seed,
        progress=not quiet,
        options=per_method,
        out=out,
    )
    click.echo(comparison.to_markdown())
    click.echo(f"written to {out}: report.md, forest.png, posterior_<method>.nc")


@cli.command("gradvar")
@click.argument("name")
@click.option(
    "--estimators",
    default=None,
    help="Comma-separated estimators, e.g. reparam,reparam+stl,score,score+rb+loo "
    "(default: all that apply).",
)
@click.option(
    "--particles", default="1,10,100", show_default=True, help="Comma-separated particle counts."
)
@click.option(
    "--repeats", default=1000, show_default=True, type=int, help="Estimates per estimator."
)
@click.option(
    "--backend", default="numpyro", show_default=True, help="numpyro (JAX) or pyro (PyTorch)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--at", "at", default="init", show_default=True, help="init (guide's initial values) or fit."
)
@click.option("--guide", default=None, help="Guide name, or auto / auto_normal / auto_mvn.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--threads", default=None, type=int, help="torch threads (Pyro backend).")
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="Output directory (default: runs/NAME-gradvar).",
)
@_friendly
def gradvar_cmd(
    name: str,
    estimators: str | None,
    particles: str,
    repeats: int,
    backend: str,
    device: str,
    at: str,
    guide: str | None,
    seed: int,
    threads: int | None,
    out: Path | None,
) -> None:
    """Gradient variance of several estimators for model NAME; write gradvar.csv and .png."""
    from ppgen import api
    from ppgen.errors import ConfigError

    try:
        counts = [int(p) for p in particles.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(
            f"--particles must be comma-separated integers, got {particles!r}; e.g. 1,10,100."
        ) from None
    out = out or Path("runs") / f"{name}-gradvar"
    report = api.gradvar(
        name,
        estimators=[e.strip() for e in estimators.split(",") if e.strip()] if estimators else None,
        particles=counts,
        repeats=repeats,
        backend=backend,
        device=device,
        at=at,
        guide=guide,
        seed=seed,
        threads=threads,
        out=out,
    )
    totals = report.totals()
    click.echo(f"{report!r}; reference gradient: {report.reference_kind}")
    click.echo(
        f"{'estimator':<22}{'particles':>10}{'variance':>14}{'snr':>10}{'|bias|':>12}"
        f"{'ms/estimate':>13}"
    )
    for row in totals.itertuples():
        click.echo(
            f"{row.estimator:<22}{row.particles:>10}{row.variance:>14.4g}{row.snr:>10.3g}"
            f"{row.bias:>12.4g}{row.seconds_per_estimate * 1e3:>13.4f}"
        )
    for est, count, why in report.skipped:
        click.echo(f"skipped {est} at {count} particles: {why}")
    click.echo(f"written to {out}: gradvar.csv, gradvar.png")


@cli.command("sample")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-n", "num", default=64, show_default=True, type=int, help="Number of samples.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="A .png (image grid or histogram) or .npy file (default: RUN_DIR/samples_new.png).",
)
@_friendly
def sample_cmd(run_dir: Path, num: int, seed: int, device: str, out: Path | None) -> None:
    """Draw new samples from the model fitted in RUN_DIR."""
    import numpy as np

    from ppgen import api
    from ppgen.diagnostics.images import png_bytes, samples_figure
    from ppgen.errors import ConfigError
    from ppgen.runs import atomic_path

    out = out or run_dir / "samples_new.png"
    if out.suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"--out {out} must end in .png or .npy.")
    samples = api.sample(run_dir, n=num, seed=seed, device=device)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, samples)
        else:
            tmp.write_bytes(png_bytes(samples_figure(samples, f"{num} samples, seed {seed}")))
    click.echo(f"{num} samples of shape {samples.shape[1:]} written to {out}")


def _parse_options(options: tuple[str, ...]) -> dict[str, Any]:
    import json

    from ppgen.errors import ConfigError

    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Option {item!r} is not KEY=VALUE; write e.g. -o num_samples=2000.")
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def main() -> None:
    """Entry point of the ``ppgen`` script."""
    cli(prog_name="ppgen")


if __name__ == "__main__":
    main()
