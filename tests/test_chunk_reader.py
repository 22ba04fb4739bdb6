"""`pipelines.chunk_reader`: whole-chunk reads equal zarr's own, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

from pipelines.chunk_reader import read, reader


def _array(root, name, dtype, shuffle="bitshuffle", codecs=None):
    shape, chunks = (37, 23, 41), (8, 5, 16)
    arr = zarr.create_array(
        str(root / f"{name}.zarr"),
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=np.nan if np.dtype(dtype).kind == "f" else 7,
        compressors=None if codecs else BloscCodec(cname="lz4", clevel=5, shuffle=shuffle),
        serializer=codecs or "auto",
    )
    rng = np.random.default_rng(1)
    data = rng.normal(280, 20, shape) if np.dtype(dtype).kind == "f" else rng.integers(0, 99, shape)
    data = data.astype(dtype)
    if data.dtype.kind == "f":
        data[data < 262] = np.nan
    arr[...] = data
    # one chunk left without a file: reads as the fill value, as in zarr
    arr[8:16, 5:10, 16:32] = arr.fill_value
    return arr


@pytest.mark.parametrize(
    ("dtype", "shuffle"), [("float32", "bitshuffle"), ("float64", "shuffle"), ("int32", "shuffle")]
)
def test_reads_equal_zarr(tmp_path, dtype, shuffle) -> None:
    arr = _array(tmp_path, "a", dtype, shuffle)
    fast = reader(arr)
    assert fast is not None
    rng = np.random.default_rng(2)
    selections = [(slice(None),) * 3, (slice(8, 16), slice(5, 10), slice(16, 32))]
    for _ in range(40):
        sel = []
        for n in arr.shape:
            a = int(rng.integers(0, n))
            sel.append(slice(a, int(rng.integers(a + 1, n + 1))))
        selections.append(tuple(sel))
    for sel in selections:
        want = arr[sel]
        got = read(arr, fast, sel)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # the pieces, placed where they say, make the selection
    sel = selections[-1]
    out = np.zeros(arr[sel].shape, arr.dtype)
    for where, part in fast.pieces(sel):
        out[where] = part
    np.testing.assert_array_equal(out, arr[sel])


def test_other_codecs_keep_zarrs_path(tmp_path) -> None:
    arr = zarr.create_array(
        str(tmp_path / "z.zarr"),
        shape=(4, 4),
        chunks=(2, 2),
        dtype="float32",
        compressors=ZstdCodec(level=1),
    )
    arr[...] = np.arange(16, dtype="float32").reshape(4, 4)
    assert reader(arr) is None
    np.testing.assert_array_equal(read(arr, None, (slice(1, 3), slice(0, 4))), arr[1:3, 0:4])
    big = zarr.create_array(
        str(tmp_path / "b.zarr"),
        shape=(4, 4),
        chunks=(2, 2),
        dtype="float32",
        serializer=BytesCodec(endian="big"),
        compressors=BloscCodec(),
    )
    assert reader(big) is None
    memory = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), dtype="float32")
    assert reader(memory) is None
