"""Plots written into run directories. matplotlib only, Agg backend, no display needed."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["loss_figure", "posterior_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_figure(losses: np.ndarray, title: str) -> Any:
    """Loss per step (raw, and a moving average when the curve is noisy)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="0.7", lw=0.8, label="loss")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="C0", lw=1.5, label=f"moving mean ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative ELBO)")
    ax.set_title(title)
    if np.all(losses > 0) and losses.max() / max(losses.min(), 1e-12) > 100:
        ax.set_yscale("log")
    ax.legend()
    return fig


def posterior_figure(samples: dict[str, np.ndarray], title: str, max_panels: int = 8) -> Any:
    """Histograms of the first few scalar marginals of the posterior draws."""
    plt = _pyplot()
    marginals: list[tuple[str, np.ndarray]] = []
    for name, draws in samples.items():
        flat = draws.reshape(draws.shape[0], -1)
        for j in range(flat.shape[1]):
            label = name if flat.shape[1] == 1 else f"{name}[{j}]"
            marginals.append((label, flat[:, j]))
    marginals = marginals[:max_panels]
    cols = min(4, max(1, len(marginals)))
    rows = int(np.ceil(len(marginals) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), constrained_layout=True)
    axes = np.atleast_1d(axes).ravel()
    for ax, (label, values) in zip(axes, marginals, strict=False):
        ax.hist(values, bins=40, density=True, color="C0", alpha=0.7)
        ax.set_title(label)
        ax.set_xlabel("value")
        ax.set_ylabel("density")
    for ax in axes[len(marginals) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig
