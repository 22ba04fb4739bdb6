"""Codec measurement for the derived stores: encode/decode MB/s (one thread) and ratio.

``python -m tests.bench.codecs`` builds one real build unit's worth of arrays from the
synthetic 0.25-degree generator (the raw float32 field, a pyramid mean field, float64
block sums / sums of squares and int32 counts as the aggregates store them, float64
time-series region sums) and times each candidate codec on them, single-threaded, as a
build worker or a reader uses it. Prints a table and writes JSON
(``bench-results/codecs.json``); the numbers cited in `pipelines.build` come from here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _samples(steps: int) -> dict[str, np.ndarray]:
    from pipelines.aggregates import block_stats
    from pipelines.pyramid import coarsen_fields
    from pipelines.synthetic import SyntheticSpec, _cell_area, synthetic_field

    spec = SyntheticSpec(nsteps=steps, resolution=0.25)
    values = synthetic_field(spec, "t2m", np.arange(steps), spec.lat, spec.lon)
    area = _cell_area(spec.lat, spec.lon, spec.resolution)
    lev1 = coarsen_fields(values, area, 1)[0]
    stats = block_stats(values, values[0].astype("float64"), steps)
    sst = synthetic_field(spec, "sst", np.arange(1), spec.lat, spec.lon)
    ts = np.ascontiguousarray(values[:, 320:352, 640:672])  # one time-series chunk
    with np.errstate(invalid="ignore", divide="ignore"):
        ts_mean = (lev1["wsum"] / lev1["warea"]).astype("float32")
    return {
        "raw float32 (1 step)": values[:1],
        "ts values float32 (steps x 32 x 32)": ts,
        "ts L1 mean float32": ts_mean[:2],
        "ts L1 area float32": lev1["warea"][:2].astype("float32"),
        "raw sst float32 (NaN land)": sst,
        "pyramid L1 mean float32": lev1["mean"][:4],
        "agg sum float64": stats.sum,
        "agg m2 float32": stats.m2.astype("float32"),
        "agg count int32": stats.count,
        "ts L1 wsum float64": lev1["wsum"][:2],
        "ts L1 warea float64": lev1["warea"][:2],
    }


def _codecs() -> dict[str, Any]:
    from numcodecs import Blosc, Zstd

    return {
        "none": None,
        "blosc-lz4 c5 shuffle": Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE),
        "blosc-lz4 c1 shuffle": Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE),
        "blosc-lz4 c5 bitshuffle": Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE),
        "blosc-lz4 c1 bitshuffle": Blosc(cname="lz4", clevel=1, shuffle=Blosc.BITSHUFFLE),
        "blosc-zstd c1 shuffle": Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE),
        "blosc-zstd c1 bitshuffle": Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE),
        "blosc-zstd c3 shuffle": Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE),
        "zstd c3 (no shuffle)": Zstd(level=3),
    }


def _time(fn: Any, repeat: int) -> float:
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return float(np.median(best))


def measure(steps: int = 8, repeat: int = 5) -> list[dict[str, Any]]:
    from numcodecs import blosc

    blosc.set_nthreads(
        1
    )  # per-thread figures: build workers and readers run one codec call per thread
    rows = []
    for name, arr in _samples(steps).items():
        arr = np.ascontiguousarray(arr)
        for cname, codec in _codecs().items():
            if codec is None:
                enc_s = _time(lambda a=arr: a.tobytes(), repeat)
                dec_s = enc_s
                size = arr.nbytes
            else:
                encoded = codec.encode(arr)
                size = len(encoded)
                enc_s = _time(lambda c=codec, a=arr: c.encode(a), repeat)
                dec_s = _time(lambda c=codec, e=encoded: c.decode(e), repeat)
            rows.append(
                {
                    "array": name,
                    "codec": cname,
                    "mb": round(arr.nbytes / 1e6, 2),
                    "ratio": round(arr.nbytes / size, 3),
                    "encode_mb_s": round(arr.nbytes / 1e6 / enc_s),
                    "decode_mb_s": round(arr.nbytes / 1e6 / dec_s),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.codecs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="bench-results/codecs.json")
    args = parser.parse_args(argv)
    rows = measure(args.steps, args.repeat)
    header = ("array", "codec", "MB", "ratio", "encode MB/s", "decode MB/s")
    table = [header] + [
        (r["array"], r["codec"], r["mb"], r["ratio"], r["encode_mb_s"], r["decode_mb_s"])
        for r in rows
    ]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
