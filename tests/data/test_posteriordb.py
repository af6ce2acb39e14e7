"""Tests for ppgen.data.posteriordb: the shipped files, their values and types, and bad names."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from ppgen.data import load_posteriordb, posteriordb_names
from ppgen.errors import DataError

SHIPPED = {"arK", "eight_schools", "kidiq"}


def test_shipped_names() -> None:
    names = posteriordb_names()
    assert SHIPPED <= set(names)
    assert list(names) == sorted(names)


def test_licence_and_attribution_ship_with_the_data() -> None:
    folder = resources.files("ppgen.data") / "files" / "posteriordb"
    assert "BSD 3-Clause" in (folder / "LICENCE.md").read_text(encoding="utf-8")
    attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "posteriordb" in attribution
    for name in SHIPPED:
        assert f"{name}.json" in attribution


def test_eight_schools_values() -> None:
    data = load_posteriordb("eight_schools")
    assert set(data) == {"J", "y", "sigma"}
    assert data["J"] == 8
    assert type(data["J"]) is int
    y, sigma = data["y"], data["sigma"]
    assert isinstance(y, np.ndarray)
    assert isinstance(sigma, np.ndarray)
    assert y.dtype == np.int64
    assert sigma.dtype == np.int64
    np.testing.assert_array_equal(y, [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(sigma, [15, 10, 16, 11, 9, 11, 10, 18])


def test_kidiq_types_and_lengths() -> None:
    data = load_posteriordb("kidiq")
    assert data["N"] == 434
    for key, dtype in [("kid_score", np.int64), ("mom_hs", np.int64), ("mom_iq", np.float32)]:
        value = data[key]
        assert isinstance(value, np.ndarray)
        assert value.shape == (434,)
        assert value.dtype == dtype
    assert set(np.unique(data["mom_hs"]).tolist()) == {0, 1}
    kid_score = data["kid_score"]
    assert isinstance(kid_score, np.ndarray)
    assert kid_score[:3].tolist() == [65, 98, 85]


def test_ark_values() -> None:
    data = load_posteriordb("arK")
    assert data["K"] == 5
    assert data["T"] == 200
    y = data["y"]
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.float32
    assert y.shape == (200,)
    assert y[0] == pytest.approx(0.729385275296256, rel=1e-6)


def test_each_call_returns_fresh_arrays() -> None:
    first = load_posteriordb("eight_schools")["y"]
    assert isinstance(first, np.ndarray)
    first[:] = 0
    second = load_posteriordb("eight_schools")["y"]
    assert isinstance(second, np.ndarray)
    np.testing.assert_array_equal(second[:2], [28, 8])


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(DataError, match="Unknown posteriordb data set 'eight_school'") as info:
        load_posteriordb("eight_school")
    message = str(info.value)
    assert "did you mean 'eight_schools'?" in message
    assert "arK, eight_schools, kidiq" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "name", ["../posteriordb/eight_schools", "eight_schools.json", "", "LICENCE"]
)
def test_names_outside_the_list_are_refused(name: str) -> None:
    with pytest.raises(DataError, match="Available: arK, eight_schools, kidiq"):
        load_posteriordb(name)
