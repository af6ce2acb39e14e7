"""Figures for generative models: image grids, both players' loss curves, the 1-D GAN picture.

matplotlib only; every function returns a figure (see :func:`png_bytes`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ppgen.errors import DataError

__all__ = [
    "gan1d_figure",
    "histogram_figure",
    "image_grid_figure",
    "image_side",
    "loss_curves_figure",
    "png_bytes",
    "samples_figure",
]


def _pyplot() -> Any:
    # No matplotlib.use("Agg") here: without a display matplotlib falls back to Agg by itself,
    # and a notebook keeps its inline backend.
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed afterwards."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    return buf.getvalue()


def image_side(pixels: int) -> int:
    """The side of a square image with ``pixels`` pixels (8 for digits, 28 for MNIST)."""
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise DataError(
            f"Images of {pixels} pixels are not square, so they cannot be shown as a grid; "
            "save the samples as .npy instead."
        )
    return side


def image_grid_figure(images: Any, title: str = "", cols: int | None = None) -> Any:
    """Flat square images (rows of ``images``) in a grid, grey levels clipped to [0, 1]."""
    plt = _pyplot()
    x = np.asarray(images, dtype=np.float64)
    x = x.reshape(len(x), -1)
    side = image_side(x.shape[1])
    cols = cols or math.ceil(math.sqrt(len(x)))
    rows = math.ceil(len(x) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6 + 0.2, rows * 0.6 + 0.5))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, img in zip(axes, x, strict=False):
        ax.imshow(np.clip(img.reshape(side, side), 0, 1), cmap="Greys", vmin=0, vmax=1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def histogram_figure(samples: Any, title: str = "") -> Any:
    """A histogram of 1-D samples."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4), constrained_layout=True)
    ax.hist(np.asarray(samples).ravel(), bins=80, density=True, color="C1", alpha=0.7)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(title)
    return fig


def samples_figure(samples: Any, title: str = "") -> Any:
    """Image grid for image-shaped samples, histogram for 1-D ones."""
    x = np.asarray(samples)
    flat = x.reshape(len(x), -1)
    if flat.shape[1] == 1:
        return histogram_figure(flat, title)
    return image_grid_figure(flat, title)


def loss_curves_figure(series: Mapping[str, Any], title: str = "") -> Any:
    """Several per-step loss curves (e.g. both GAN players), each with a moving average."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for i, (name, values) in enumerate(series.items()):
        y = np.asarray(values, dtype=np.float64)
        steps = np.arange(1, len(y) + 1)
        ax.plot(steps, y, color=f"C{i}", lw=0.5, alpha=0.35)
        window = max(1, len(y) // 50)
        smooth = np.convolve(y, np.ones(window) / window, mode="valid") if window > 1 else y
        ax.plot(steps[window - 1 :], smooth, color=f"C{i}", lw=1.5, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return fig


def gan1d_figure(
    grid: Any, p_data: Any, decision: Any, samples: Any, title: str = "", bins: int = 80
) -> Any:
    """The 1-D GAN picture: the data density, the discriminator's decision boundary ``D(x)``
    on ``grid``, and a histogram of the generated samples (``p_g``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    grid = np.asarray(grid).ravel()
    ax.plot(grid, np.asarray(p_data).ravel(), color="C0", lw=2, label="p_data")
    ax.plot(grid, np.asarray(decision).ravel(), color="C2", lw=1.5, label="decision boundary D(x)")
    edges = np.linspace(grid.min(), grid.max(), bins + 1)
    density, _ = np.histogram(np.asarray(samples).ravel(), bins=edges, density=True)
    centers = 0.5 * (edges[:-1] + edges[1:])
    ax.plot(centers, density, color="C1", lw=1.5, label="p_g")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("x")
    ax.set_title(title)
    ax.legend(loc="upper right")
    return fig
