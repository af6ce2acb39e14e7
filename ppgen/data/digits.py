"""The 8x8 handwritten digits bundled with scikit-learn, as a small stand-in for MNIST.

The 1797 images ship inside scikit-learn, so tests, tutorials and smoke runs need no download. A
fixed 80/20 train/test split is drawn from a seeded permutation, so the same ``seed`` always gives
the same rows in the same order.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ppgen.errors import DataError

__all__ = ["DIGITS_SPLITS", "digits", "digits_labels"]

DIGITS_SPLITS: tuple[str, ...] = ("train", "test", "all")
"""The values accepted by the ``split`` argument of :func:`digits` and :func:`digits_labels`."""

# Share of the images that go to the test split; the count is rounded up, as scikit-learn's
# ``train_test_split`` does, giving 1437 train and 360 test images.
_TEST_FRACTION_DENOMINATOR = 5


@functools.lru_cache(maxsize=1)
def _load() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    # Imported here so that importing ppgen.data does not pay for scikit-learn's import time.
    from sklearn.datasets import load_digits

    bunch: Any = load_digits()
    images = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    # The cached arrays are shared by every caller, so make accidental in-place edits fail loudly.
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _indices(split: str, seed: int, n: int) -> NDArray[np.intp] | slice:
    if split not in DIGITS_SPLITS:
        raise DataError(
            f"Unknown digits split {split!r}; use one of 'train', 'test' or 'all'.",
        )
    if split == "all":
        return slice(None)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = -(-n // _TEST_FRACTION_DENOMINATOR)  # ceil(n / 5) in exact integer arithmetic
    return perm[n_test:] if split == "train" else perm[:n_test]


def digits(binarize: bool = True, split: str = "train", seed: int = 0) -> NDArray[np.float32]:
    """Load scikit-learn's 8x8 handwritten digits as flat float32 images in [0, 1].

    Parameters
    ----------
    binarize : bool, default True
        If true, pixels strictly above 0.5 become 1 and all others 0; otherwise the grey levels
        (0 to 16 in the source) are divided by 16.
    split : {"train", "test", "all"}, default "train"
        Which part of the fixed 80/20 split to return. ``"test"`` holds ``ceil(0.2 * 1797) = 360``
        images and ``"train"`` the other 1437, both in the order of a permutation drawn from
        ``numpy.random.default_rng(seed)``. ``"all"`` returns all 1797 images in scikit-learn's
        order and ignores `seed`.
    seed : int, default 0
        Seed of the permutation that defines the split.

    Returns
    -------
    numpy.ndarray
        A new float32 array of shape ``(n, 64)``, one row per image in row-major pixel order.

    Raises
    ------
    ppgen.errors.DataError
        If `split` is not one of the accepted values.

    See Also
    --------
    digits_labels : The class labels (0 to 9) of the same rows, in the same order.

    Examples
    --------
    >>> x = digits(split="test")
    >>> x.shape, x.dtype.name
    ((360, 64), 'float32')
    """
    images, _ = _load()
    x = images[_indices(split, seed, images.shape[0])]
    if binarize:
        return (x > 0.5).astype(np.float32)
    # Basic slicing (split="all") returns a read-only view of the cache; hand out a copy instead.
    return np.array(x, dtype=np.float32, copy=True)


def digits_labels(split: str = "train", seed: int = 0) -> NDArray[np.int64]:
    """Return the digit classes (0 to 9) of the rows that :func:`digits` returns.

    Parameters
    ----------
    split : {"train", "test", "all"}, default "train"
        Which part of the split, as in :func:`digits`.
    seed : int, default 0
        Seed of the permutation that defines the split, as in :func:`digits`.

    Returns
    -------
    numpy.ndarray
        A new int64 array of shape ``(n,)``; entry ``i`` is the class of row ``i`` of
        ``digits(split=split, seed=seed)``.

    Raises
    ------
    ppgen.errors.DataError
        If `split` is not one of the accepted values.
    """
    _, labels = _load()
    return np.array(labels[_indices(split, seed, labels.shape[0])], dtype=np.int64, copy=True)
