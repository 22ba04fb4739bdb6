"""Lossless codecs for the time-series copy (``timeseries/<var>/values``), measured.

``python -m tests.bench.ts_codecs`` cuts each dataset into the copy's chunks (``steps x
32 x 32`` cells, float32, as `pipelines.build._layout` lays them out) and times each
candidate on every chunk, single-threaded as a build worker or reader runs blosc:
today's blosc-lz4 clevel 5 + bit shuffle on the float32 values, blosc-zstd, and the
float32 bit patterns as int32 with an exact (wrap-around) delta or an XOR with the
previous step along time before the same compressors. Prints bytes relative to today's
codec and encode / decode CPU seconds per MB of float32 data; every variant is checked
to decode bit for bit (NaNs included).

Datasets: the bench store's synthetic t2m / sst (``bench-data``, when present) and the
real NOAA files of ``--data`` (``/work/shared/data``): Navy monthly winds (132 steps),
COADS and NCL SST monthly climatologies (12 steps: chunks of 12). ``pcodec`` variants
run when the package is importable (not a gridscope dependency).

Result (2026-11-27, bytes / today's, decode CPU vs today's): an exact int32 delta or XOR
along time saves nothing (Navy winds 0.98-1.00, synthetic t2m/sst 1.01-1.04 with lz4,
0.97-1.01 with zstd) and decodes ~7x slower (numpy cumsum / accumulate); the float32
mantissa's low bits, not the smooth signal, are what stays incompressible. blosc-zstd
clevel 3 with byte shuffling: Navy winds 0.92-0.94, synthetic 0.95-0.99, COADS 0.80-0.83
(12 steps); pcodec level 8: Navy winds 0.88-0.89, synthetic 0.88-0.93, COADS 0.76-0.78,
NCL SST (2-decimal values) 0.31, decoding as fast as today but encoding ~10x slower.
No variant reaches the 15% saving on the real 64-step data that a change needed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numcodecs
import numcodecs.blosc
import numpy as np
import xarray as xr

numcodecs.blosc.use_threads = False  # as zarr runs blosc


def _delta(x: np.ndarray) -> np.ndarray:
    i = x.view("int32")
    out = i.copy()
    np.subtract(i[1:], i[:-1], out=out[1:])  # int32 arithmetic wraps: exact
    return out


def _undelta(d: np.ndarray) -> np.ndarray:
    return np.cumsum(d, axis=0, dtype="int32").view("float32")


def _xor(x: np.ndarray) -> np.ndarray:
    i = x.view("int32")
    out = i.copy()
    np.bitwise_xor(i[1:], i[:-1], out=out[1:])
    return out


def _unxor(d: np.ndarray) -> np.ndarray:
    return np.bitwise_xor.accumulate(d, axis=0).view("float32")


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _time_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(1, 2, 0))


def _time_first(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _xdelta(x: np.ndarray) -> np.ndarray:
    i = x.view("int32")
    out = i.copy()
    np.subtract(i[..., 1:], i[..., :-1], out=out[..., 1:])
    return out


def _unxdelta(d: np.ndarray) -> np.ndarray:
    return np.cumsum(d, axis=-1, dtype="int32").view("float32")


class _Pcodec:
    """numcodecs' PCodec (``pip install pcodec``), when installed."""

    def __init__(self, level: int):
        from numcodecs.pcodec import PCodec

        self.codec = PCodec(level=level)

    def encode(self, x: np.ndarray) -> bytes:
        return self.codec.encode(x)

    def decode(self, b: bytes) -> np.ndarray:
        return self.codec.decode(b)


def _blosc(cname: str, clevel: int, shuffle: int = numcodecs.Blosc.BITSHUFFLE) -> numcodecs.Blosc:
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffle)


_Variant = tuple[Callable, Callable, numcodecs.Blosc]

VARIANTS: dict[str, _Variant] = {
    "f32 lz4-5 (today)": (_same, _same, _blosc("lz4", 5)),
    "f32 zstd-1": (_same, _same, _blosc("zstd", 1)),
    "f32 zstd-3": (_same, _same, _blosc("zstd", 3)),
    "f32 zstd-9": (_same, _same, _blosc("zstd", 9)),
    "f32 zstd-3 byteshuf": (_same, _same, _blosc("zstd", 3, numcodecs.Blosc.SHUFFLE)),
    "delta lz4-5": (_delta, _undelta, _blosc("lz4", 5)),
    "delta zstd-1": (_delta, _undelta, _blosc("zstd", 1)),
    "delta zstd-3": (_delta, _undelta, _blosc("zstd", 3)),
    "xor lz4-5": (_xor, _unxor, _blosc("lz4", 5)),
    "xor zstd-1": (_xor, _unxor, _blosc("zstd", 1)),
    "lon-delta lz4-5": (_xdelta, _unxdelta, _blosc("lz4", 5)),
    "time-last lz4-5": (_time_last, _time_first, _blosc("lz4", 5)),
    "time-last zstd-1": (_time_last, _time_first, _blosc("zstd", 1)),
}
try:
    VARIANTS["pcodec-4"] = (_same, _same, _Pcodec(4))
    VARIANTS["pcodec-8"] = (_same, _same, _Pcodec(8))
    VARIANTS["time-last pcodec-8"] = (_time_last, _time_first, _Pcodec(8))
except ImportError:
    pass


def _chunks(values: np.ndarray, steps: int, max_chunks: int) -> list[np.ndarray]:
    """The ``steps x 32 x 32`` chunks of (time, y, x) ``values`` (whole ones only), at
    most ``max_chunks`` spread evenly over them."""
    nt, ny, nx = values.shape
    out = [
        np.ascontiguousarray(values[t : t + steps, i : i + 32, j : j + 32], "float32")
        for t in range(0, nt - steps + 1, steps)
        for i in range(0, ny - 31, 32)
        for j in range(0, nx - 31, 32)
    ]
    if len(out) > max_chunks:
        out = [out[k] for k in np.linspace(0, len(out) - 1, max_chunks).astype(int)]
    return out


def _datasets(data: Path, bench: Path) -> Iterator[tuple[str, list[np.ndarray]]]:
    store = bench / "demo-1GB-0.25deg.append.zarr"
    if store.exists():
        ds = xr.open_zarr(store, consolidated=False)
        for var in ("t2m", "sst"):
            values = ds[var].isel(time=slice(0, 64)).values
            yield f"bench {var} (synthetic, 64 steps)", _chunks(values, 64, 120)
    files = [
        ("monthly_navy_winds.cdf", ("UWND", "VWND"), 64),
        ("coads_climatology.cdf", ("SST", "AIRT", "SLP", "WSPD"), 12),
        ("grids/sstdata_netcdf.nc", ("sst",), 12),
    ]
    for name, names, steps in files:
        path = data / name
        if not path.exists():
            continue
        ds = xr.open_dataset(path, decode_times=False)
        for var in names:
            values = ds[var].values
            yield f"{path.stem} {var} (real, chunks of {steps})", _chunks(values, steps, 400)


def measure(chunks: list[np.ndarray], repeat: int = 3) -> dict[str, tuple[float, float, float]]:
    """Per variant: bytes / today's bytes, encode and decode CPU s per MB of float32."""
    mb = sum(c.nbytes for c in chunks) / 1e6
    out: dict[str, tuple[float, float, float]] = {}
    for name, (forward, inverse, codec) in VARIANTS.items():
        t = time.process_time()
        for _ in range(repeat):
            encoded = [codec.encode(forward(c)) for c in chunks]
        enc = (time.process_time() - t) / repeat / mb
        dtype = "int32" if forward in (_delta, _xor, _xdelta) else "float32"
        shapes = [forward(c).shape for c in chunks]
        t = time.process_time()
        for _ in range(repeat):
            decoded = [
                inverse(np.frombuffer(codec.decode(e), dtype).reshape(s))
                for e, s in zip(encoded, shapes, strict=True)
            ]
        dec = (time.process_time() - t) / repeat / mb
        for a, b in zip(chunks, decoded, strict=True):
            assert np.array_equal(a.view("int32"), b.view("int32")), name
        out[name] = (sum(len(e) for e in encoded), enc, dec)
    base = out["f32 lz4-5 (today)"][0]
    return {k: (n / base, e, d) for k, (n, e, d) in out.items()} | {
        "_base": (base / 1e6 / mb, 0, 0)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--bench", type=Path, default=Path("bench-data"))
    args = parser.parse_args()
    for label, chunks in _datasets(args.data, args.bench):
        result = measure(chunks)
        ratio = result.pop("_base")[0]
        mb = sum(c.nbytes for c in chunks) / 1e6
        print(f"\n{label}: {len(chunks)} chunks, {mb:.1f} MB; today {ratio:.3f} x float32")
        print(f"  {'variant':<20} {'bytes/today':>11} {'enc s/MB':>9} {'dec s/MB':>9}")
        for name, (rel, enc, dec) in result.items():
            print(f"  {name:<20} {rel:>11.3f} {enc:>9.4f} {dec:>9.4f}")


if __name__ == "__main__":
    main()
