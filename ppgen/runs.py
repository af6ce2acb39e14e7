"""Run directories: every file written atomically (temporary name, then rename).

A run directory holds ``config.json``, ``metrics.csv``, ``params.safetensors`` (never pickle),
``posterior.nc`` and PNG plots.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ppgen.errors import RunDirError
from ppgen.inference.base import FitResult

__all__ = ["atomic_path", "atomic_write", "summarize", "write_run"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Write a text file atomically with ``write(handle)``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        write(fh)


def _jsonable(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        return asdict(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def summarize(samples: dict[str, np.ndarray], max_entries: int = 6) -> list[dict[str, Any]]:
    """Mean, sd and 5%/95% quantiles of each scalar marginal (first ``max_entries`` per site)."""
    rows = []
    for name, draws in samples.items():
        flat = draws.reshape(draws.shape[0], -1)
        for j in range(min(flat.shape[1], max_entries)):
            col = flat[:, j]
            rows.append(
                {
                    "parameter": name if flat.shape[1] == 1 else f"{name}[{j}]",
                    "mean": float(col.mean()),
                    "sd": float(col.std(ddof=1)) if len(col) > 1 else 0.0,
                    "q5": float(np.quantile(col, 0.05)),
                    "q95": float(np.quantile(col, 0.95)),
                }
            )
    return rows


def write_run(result: FitResult, out: Path, num_samples: int = 1000) -> list[dict[str, Any]]:
    """Write ``result`` into the run directory ``out`` and return the posterior summary rows."""
    from safetensors.numpy import save_file

    from ppgen.diagnostics import arviz as ppaz
    from ppgen.diagnostics.plots import loss_figure, posterior_figure

    if out.exists() and not out.is_dir():
        raise RunDirError(f"Run directory {out} exists and is a file; pick another --out path.")
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model": result.model.name,
        "method": result.method,
        "backend": result.backend,
        "device": result.device,
        "guide": result.guide,
        "options": result.config,
        "timings": result.timings,
    }
    atomic_write(out / "config.json", lambda fh: json.dump(config, fh, indent=2, default=_jsonable))

    def metrics(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow(["step", "loss"])
        w.writerows((i + 1, repr(float(v))) for i, v in enumerate(result.losses))

    atomic_write(out / "metrics.csv", metrics)
    if result.params:
        with atomic_path(out / "params.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in result.params.items()}, str(tmp))
    samples = result.posterior_samples(num_samples=num_samples, seed=0)
    idata = ppaz.from_fit(result, num_samples=num_samples, seed=0)
    with atomic_path(out / "posterior.nc") as tmp:
        ppaz.to_netcdf(idata, tmp)
    title = f"{result.model.name} — {result.method} ({result.backend})"
    figures = {"posterior.png": posterior_figure(samples, title)}
    if result.losses.size:
        figures["loss.png"] = loss_figure(result.losses, title)
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(buf.getvalue())
        fig.clear()
    return summarize(samples)
