"""Tests for ppgen.data.mnist: IDX round trips and one clear error for each kind of bad file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ppgen.data import mnist_idx, write_idx
from ppgen.errors import DataError

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(7, 4, 5), dtype=np.uint8)
    x[0, 0, :3] = [127, 128, 255]  # values either side of the binarization threshold
    return x


@pytest.fixture
def labels() -> np.ndarray:
    return np.arange(7, dtype=np.uint8) % 10


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path: Path, images: np.ndarray, labels: np.ndarray, suffix: str) -> None:
    image_file = tmp_path / f"images-idx3-ubyte{suffix}"
    label_file = tmp_path / f"labels-idx1-ubyte{suffix}"
    write_idx(image_file, images)
    write_idx(label_file, labels)
    assert (image_file.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")

    x, y = mnist_idx(image_file, label_file)
    assert x.shape == (7, 20)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, images.reshape(7, 20).astype(np.float32) / np.float32(255))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)

    raw = mnist_idx(str(image_file), normalize=False)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, images.reshape(7, 20))
    raw[:] = 0  # the result must be writable and our own

    binary = mnist_idx(image_file, binarize=True)
    assert binary.dtype == np.float32
    np.testing.assert_array_equal(binary, (images.reshape(7, 20) >= 128).astype(np.float32))
    assert binary[0, :3].tolist() == [0.0, 1.0, 1.0]


def test_plain_idx_header_bytes(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "images"
    write_idx(path, images)
    data = path.read_bytes()
    assert data[:16] == bytes.fromhex("00000803 00000007 00000004 00000005")
    assert len(data) == 16 + images.size


def test_gzip_is_detected_by_content_not_name(
    tmp_path: Path, images: np.ndarray, labels: np.ndarray
) -> None:
    zipped = tmp_path / "images.gz"
    write_idx(zipped, images)
    renamed = zipped.rename(tmp_path / "images-idx3-ubyte")
    plain_named_gz = tmp_path / "labels.idx1.gz"
    plain_named_gz.write_bytes(gzip.decompress(_gz_bytes(tmp_path, labels)))
    x, y = mnist_idx(renamed, plain_named_gz, normalize=False)
    np.testing.assert_array_equal(x, images.reshape(7, 20))
    np.testing.assert_array_equal(y, labels)


def _gz_bytes(tmp_path: Path, array: np.ndarray) -> bytes:
    path = tmp_path / "tmp.gz"
    write_idx(path, array)
    return path.read_bytes()


def test_gzip_output_is_deterministic(tmp_path: Path, images: np.ndarray) -> None:
    assert _gz_bytes(tmp_path, images) == _gz_bytes(tmp_path, images)


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(
        np.uint8,
        st.one_of(
            hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=30),
            hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=6),
        ),
    ),
    st.booleans(),
)
def test_round_trip_any_shape(array: np.ndarray, zipped: bool) -> None:
    import tempfile

    # hypothesis reruns the body many times, so it cannot share pytest's function-scoped tmp_path.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("a.gz" if zipped else "a")
        write_idx(path, array)
        data = path.read_bytes()
        if zipped:
            data = gzip.decompress(data)
        assert data[3] == array.ndim
        if array.ndim == 3:
            out = mnist_idx(path, normalize=False)
            n, rows, cols = array.shape
            np.testing.assert_array_equal(out, array.reshape(n, rows * cols))


# --- errors ---------------------------------------------------------------------------------


def _raises(match: str, *paths: Path) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        mnist_idx(*paths)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(paths[-1]) in message or str(paths[0]) in message
    assert "\n" not in message
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    _raises("does not exist", tmp_path / "nope-idx3-ubyte")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _raises("is a directory", tmp_path)


def test_png_is_not_idx(tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    path.write_bytes(PNG_HEADER + bytes(40))
    _raises(r"is not an IDX file \(it starts with bytes 89 50 4e 47", path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    _raises("0 bytes, too few for an IDX header", path)


def test_labels_passed_as_images(tmp_path: Path, labels: np.ndarray) -> None:
    path = tmp_path / "labels"
    write_idx(path, labels)
    _raises(r"magic 0x00000801.*magic 0x00000803.*did you swap the image and label paths", path)


def test_images_passed_as_labels(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "images"
    write_idx(path, images)
    _raises("did you swap", path, path)


def test_wrong_dimension_count(tmp_path: Path) -> None:
    path = tmp_path / "two-d"
    path.write_bytes(bytes.fromhex("00000802 00000002 00000003") + bytes(6))
    _raises(r"has 2 dimensions \(magic 0x00000802\) but images need 3", path)


def test_unsupported_value_type(tmp_path: Path) -> None:
    path = tmp_path / "floats"
    path.write_bytes(bytes.fromhex("00000d03 00000001 00000001 00000001") + bytes(4))
    _raises("holds float32 values.*only unsigned bytes", path)


def test_truncated_data(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "images"
    write_idx(path, images)
    path.write_bytes(path.read_bytes()[:-5])
    _raises(r"is truncated: its header declares shape \(7, 4, 5\) \(140 bytes\) but only 135", path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(bytes.fromhex("00000803 00000007 0000"))
    _raises(r"truncated inside its header \(10 of 16 bytes\)", path)


def test_trailing_bytes(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "images"
    write_idx(path, images)
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    _raises("has 2 bytes after the 140", path)


def test_truncated_gzip(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(_gz_bytes(tmp_path, images)[:-10])
    _raises("corrupt or truncated", path)


def test_count_mismatch(tmp_path: Path, images: np.ndarray) -> None:
    image_file = tmp_path / "images.gz"
    label_file = tmp_path / "labels.gz"
    write_idx(image_file, images)
    write_idx(label_file, np.zeros(6, dtype=np.uint8))
    error = _raises("holds 6 labels but image file .* holds 7 images", image_file, label_file)
    assert str(image_file) in str(error)
    assert str(label_file) in str(error)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 3, 3), dtype=np.float32), "float32 array"),
        (np.zeros((2, 3), dtype=np.uint8), "2-D array"),
        (np.zeros((1, 2, 3, 3), dtype=np.uint8), "4-D array"),
    ],
)
def test_write_idx_refuses_what_it_cannot_write(
    tmp_path: Path, array: np.ndarray, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        write_idx(tmp_path / "x", array)
    assert not (tmp_path / "x").exists()
