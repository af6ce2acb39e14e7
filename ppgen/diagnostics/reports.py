"""What a run directory shows beyond the generic files: per-method and per-model reports.

:func:`artifacts` collects, for a fit, the extra files its run directory gets: the loss curve of
every player of a game (``losses.png``), the sample grids kept during training
(``samples_step001000.png``, ...), and whatever the model's ``artifacts`` extra reports (sample
grids, reconstructions, the 1-D GAN picture, ``quality.json`` with its quality metrics). Values
are PNG bytes or JSON-able dicts; :mod:`ppgen.runs` writes them atomically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.diagnostics.images import loss_curves_figure, png_bytes, samples_figure

if TYPE_CHECKING:
    from ppgen.inference.base import FitResult

__all__ = ["artifacts"]


def artifacts(result: FitResult) -> dict[str, bytes | dict[str, Any]]:
    """The extra files of ``result``'s run directory, by file name."""
    out: dict[str, bytes | dict[str, Any]] = {}
    title = f"{result.model.name} — {result.method} ({result.backend})"
    if result.metrics:
        series = {name.removeprefix("loss_"): values for name, values in result.metrics.items()}
        out["losses.png"] = png_bytes(loss_curves_figure(series, title))
    snapshots: dict[int, np.ndarray] = result.extras.get("snapshots", {})
    for step, samples in sorted(snapshots.items()):
        out[f"samples_step{step:06d}.png"] = png_bytes(
            samples_figure(samples, f"{result.model.name}, step {step}")
        )
    hook = result.model.extras.get("artifacts")
    if hook is not None:
        out.update(hook(result))
    return out
