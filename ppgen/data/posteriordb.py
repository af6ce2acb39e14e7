"""Small real data sets from posteriordb, shipped inside the package.

The JSON files under ``ppgen/data/files/posteriordb/`` come from the posteriordb project
(https://github.com/stan-dev/posteriordb, BSD-3-Clause); see ``ATTRIBUTION.md`` there for what each
holds. They let tests and tutorials check inference against NUTS on real data without a download.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ppgen.errors import DataError, suggest

if TYPE_CHECKING:
    # importlib.resources.abc appeared in Python 3.11; the annotation is never evaluated at runtime.
    from importlib.resources.abc import Traversable

__all__ = ["load_posteriordb", "posteriordb_names"]

PosteriordbValue = NDArray[np.float32] | NDArray[np.int64] | int | float


def _directory() -> Traversable:
    return resources.files("ppgen.data") / "files" / "posteriordb"


def posteriordb_names() -> tuple[str, ...]:
    """List the posteriordb data sets shipped with ppgen.

    Returns
    -------
    tuple of str
        Sorted names accepted by :func:`load_posteriordb`, e.g. ``("arK", "eight_schools",
        "kidiq")``.
    """
    return tuple(
        sorted(
            entry.name.removesuffix(".json")
            for entry in _directory().iterdir()
            if entry.is_file() and entry.name.endswith(".json")
        )
    )


def _convert(name: str, key: str, value: object) -> PosteriordbValue:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, list):
        arr = np.asarray(value)
        if arr.dtype.kind in "iub":
            return arr.astype(np.int64)
        if arr.dtype.kind == "f":
            return arr.astype(np.float32)
    # Ragged lists or strings would silently become object arrays; refuse them instead.
    raise DataError(
        f"Entry {key!r} of posteriordb data set {name!r} is not a number or a rectangular "
        "array of numbers; the shipped file is damaged, reinstall ppgen."
    )


def load_posteriordb(name: str) -> dict[str, PosteriordbValue]:
    """Load one of the posteriordb data sets shipped with ppgen.

    Parameters
    ----------
    name : str
        Data set name, one of :func:`posteriordb_names`: ``"eight_schools"`` (``J``, ``y``,
        ``sigma``), ``"kidiq"`` (``N``, ``kid_score``, ``mom_iq``, ``mom_hs``, ...) or ``"arK"``
        (``K``, ``T``, ``y``).

    Returns
    -------
    dict
        The named entries of the data set, in file order. Lists become new numpy arrays (int64
        when every element is an integer, float32 otherwise); scalars stay Python ``int`` or
        ``float``.

    Raises
    ------
    ppgen.errors.DataError
        If no data set of that name is shipped.

    Examples
    --------
    >>> data = load_posteriordb("eight_schools")
    >>> data["J"], data["y"].tolist()
    (8, [28, 8, -3, 7, -1, 1, 18, 12])
    """
    names = posteriordb_names()
    # Only accept listed names, so that a name like "../x" can never reach outside the folder.
    if name not in names:
        raise DataError(f"Unknown posteriordb data set {name!r}; {suggest(name, names)}.")
    raw = json.loads((_directory() / f"{name}.json").read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise DataError(
            f"posteriordb data set {name!r} is not a JSON object of named values; the shipped "
            "file is damaged, reinstall ppgen."
        )
    return {key: _convert(name, key, value) for key, value in raw.items()}
