"""Tests for ppgen.data.digits: shapes, values, the fixed split and its determinism."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ppgen.data
from ppgen.data import digits, digits_labels
from ppgen.data.digits import _indices
from ppgen.errors import DataError, PPGenError

N_ALL = 1797
N_TEST = 360  # ceil(0.2 * 1797), as scikit-learn's train_test_split counts it
N_TRAIN = N_ALL - N_TEST  # 1437


def _pairs(x: np.ndarray, y: np.ndarray) -> Counter[tuple[bytes, int]]:
    return Counter((row.tobytes(), int(label)) for row, label in zip(x, y, strict=True))


@pytest.mark.parametrize(("split", "n"), [("train", N_TRAIN), ("test", N_TEST), ("all", N_ALL)])
@pytest.mark.parametrize("binarize", [True, False])
def test_shapes_and_dtypes(split: str, n: int, binarize: bool) -> None:
    x = digits(binarize=binarize, split=split)
    y = digits_labels(split=split)
    assert x.shape == (n, 64)
    assert x.dtype == np.float32
    assert y.shape == (n,)
    assert y.dtype == np.int64


def test_binarized_values_are_zero_or_one() -> None:
    x = digits(binarize=True, split="all")
    assert set(np.unique(x).tolist()) == {0.0, 1.0}


def test_grey_values_are_sixteenths_in_unit_interval() -> None:
    x = digits(binarize=False, split="all")
    assert x.min() == 0.0
    assert x.max() == 1.0
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    # Binarizing keeps exactly the pixels above 8/16.
    np.testing.assert_array_equal(digits(binarize=True, split="all"), (x > 0.5).astype(np.float32))


def test_binarized_train_mean_pixel() -> None:
    # 26912 of the 1437 * 64 = 91968 train pixels are on for seed 0.
    x = digits(split="train", seed=0)
    assert int(x.sum()) == 26912
    assert float(x.mean(dtype=np.float64)) == pytest.approx(26912 / 91968, abs=1e-6)


def test_all_matches_scikit_learn_order() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    np.testing.assert_allclose(digits(binarize=False, split="all"), bunch.data / 16.0, atol=0)
    np.testing.assert_array_equal(digits_labels(split="all"), bunch.target)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_split_is_a_disjoint_cover(seed: int) -> None:
    train = _indices("train", seed, N_ALL)
    test = _indices("test", seed, N_ALL)
    assert isinstance(train, np.ndarray)
    assert isinstance(test, np.ndarray)
    assert len(train) == N_TRAIN
    assert len(test) == N_TEST
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(N_ALL))


@pytest.mark.parametrize("seed", [0, 7])
def test_images_and_labels_stay_paired(seed: int) -> None:
    # Together the train and test (image, label) pairs are exactly the full data set's pairs.
    split_pairs = _pairs(
        digits(binarize=False, split="train", seed=seed), digits_labels(split="train", seed=seed)
    ) + _pairs(
        digits(binarize=False, split="test", seed=seed), digits_labels(split="test", seed=seed)
    )
    all_pairs = _pairs(digits(binarize=False, split="all"), digits_labels(split="all"))
    assert split_pairs == all_pairs


def test_same_seed_same_data_other_seed_other_order() -> None:
    np.testing.assert_array_equal(digits(seed=3), digits(seed=3))
    np.testing.assert_array_equal(digits_labels(seed=3), digits_labels(seed=3))
    assert not np.array_equal(digits_labels(seed=3), digits_labels(seed=4))
    # "all" ignores the seed.
    np.testing.assert_array_equal(digits(split="all", seed=3), digits(split="all", seed=4))


def test_returned_arrays_are_private_copies() -> None:
    for split in ("train", "all"):
        x = digits(binarize=False, split=split)
        x[:] = -1.0
        y = digits_labels(split=split)
        y[:] = -1
    assert digits(binarize=False, split="all").min() == 0.0
    assert digits_labels(split="all").min() == 0


@pytest.mark.parametrize("bad", ["valid", "TRAIN", ""])
def test_bad_split_names_the_choices(bad: str) -> None:
    for call in (lambda: digits(split=bad), lambda: digits_labels(split=bad)):
        with pytest.raises(DataError, match="'train', 'test' or 'all'") as info:
            call()
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, PPGenError)
        assert repr(bad) in str(info.value)


def test_data_layer_imports_no_backend() -> None:
    # ppgen.data must stay importable without torch or jax, and depend on nothing else in ppgen
    # but ppgen.errors, so read the imports from the source rather than importing the package.
    forbidden = {"torch", "jax", "jaxlib", "pyro", "numpyro"}
    folder = Path(ppgen.data.__file__).parent
    for source in folder.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top not in forbidden, f"{source.name} imports {module}"
                if top == "ppgen":
                    assert module == "ppgen.errors" or module.startswith("ppgen.data"), (
                        f"{source.name} imports {module}"
                    )
