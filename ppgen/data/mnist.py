"""Read and write MNIST-style IDX files, plain or gzipped.

ppgen never downloads MNIST itself: point :func:`mnist_idx` at the IDX files you have (for example
``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``). The IDX format is a 4-byte
big-endian magic number (two zero bytes, a type code, the number of dimensions), one big-endian
uint32 per dimension, then the raw values in row-major order.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import overload

import numpy as np
from numpy.typing import NDArray

from ppgen.errors import DataError

__all__ = ["mnist_idx", "write_idx"]

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count, rows, columns
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {str(path)!r} does not exist; check the path.") from None
    except IsADirectoryError:
        raise DataError(f"{str(path)!r} is a directory, not an IDX file; pass the file.") from None
    except OSError as exc:
        raise DataError(
            f"Could not read IDX file {str(path)!r} ({exc.strerror}); check its permissions."
        ) from exc
    # Detect compression by content, not by name: files are often renamed or double-extracted.
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"Gzipped IDX file {str(path)!r} is corrupt or truncated ({exc}); "
                "download it again."
            ) from exc
    return raw


def _read_idx(path: Path, expected_magic: int, what: str) -> NDArray[np.uint8]:
    data = _read_bytes(path)
    name = repr(str(path))
    if len(data) < 4:
        raise DataError(
            f"{name} holds {len(data)} bytes, too few for an IDX header; "
            f"pass an MNIST-style IDX file of {what}."
        )
    magic = int.from_bytes(data[:4], "big")
    if data[:2] != b"\x00\x00" or data[2] not in _TYPE_NAMES or data[3] == 0:
        raise DataError(
            f"{name} is not an IDX file (it starts with bytes {data[:4].hex(' ')}, "
            f"expected magic 0x{expected_magic:08x}); pass an MNIST-style IDX file of {what}."
        )
    if data[2] != _UBYTE:
        raise DataError(
            f"IDX file {name} holds {_TYPE_NAMES[data[2]]} values (magic 0x{magic:08x}) but only "
            f"unsigned bytes (magic 0x{expected_magic:08x}) are supported; convert it to uint8."
        )
    if magic != expected_magic:
        swapped = {magic, expected_magic} == {_IMAGES_MAGIC, _LABELS_MAGIC}
        hint = "did you swap the image and label paths?" if swapped else "pass the right file."
        raise DataError(
            f"IDX file {name} has {data[3]} dimensions (magic 0x{magic:08x}) but {what} need "
            f"{expected_magic & 0xFF} (magic 0x{expected_magic:08x}); {hint}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"IDX file {name} is truncated inside its header ({len(data)} of {header} bytes); "
            "download it again."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)  # exact: three 32-bit sizes can overflow int64
    actual = len(data) - header
    if actual < expected:
        raise DataError(
            f"IDX file {name} is truncated: its header declares shape {shape} ({expected} bytes) "
            f"but only {actual} bytes follow; download it again."
        )
    if actual > expected:
        raise DataError(
            f"IDX file {name} has {actual - expected} bytes after the {expected} that its header "
            f"declares for shape {shape}; the file is corrupt, download it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@overload
def mnist_idx(
    images_path: PathLike,
    labels_path: None = None,
    *,
    normalize: bool = True,
    binarize: bool = False,
) -> NDArray[np.float32] | NDArray[np.uint8]: ...


@overload
def mnist_idx(
    images_path: PathLike,
    labels_path: PathLike,
    *,
    normalize: bool = True,
    binarize: bool = False,
) -> tuple[NDArray[np.float32] | NDArray[np.uint8], NDArray[np.int64]]: ...


def mnist_idx(
    images_path: PathLike,
    labels_path: PathLike | None = None,
    *,
    normalize: bool = True,
    binarize: bool = False,
) -> (
    NDArray[np.float32]
    | NDArray[np.uint8]
    | tuple[NDArray[np.float32] | NDArray[np.uint8], NDArray[np.int64]]
):
    """Load MNIST-style images (and optionally labels) from IDX files.

    Parameters
    ----------
    images_path : str or os.PathLike
        IDX file of unsigned-byte images (magic ``0x00000803``: count, rows, columns). Gzipped
        files are recognised by their first bytes, whatever their name.
    labels_path : str or os.PathLike, optional
        IDX file of unsigned-byte labels (magic ``0x00000801``), one per image.
    normalize : bool, default True
        Divide pixel values by 255, giving float32 in [0, 1]. If false (and `binarize` is false)
        the raw uint8 values are returned.
    binarize : bool, default False
        Return float32 0/1 pixels: 1 where the value divided by 255 is strictly above 0.5 (raw
        value 128 or more). Takes precedence over `normalize`.

    Returns
    -------
    x : numpy.ndarray
        Images flattened to shape ``(n, rows * cols)``; float32 in [0, 1] unless both
        `normalize` and `binarize` are false, in which case uint8.
    y : numpy.ndarray
        Only when `labels_path` is given: int64 labels of shape ``(n,)``, returned as ``(x, y)``.

    Raises
    ------
    ppgen.errors.DataError
        If a file is missing, is not IDX, has the wrong type or number of dimensions, is
        truncated or has trailing bytes, or if the image and label counts differ.

    Examples
    --------
    >>> images, labels = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
    >>> x, y = mnist_idx(images, labels)  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    ((60000, 784), (60000,))
    """
    images = _read_idx(Path(images_path), _IMAGES_MAGIC, "images")
    n, rows, cols = images.shape
    # Explicit sizes: reshape(n, -1) cannot infer -1 when there are no images.
    flat = images.reshape(n, rows * cols)
    x: NDArray[np.float32] | NDArray[np.uint8]
    if binarize:
        x = (flat > 127).astype(np.float32)
    elif normalize:
        x = flat.astype(np.float32) / np.float32(255.0)
    else:
        # frombuffer views the immutable bytes object; return a writable array of our own.
        x = flat.copy()
    if labels_path is None:
        return x
    labels = _read_idx(Path(labels_path), _LABELS_MAGIC, "labels")
    if labels.shape[0] != n:
        raise DataError(
            f"Label file {str(labels_path)!r} holds {labels.shape[0]} labels but image file "
            f"{str(images_path)!r} holds {n} images; pass files from the same split."
        )
    return x, labels.astype(np.int64)


def write_idx(path: PathLike, array: NDArray[np.uint8]) -> None:
    """Write a uint8 array as an IDX file, gzipped when `path` ends in ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; it is overwritten if it exists.
    array : numpy.ndarray
        uint8 array with 1 dimension (labels, magic ``0x00000801``) or 3 dimensions (images,
        magic ``0x00000803``).

    Raises
    ------
    ppgen.errors.DataError
        If `array` is not uint8 or has a number of dimensions other than 1 or 3.

    Notes
    -----
    Gzipped output uses a zero timestamp, so the same array always gives the same bytes.
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise DataError(
            f"write_idx got a {arr.dtype} array but IDX files here hold uint8; "
            "convert it with array.astype(numpy.uint8) first."
        )
    if arr.ndim not in (1, 3):
        raise DataError(
            f"write_idx got a {arr.ndim}-D array but writes 1-D labels or 3-D images; "
            "reshape it to (n,) or (n, rows, cols)."
        )
    header = bytes((0, 0, _UBYTE, arr.ndim)) + b"".join(
        int(s).to_bytes(4, "big") for s in arr.shape
    )
    payload = header + np.ascontiguousarray(arr).tobytes()
    target = Path(path)
    if target.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    target.write_bytes(payload)
