"""Small, deterministic synthetic data sets for the classic models and the 1-D GAN examples.

Every generator takes a ``seed`` and draws from its own ``numpy.random.default_rng(seed)``, so the
same arguments always give the same float32 arrays and no global random state is touched.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ppgen.errors import DataError

__all__ = [
    "coin_flips",
    "gaussian_1d",
    "linreg_data",
    "logistic_data",
    "mixture_1d",
    "normal_normal_data",
    "true_coef",
]


def _check_count(name: str, value: int) -> None:
    # bool is an int subclass; n=True is far more likely a mistake than a request for one row.
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}; pass e.g. {name}=10.")


def _check_scale(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (np.isfinite(value) and ok):
        bound = "non-negative" if allow_zero else "positive"
        raise DataError(f"{name} must be a finite {bound} number, got {value!r}.")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{name} must be a probability between 0 and 1, got {value!r}.")


def _standardize(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # Standardized columns keep default priors (e.g. N(0, 1) weights) on a sensible scale and
    # make the conjugate posteriors in the tests well conditioned.
    sd = x.std(axis=0)
    scaled: NDArray[np.float64] = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return scaled


def true_coef(d: int) -> NDArray[np.float64]:
    """Return the weights that :func:`linreg_data` and :func:`logistic_data` generate data with.

    Parameters
    ----------
    d : int
        Number of features.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(d,)`` with entries ``(-1)**j * (j + 1) / d``: all non-zero, of
        alternating sign, largest magnitude 1. For ``d=3``: ``[1/3, -2/3, 1]``.
    """
    _check_count("d", d)
    j = np.arange(d)
    return np.where(j % 2 == 0, 1.0, -1.0) * (j + 1) / d


def coin_flips(n: int = 20, p: float = 0.7, seed: int = 0) -> NDArray[np.float32]:
    """Draw ``n`` independent Bernoulli(`p`) coin flips.

    Parameters
    ----------
    n : int, default 20
        Number of flips.
    p : float, default 0.7
        Probability of heads (1).
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n,)`` holding 0.0 and 1.0.
    """
    _check_count("n", n)
    _check_probability("p", p)
    rng = np.random.default_rng(seed)
    return (rng.random(n) < p).astype(np.float32)


def normal_normal_data(
    n: int = 20, mu: float = 1.5, sigma: float = 1.0, seed: int = 0
) -> NDArray[np.float32]:
    """Draw ``n`` observations from N(`mu`, `sigma`) for the Normal-Normal model.

    Parameters
    ----------
    n : int, default 20
        Number of observations.
    mu : float, default 1.5
        True mean.
    sigma : float, default 1.0
        True (known) standard deviation.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n,)``.
    """
    _check_count("n", n)
    _check_scale("sigma", sigma)
    rng = np.random.default_rng(seed)
    return rng.normal(mu, sigma, size=n).astype(np.float32)


def linreg_data(
    n: int = 100, d: int = 3, noise: float = 0.5, seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Draw a linear-regression data set ``y = X w + noise * eps`` without intercept.

    Parameters
    ----------
    n : int, default 100
        Number of rows.
    d : int, default 3
        Number of features.
    noise : float, default 0.5
        Standard deviation of the Gaussian noise ``eps``; 0 gives an exact fit.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    X : numpy.ndarray
        float32 array of shape ``(n, d)``, features drawn from N(0, 1) and then standardized to
        mean 0 and (population) standard deviation 1 per column.
    y : numpy.ndarray
        float32 array of shape ``(n,)``, computed from the standardized `X` with weights
        ``w = true_coef(d)``.
    """
    _check_count("n", n)
    _check_count("d", d)
    _check_scale("noise", noise, allow_zero=True)
    rng = np.random.default_rng(seed)
    x = _standardize(rng.standard_normal((n, d)))
    y = x @ true_coef(d) + noise * rng.standard_normal(n)
    return x.astype(np.float32), y.astype(np.float32)


def logistic_data(
    n: int = 200, d: int = 3, seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Draw a logistic-regression data set ``y ~ Bernoulli(sigmoid(X w))`` without intercept.

    Parameters
    ----------
    n : int, default 200
        Number of rows.
    d : int, default 3
        Number of features.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    X : numpy.ndarray
        float32 array of shape ``(n, d)`` with standardized columns, as in :func:`linreg_data`.
    y : numpy.ndarray
        float32 array of shape ``(n,)`` holding 0.0 and 1.0, drawn with weights
        ``w = true_coef(d)``.
    """
    _check_count("n", n)
    _check_count("d", d)
    rng = np.random.default_rng(seed)
    x = _standardize(rng.standard_normal((n, d)))
    prob = 1.0 / (1.0 + np.exp(-(x @ true_coef(d))))
    y = rng.random(n) < prob
    return x.astype(np.float32), y.astype(np.float32)


def gaussian_1d(n: int, mean: float = -1.0, sd: float = 1.0, seed: int = 0) -> NDArray[np.float32]:
    """Draw ``n`` samples from a 1-D Gaussian, the target of the simplest GAN example.

    Parameters
    ----------
    n : int
        Number of samples.
    mean : float, default -1.0
        Mean of the Gaussian.
    sd : float, default 1.0
        Standard deviation of the Gaussian.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n,)``.
    """
    _check_count("n", n)
    _check_scale("sd", sd)
    rng = np.random.default_rng(seed)
    return rng.normal(mean, sd, size=n).astype(np.float32)


def mixture_1d(
    n: int = 1000,
    weight: float = 0.5,
    means: tuple[float, float] = (-2.0, 2.0),
    sds: tuple[float, float] = (0.5, 0.5),
    seed: int = 0,
) -> NDArray[np.float32]:
    """Draw ``n`` samples from a two-component 1-D Gaussian mixture.

    Well-separated modes make mode collapse of a GAN generator easy to see and to measure.

    Parameters
    ----------
    n : int, default 1000
        Number of samples.
    weight : float, default 0.5
        Probability of the first component; the second has ``1 - weight``.
    means : tuple of two floats, default (-2.0, 2.0)
        Means of the two components.
    sds : tuple of two floats, default (0.5, 0.5)
        Standard deviations of the two components.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n,)``.
    """
    _check_count("n", n)
    _check_probability("weight", weight)
    if len(means) != 2 or len(sds) != 2:
        raise DataError(
            f"means and sds must each hold two values, got {len(means)} and {len(sds)}; "
            "pass e.g. means=(-2.0, 2.0), sds=(0.5, 0.5)."
        )
    for s in sds:
        _check_scale("each of sds", s)
    rng = np.random.default_rng(seed)
    second = rng.random(n) >= weight
    loc = np.where(second, means[1], means[0])
    scale = np.where(second, sds[1], sds[0])
    return (loc + scale * rng.standard_normal(n)).astype(np.float32)
