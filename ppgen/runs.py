"""Run directories: every file written atomically (temporary name, then rename).

A run directory holds ``config.json``, ``metrics.csv``, ``params.safetensors`` (never pickle),
``posterior.nc`` and PNG plots.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ppgen.backends.base import Checkpoint, LoopHooks
from ppgen.errors import RunDirError
from ppgen.inference.base import FitResult
from ppgen.inference.generate import model_arguments

if TYPE_CHECKING:
    from ppgen.diagnostics.compare import Comparison

__all__ = [
    "Checkpointer",
    "atomic_path",
    "atomic_write",
    "load_checkpoint",
    "load_params",
    "read_config",
    "save_checkpoint",
    "summarize",
    "validate_run_dir",
    "write_comparison",
    "write_config",
    "write_run",
]


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
    import matplotlib.pyplot as plt
    from safetensors.numpy import save_file

    from ppgen.diagnostics import arviz as ppaz
    from ppgen.diagnostics.plots import loss_figure, posterior_figure

    if out.exists() and not out.is_dir():
        raise RunDirError(f"Run directory {out} exists and is a file; pick another --out path.")
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {}
    if (out / CONFIG).is_file():
        config = read_config(out)
    config.setdefault("model", result.model.name)
    config.setdefault(
        "fit", {"method": result.method, "backend": result.backend, "options": result.config}
    )
    config["result"] = {
        "device": result.device,
        "guide": result.guide,
        "timings": result.timings,
        "skipped_steps": result.skipped_steps,
    }
    # Enough to rebuild the model's networks without the data (``ppgen sample``).
    config["model_arguments"] = asdict(model_arguments(result.model, result.problem.data))
    write_config(out, config)
    # Further per-step series (each GAN player's loss) become columns beside the loss.
    extra = {k: v for k, v in result.metrics.items() if len(v) == len(result.losses)}

    def metrics(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow(["step", "loss", *extra])
        columns = [result.losses, *extra.values()]
        w.writerows(
            (i + 1, *(repr(float(c[i])) for c in columns)) for i in range(len(result.losses))
        )

    atomic_write(out / "metrics.csv", metrics)
    if result.params:
        with atomic_path(out / "params.safetensors") as tmp:
            save_file({k: np.array(v, order="C") for k, v in result.params.items()}, str(tmp))
    samples = result.posterior_samples(num_samples=num_samples, seed=0)
    with warnings.catch_warnings():
        # Deep models' pointwise log-likelihoods are left out of posterior.nc on purpose (they
        # would be gigabytes); the warning that says so is for interactive to_arviz() calls.
        warnings.simplefilter("ignore", UserWarning)
        idata = ppaz.from_fit(result, num_samples=num_samples, seed=0)
    with atomic_path(out / "posterior.nc") as tmp:
        ppaz.to_netcdf(idata, tmp)
    title = f"{result.model.name} — {result.method} ({result.backend})"
    figures = {"posterior.png": posterior_figure(samples, title)}
    if result.losses.size:
        figures["loss.png"] = loss_figure(result.losses, title)
    # Model-specific plots (e.g. avb_toy's latent space): ``extras["figures"][name](result)``.
    for fig_name, make in result.model.extras.get("figures", {}).items():
        figures[fig_name] = make(result)
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(buf.getvalue())
        plt.close(fig)
    _write_artifacts(result, out)
    return summarize(samples)


def _write_artifacts(result: FitResult, out: Path) -> None:
    """Sample grids, both players' losses, quality.json (:mod:`ppgen.diagnostics.reports`)."""
    from ppgen.diagnostics.reports import artifacts

    for name, item in artifacts(result).items():
        if isinstance(item, bytes):
            with atomic_path(out / name) as tmp:
                tmp.write_bytes(item)
        else:
            atomic_write(out / name, functools.partial(_dump_json, item))


def _dump_json(item: Any, fh: IO[str]) -> None:
    json.dump(item, fh, indent=2, default=_jsonable)


def load_params(path: Path) -> dict[str, np.ndarray]:
    """A run directory's fitted parameters (safetensors: loading runs no code)."""
    from safetensors.numpy import load_file

    validate_run_dir(path)
    file = path / "params.safetensors"
    if not file.is_file():
        raise RunDirError(f"{path} has no params.safetensors; the run did not finish fitting.")
    return dict(load_file(str(file)))


# -- checkpoints, resume and safe loading ----------------------------------------------------------

CHECKPOINT = "checkpoint.safetensors"
CONFIG = "config.json"
_FORMAT = 1
#: Files a run directory may hold, by extension, with the bytes each kind must start with.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".json": (b"{", b"[", b" ", b"\n"),
    ".csv": (b"",),
    ".png": (b"\x89PNG",),
    ".nc": (b"\x89HDF", b"CDF"),
    ".npz": (b"PK",),
    ".md": (b"",),
}
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".p", ".bin"}


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO (0x80) and a protocol number; torch.save zips are PK.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def validate_run_dir(path: Path) -> None:
    """Refuse a run directory holding a pickle, or a file whose contents don't match its
    extension. Nothing in the directory is unpickled or executed while checking."""
    if not path.is_dir():
        raise RunDirError(f"Run directory {path} does not exist; check the path given to --resume.")
    for file in sorted(path.rglob("*")):
        if not file.is_file():
            continue
        with open(file, "rb") as fh:
            head = fh.read(16)
        suffix = file.suffix.lower()
        if suffix in _PICKLE_SUFFIXES or _looks_like_pickle(head):
            raise RunDirError(
                f"{file} is a pickle, which can run arbitrary code when loaded, so ppgen refuses "
                "this run directory; delete the file if the rest of the directory is yours."
            )
        if suffix == ".safetensors":
            _safetensors_header(file)
        elif suffix in _MAGIC and head and not head.startswith(_MAGIC[suffix]):
            raise RunDirError(
                f"{file} does not contain what its extension {suffix} says; ppgen refuses this "
                "run directory rather than guess, so remove or replace that file."
            )


def _safetensors_header(file: Path) -> dict[str, Any]:
    """Parse a safetensors header (8-byte little-endian length + JSON) without loading data."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        raw = fh.read(8)
        n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        header = fh.read(n) if 0 < n <= size - 8 else b""
    try:
        parsed = json.loads(header)
        if not isinstance(parsed, dict):
            raise ValueError("header is not an object")
    except ValueError:
        raise RunDirError(
            f"{file} is not a valid safetensors file; ppgen refuses it rather than guess, so "
            "remove it or restore it from a backup."
        ) from None
    return parsed


def write_config(out: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` (the run's settings, enough to resume it)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / CONFIG, lambda fh: json.dump(config, fh, indent=2, default=_jsonable))


def read_config(path: Path) -> dict[str, Any]:
    """Read and check a run directory's ``config.json``."""
    validate_run_dir(path)
    file = path / CONFIG
    if not file.is_file():
        raise RunDirError(f"{path} has no {CONFIG}, so it is not a ppgen run directory.")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(f"{file} is not valid JSON; the run directory is damaged.") from None
    if not isinstance(config, dict) or "model" not in config or "fit" not in config:
        raise RunDirError(f"{file} lacks the model and fit settings that ppgen writes there.")
    return config


def save_checkpoint(out: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically as one safetensors file (arrays + JSON metadata), so a
    crash at any moment leaves either the previous checkpoint or the new one, never half of one."""
    from safetensors.numpy import save_file

    arrays = {k: np.array(v, order="C") for k, v in checkpoint.arrays.items()}
    arrays["__losses__"] = np.ascontiguousarray(checkpoint.losses, dtype=np.float64)
    meta = {
        "format": _FORMAT,
        "step": checkpoint.step,
        "skipped": checkpoint.skipped,
        "meta": checkpoint.meta,
    }
    with atomic_path(out / CHECKPOINT) as tmp:
        save_file(arrays, str(tmp), metadata={"ppgen": json.dumps(meta)})

    def metrics(fh: IO[str]) -> None:
        w = csv.writer(fh)
        w.writerow(["step", "loss"])
        w.writerows((i + 1, repr(float(v))) for i, v in enumerate(checkpoint.losses))

    atomic_write(out / "metrics.csv", metrics)


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a run directory's checkpoint after checking the directory (no pickle, ever)."""
    from safetensors import safe_open

    validate_run_dir(path)
    file = path / CHECKPOINT
    if not file.is_file():
        raise RunDirError(
            f"{path} has no {CHECKPOINT} to resume from; the run stopped before its first "
            "checkpoint, so start it again (with --checkpoint-every N)."
        )
    header = _safetensors_header(file)
    try:
        meta = json.loads(header.get("__metadata__", {}).get("ppgen", ""))
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise RunDirError(f"{file} was not written by this version of ppgen; it cannot resume.")
    with safe_open(str(file), framework="numpy") as fh:
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    losses = arrays.pop("__losses__", np.empty(0))
    return Checkpoint(int(meta["step"]), arrays, meta["meta"], losses, int(meta["skipped"]))


class Checkpointer(LoopHooks):
    """Writes checkpoints into a run directory and turns Ctrl-C into a clean, resumable stop.

    Use as a context manager: while active, the first SIGINT only sets a flag that the training
    loop checks between chunks (it then checkpoints and stops); a second SIGINT interrupts at
    once.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._interrupted = False
        self._previous: Any = None

    def save(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.out, checkpoint)

    def interrupted(self) -> bool:
        return self._interrupted

    def _handle(self, signum: int, frame: Any) -> None:
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True

    def __enter__(self) -> Checkpointer:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _file_label(label: str) -> str:
    """A method label made safe for a file name: ``reparam:auto_mvn`` -> ``reparam-auto_mvn``."""
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in label)


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """Write ``report.md``, ``forest.png`` and one ``posterior_<method>.nc`` per method into
    ``out`` (each atomically) and return the paths written."""
    import matplotlib.pyplot as plt

    from ppgen.diagnostics import arviz as ppaz

    if out.exists() and not out.is_dir():
        raise RunDirError(f"Output directory {out} exists and is a file; pick another --out path.")
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.md"]

    def report(fh: IO[str]) -> None:
        fh.write(comparison.to_markdown())

    atomic_write(written[0], report)
    fig = comparison.plot_forest()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    written.append(out / "forest.png")
    with atomic_path(written[-1]) as tmp:
        tmp.write_bytes(buf.getvalue())
    for label, idata in comparison.idata.items():
        written.append(out / f"posterior_{_file_label(label)}.nc")
        with atomic_path(written[-1]) as tmp:
            ppaz.to_netcdf(idata, tmp)
    return written
