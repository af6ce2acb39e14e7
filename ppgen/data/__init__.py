"""Data sets for ppgen's models, tests and tutorials, as plain numpy arrays.

Nothing here imports a backend: the backends turn these arrays into device arrays themselves.

- :func:`digits`, :func:`digits_labels`: scikit-learn's 8x8 digits with a fixed 80/20 split.
- :func:`mnist_idx`, :func:`write_idx`: MNIST-style IDX files, plain or gzipped.
- :func:`load_posteriordb`, :func:`posteriordb_names`: real data sets from posteriordb.
- :func:`coin_flips`, :func:`normal_normal_data`, :func:`linreg_data`, :func:`logistic_data`,
  :func:`gaussian_1d`, :func:`mixture_1d`, :func:`true_coef`: seeded synthetic data.
"""

from __future__ import annotations

__all__ = [
    "DIGITS_SPLITS",
    "coin_flips",
    "digits",
    "digits_labels",
    "gaussian_1d",
    "linreg_data",
    "load_posteriordb",
    "logistic_data",
    "mixture_1d",
    "mnist_idx",
    "normal_normal_data",
    "posteriordb_names",
    "true_coef",
    "write_idx",
]

from ppgen.data.digits import DIGITS_SPLITS, digits, digits_labels
from ppgen.data.mnist import mnist_idx, write_idx
from ppgen.data.posteriordb import load_posteriordb, posteriordb_names
from ppgen.data.synthetic import (
    coin_flips,
    gaussian_1d,
    linreg_data,
    logistic_data,
    mixture_1d,
    normal_normal_data,
    true_coef,
)
