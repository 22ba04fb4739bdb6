"""What bounds build throughput: CPU seconds per build unit, by stage, on a real store.

``python -m tests.bench.build_bounds SOURCE`` runs a few build units of ``SOURCE``
in this process (after one untimed unit: kernels loaded) with the writer made synchronous, so each stage's CPU time is its own
(thread CPU time, robust to other processes sharing the cores): reading + decoding the
source, the pyramid kernels, the aggregate kernels, and encoding + writing the derived
chunks (and, of that, blosc's encoding alone). It also counts the bytes a unit writes
per byte it reads. The throughput bound
on N cores is ``N * bytes_read / cpu_seconds`` (perfect overlap, nothing else running).

``--full`` then builds the whole source (a LocalCluster, as ``gridscope build``) into a
temporary folder and prints the build's MB/s and the bytes on disk per derived array
kind (store, array name; levels summed) against the raw variables' bytes on disk.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


class _TimedCodec:
    """A blosc codec whose ``encode`` adds its thread CPU to ``acc["of which blosc
    encode"]`` (the rest of "encode+write": copying chunks out of the slab, padding,
    creating the chunk files)."""

    def __init__(self, codec: Any, acc: dict[str, float]):
        self._codec, self._acc = codec, acc

    def encode(self, buf: Any) -> Any:
        t = time.thread_time()
        try:
            return self._codec.encode(buf)
        finally:
            key = "of which blosc encode"
            self._acc[key] = self._acc.get(key, 0.0) + time.thread_time() - t


def measure(
    source: str,
    units: list[int],
    unit_steps: int = 64,
    base_block: int = 8,
    options: dict[str, int] | None = None,
) -> dict[str, Any]:
    import pipelines.build as b
    from pipelines.build import BuildConfig, build_derived, open_source
    from pipelines.derived import DerivedStores

    cfg = BuildConfig(
        variables=("t2m",), unit_steps=unit_steps, base_block=base_block, **(options or {})
    ).for_grid(open_source(source))
    tmp = Path(tempfile.mkdtemp(prefix="gridscope-bounds-"))
    acc: dict[str, float] = {}
    written = {"bytes": 0, "raw": 0}
    saved = {
        name: getattr(b, name)
        for name in (
            "_read_steps",
            "coarsen_fields",
            "block_stats",
            "combine_stats",
            "_encode_write",
        )
    }

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[name] = acc.get(name, 0.0) + time.thread_time() - t

        return wrapper

    def encode_write(
        codec: Any, data: np.ndarray, sel: Any, chunks: Any, fill: Any, path: str, dirs: set
    ) -> None:
        saved["_encode_write"](_TimedCodec(codec, acc), data, sel, chunks, fill, path, dirs)
        written["bytes"] += Path(path).stat().st_size
        written["raw"] += int(np.prod(chunks)) * data.dtype.itemsize

    class _Done:
        def result(self) -> None:
            return None

    class _Inline:  # run each chunk job at once, on this thread, timed
        def submit(self, fn: Any, *args: Any) -> _Done:
            timed("encode+write", fn)(*args)
            return _Done()

        def shutdown(self) -> None:
            pass

    init = b._SlabWriter.__init__

    def inline_init(self: Any, threads: int = 2) -> None:
        init(self, threads)
        self._pool.shutdown()
        self._pool = _Inline()

    try:
        folder = build_derived(
            source, tmp, scheduler="synchronous", config=cfg, progress=False, stop_after_units=0
        )
        # one untimed unit first: numba's cached kernels load and the source opens, once
        # per worker in a real build, so they are no per-unit cost
        b._run_unit(source, str(DerivedStores(folder).data_folder), "t2m", units[0], cfg)
        b._read_steps = timed("read+decode", b._read_steps)
        b.coarsen_fields = timed("pyramid kernels", b.coarsen_fields)
        b.block_stats = timed("aggregate kernels", b.block_stats)
        b.combine_stats = timed("aggregate kernels", b.combine_stats)
        b._encode_write = encode_write
        b._SlabWriter.__init__ = inline_init
        nt = open_source(source).sizes["time"]
        data = DerivedStores(folder).data_folder  # the arrays of the version being built
        rows = []
        for u in units:
            if (u + 1) * unit_steps > nt:
                break
            acc.clear()
            written.update(bytes=0, raw=0)
            t, c = time.perf_counter(), time.process_time()
            nbytes = b._run_unit(source, str(data), "t2m", u, cfg)
            rows.append(
                {
                    "unit": u,
                    "bytes_read": nbytes,
                    "wall_s": round(time.perf_counter() - t, 3),
                    "cpu_s": round(time.process_time() - c, 3),
                    "stages_cpu_s": {k: round(v, 3) for k, v in acc.items()},
                    "bytes_written_raw": written["raw"],
                    "bytes_written_compressed": written["bytes"],
                }
            )
    finally:
        for name, fn in saved.items():
            setattr(b, name, fn)
        b._SlabWriter.__init__ = init
        shutil.rmtree(tmp, ignore_errors=True)
    if not rows:
        raise SystemExit(
            f"no complete unit of {unit_steps} steps among --units {units} "
            f"(the source has {nt} steps: units 0..{nt // unit_steps - 1})"
        )
    cpu = float(np.median([r["cpu_s"] for r in rows]))
    nbytes = rows[0]["bytes_read"]
    stages = {
        k: float(np.median([r["stages_cpu_s"].get(k, 0.0) for r in rows]))
        for k in rows[0]["stages_cpu_s"]
    }
    return {
        "units": rows,
        "median_cpu_s_per_unit": round(cpu, 3),
        "median_stage_cpu_s": {k: round(v, 3) for k, v in stages.items()},
        "out_in_ratio_raw": round(rows[0]["bytes_written_raw"] / nbytes, 2),
        "out_in_ratio_compressed": round(rows[0]["bytes_written_compressed"] / nbytes, 2),
        "bound_mb_per_s_2_cores": round(2 * nbytes / 1e6 / cpu, 1),
        "bound_without_encode_mb_per_s_2_cores": round(
            2 * nbytes / 1e6 / max(cpu - stages.get("encode+write", 0.0), 1e-9), 1
        ),
        "read_decode_only_mb_per_s_1_core": round(
            nbytes / 1e6 / max(stages.get("read+decode", 0.0), 1e-9), 1
        ),
        "encode_write_mb_out_per_s_1_core": round(
            rows[0]["bytes_written_raw"] / 1e6 / max(stages.get("encode+write", 1e-9), 1e-9), 1
        ),
    }


#: Candidate codecs of ``--codecs``: name -> numcodecs Blosc arguments (typesize: the
#: array's itemsize, as zarr passes it).
CODECS = {
    **{f"lz4-{lv}-{sh}": ("lz4", lv, sh, 0) for lv in (1, 3, 5, 9) for sh in ("byte", "bit")},
    "lz4-5-none": ("lz4", 5, "none", 0),
    "lz4-1-none": ("lz4", 1, "none", 0),
    "zstd-1-byte": ("zstd", 1, "byte", 0),
    "zstd-1-bit": ("zstd", 1, "bit", 0),
    "lz4-5-bit-bs256k": ("lz4", 5, "bit", 256 << 10),
    "lz4-5-byte-bs256k": ("lz4", 5, "byte", 256 << 10),
    "lz4-1-bit-bs256k": ("lz4", 1, "bit", 256 << 10),
}


def codec_table(
    source: str, unit: int, unit_steps: int = 64, base_block: int = 8, sample_mb: int = 24
) -> dict[str, Any]:
    """Encode CPU seconds (thread CPU) and compressed bytes of one unit's derived chunks,
    per array kind (``store/name``, levels summed) and candidate codec (`CODECS`).

    The unit's writes are captured, then each kind's chunks (evenly sampled, at most
    ``sample_mb`` raw MB per kind, scaled back up to the unit) are encoded exactly as
    `pipelines.build._encode_write` does, one thread, blosc's own threads off (as
    zarr sets them: ``numcodecs.blosc.use_threads = False``)."""
    from numcodecs import blosc
    from numcodecs.blosc import Blosc

    import pipelines.build as b
    from pipelines.build import BuildConfig, build_derived
    from pipelines.derived import DerivedStores

    cfg = BuildConfig(variables=("t2m",), unit_steps=unit_steps, base_block=base_block)
    cfg = cfg.for_grid(b.open_source(source))
    tmp = Path(tempfile.mkdtemp(prefix="gridscope-codecs-"))
    captured: list[tuple[str, np.ndarray, tuple[int, ...], int]] = []
    write = b._SlabWriter.write

    def capture(self: Any, arr: Any, start: int, data: np.ndarray) -> None:
        store = Path(str(arr.store.root)).name.removesuffix(".zarr")
        kind = f"{store}/{arr.path.rsplit('/', 1)[-1]}"
        captured.append((kind, data, tuple(int(c) for c in arr.chunks), start))

    try:
        folder = build_derived(
            source, tmp, scheduler="synchronous", config=cfg, progress=False, stop_after_units=0
        )
        b._SlabWriter.write = capture
        b._run_unit(source, str(DerivedStores(folder).data_folder), "t2m", unit, cfg)
    finally:
        b._SlabWriter.write = write
        shutil.rmtree(tmp, ignore_errors=True)
    parts: dict[str, list[np.ndarray]] = {}
    for kind, data, chunks, start in captured:
        ct = chunks[0]
        for c0 in range(start // ct, -(-(start + data.shape[0]) // ct)):
            block = data[c0 * ct - start : (c0 + 1) * ct - start]
            ranges = [range(0, data.shape[d], chunks[d]) for d in range(1, data.ndim)]
            for corner in np.ndindex(*(len(r) for r in ranges)):
                sel = tuple(
                    slice(r[i], r[i] + chunks[d + 1])
                    for d, (r, i) in enumerate(zip(ranges, corner, strict=True))
                )
                part = block[(slice(None), *sel)]
                if part.shape != chunks:  # padded with the fill value, as the writer does
                    full = np.full(chunks, 0 if data.dtype.kind in "iu" else np.nan, data.dtype)
                    full[tuple(slice(0, n) for n in part.shape)] = part
                    part = full
                parts.setdefault(kind, []).append(part)
    shuffles = {"none": Blosc.NOSHUFFLE, "byte": Blosc.SHUFFLE, "bit": Blosc.BITSHUFFLE}
    use_threads = blosc.use_threads
    blosc.use_threads = False
    table: dict[str, Any] = {}
    try:
        for kind, chunks_ in sorted(parts.items()):
            raw = sum(p.nbytes for p in chunks_)
            step = max(1, round(raw / (sample_mb << 20)))
            sample = [np.ascontiguousarray(p).view("uint8").reshape(-1) for p in chunks_[::step]]
            scale = raw / sum(s.nbytes for s in sample)
            row: dict[str, Any] = {
                "raw_mb": round(raw / 1e6, 1),
                "dtype": str(chunks_[0].dtype),
                "chunk_kb": chunks_[0].nbytes >> 10,
            }
            for name, (cname, clevel, shuffle, blocksize) in CODECS.items():
                codec = Blosc(
                    cname, clevel, shuffles[shuffle], blocksize, typesize=chunks_[0].itemsize
                )
                t = time.thread_time()
                nbytes = sum(len(codec.encode(s)) for s in sample)
                cpu = time.thread_time() - t
                row[name] = {"mb": round(nbytes * scale / 1e6, 2), "cpu_s": round(cpu * scale, 3)}
            table[kind] = row
    finally:
        blosc.use_threads = use_threads
    return table


def _print_codecs(table: dict[str, Any]) -> None:
    names = list(CODECS)
    print(f"{'kind':<22}{'raw MB':>8}  " + "  ".join(f"{n:>17}" for n in names))
    for kind, row in table.items():
        cells = "  ".join(f"{row[n]['mb']:8.1f}/{row[n]['cpu_s']:7.3f}s" for n in names)
        print(f"{kind:<22}{row['raw_mb']:>8}  {cells}")
    total = {
        n: (sum(r[n]["mb"] for r in table.values()), sum(r[n]["cpu_s"] for r in table.values()))
        for n in names
    }
    print(f"{'total':<22}{'':>8}  " + "  ".join(f"{mb:8.1f}/{c:7.3f}s" for mb, c in total.values()))


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def derived_bytes(data: Path) -> dict[str, dict[str, int]]:
    """Bytes on disk under a derived data folder per array kind (``store/name``, levels
    summed) and per array (``store/var/path``), chunk files and metadata."""
    kinds: dict[str, int] = {}
    arrays: dict[str, int] = {}
    for meta in sorted(data.glob("*.zarr/**/zarr.json")):
        array_dir = meta.parent
        try:
            if '"node_type": "array"' not in meta.read_text():
                continue
        except OSError:
            continue
        rel = array_dir.relative_to(data).parts  # store.zarr, var, [L<l>], name
        store = rel[0].removesuffix(".zarr")
        name = rel[-1]
        nbytes = _tree_bytes(array_dir)
        kind = f"{store}/{name}"
        kinds[kind] = kinds.get(kind, 0) + nbytes
        arrays["/".join((store, *rel[1:]))] = nbytes
    if (data / "cells").is_dir():
        kinds["cells/grid"] = _tree_bytes(data / "cells")
    return {"kinds": kinds, "arrays": arrays}


def full_build(source: str, variables: tuple[str, ...], base_block: int = 8) -> dict[str, Any]:
    """Build ``variables`` of ``source`` whole (a LocalCluster) into a temporary folder:
    MB/s, and bytes on disk per derived array kind against the raw variables' bytes."""
    import os

    from pipelines.build import BuildConfig, build_derived
    from pipelines.derived import DerivedStores

    tmp = Path(tempfile.mkdtemp(prefix="gridscope-full-"))
    try:
        t = time.perf_counter()
        config = BuildConfig(variables=variables, base_block=base_block)
        folder = build_derived(source, tmp, config=config, progress=False)
        seconds = time.perf_counter() - t
        manifest = json.loads((folder / "manifest.json").read_text())
        sizes = derived_bytes(DerivedStores(folder).data_folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw = sum(_tree_bytes(Path(source) / v) for v in variables if (Path(source) / v).is_dir())
    derived = sum(sizes["kinds"].values())
    return {
        "variables": list(variables),
        "load_before": os.getloadavg(),
        "seconds": round(seconds, 1),
        "build": manifest.get("last_build", {}),
        "raw_bytes": raw,
        "derived_bytes": derived,
        "derived_over_raw": round(derived / max(raw, 1), 3),
        "bytes_per_kind": dict(sorted(sizes["kinds"].items(), key=lambda kv: -kv[1])),
        "bytes_per_array": sizes["arrays"],
    }


def _print_full(result: dict[str, Any]) -> None:
    raw = result["raw_bytes"]
    print(
        f"full build of {', '.join(result['variables'])}: {result['seconds']} s, "
        f"{result['build'].get('mb_per_s')} MB/s (load before {result['load_before'][0]:.2f}); "
        f"raw {raw / 1e6:.1f} MB on disk, derived {result['derived_bytes'] / 1e6:.1f} MB "
        f"= {result['derived_over_raw']:.3f}x raw"
    )
    for kind, nbytes in result["bytes_per_kind"].items():
        print(f"  {kind:<28} {nbytes / 1e6:10.1f} MB  {nbytes / max(raw, 1):6.3f}x raw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.build_bounds", description=__doc__.splitlines()[0]
    )
    parser.add_argument("source")
    parser.add_argument("--units", default="1,2,3,4")
    parser.add_argument("--out", default="bench-results/build_bounds.json")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also build the whole source and print bytes on disk per derived array kind",
    )
    parser.add_argument("--variables", default="t2m", help="variables of --full (comma list)")
    parser.add_argument(
        "--base-block", type=int, default=8, help="shortest aggregate block (BuildConfig)"
    )
    parser.add_argument(
        "--config",
        default="",
        help="other BuildConfig integers, e.g. max_level=3,ts_tile=32 (default: a build's)",
    )
    parser.add_argument(
        "--codecs",
        action="store_true",
        help="instead: encode CPU and bytes per derived array kind and candidate codec",
    )
    args = parser.parse_args(argv)
    if args.codecs:
        table = codec_table(args.source, int(args.units.split(",")[0]), base_block=args.base_block)
        _print_codecs(table)
        out = Path(args.out).with_name("build_codecs.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=1))
        return 0
    options = {k: int(v) for k, v in (kv.split("=") for kv in args.config.split(",") if kv)}
    result = measure(
        args.source,
        [int(u) for u in args.units.split(",")],
        base_block=args.base_block,
        options=options,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "units"}, indent=1))
    if args.full:
        result["full"] = full_build(
            args.source, tuple(args.variables.split(",")), base_block=args.base_block
        )
        _print_full(result["full"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
