"""The bench's storage and append figures (`tests.bench.run`) on a tiny store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from pipelines.build import BuildConfig, build_derived
from pipelines.synthetic import SyntheticSpec, write_demo_store
from tests.bench.run import append_section, derived_bytes, disk_bytes, store_fields

CONFIG = BuildConfig(max_level=1, ts_max_level=2, base_block=4, unit_steps=8, variables=("t2m",))


def _blocks(files: list[Path]) -> int:
    inodes = {f.stat().st_ino: f.stat().st_blocks * 512 for f in files}
    return sum(inodes.values())


def test_bytes_count_the_published_version_once(tmp_path: Path) -> None:
    raw = write_demo_store(SyntheticSpec(nsteps=24, resolution=6.0), tmp_path / "r.zarr",
                           progress=False)  # fmt: skip
    folder = build_derived(str(raw), tmp_path / "d", scheduler="synchronous", config=CONFIG,
                           progress=False)  # fmt: skip
    data = folder / json.loads((folder / "manifest.json").read_text())["data"]
    # an older version and a hard link inside the published one: neither counts extra
    (folder / "data-old").mkdir()
    (folder / "data-old" / "big").write_bytes(os.urandom(1 << 20))
    first = next(p for p in data.rglob("*") if p.is_file())
    os.link(first, data / "a-link")
    want = _blocks([p for p in data.rglob("*") if p.is_file()])
    assert derived_bytes(folder) == want > 0
    assert disk_bytes(raw) == _blocks([p for p in raw.rglob("*") if p.is_file()])
    fields = store_fields(raw, folder, {"bytes_read": 4_000_000, "seconds": 2.0}, True, ("t2m",))
    assert fields["build_mb_per_s"] == 2.0
    assert fields["raw_bytes_built"] == _blocks(
        [p for p in (raw / "t2m").rglob("*") if p.is_file()]
    )
    assert fields["derived_to_raw"] == round(want / fields["raw_bytes"], 3)


def test_append_section_builds_appends_and_checks(tmp_path: Path) -> None:
    raw = write_demo_store(SyntheticSpec(nsteps=40, resolution=6.0), tmp_path / "r.zarr",
                           progress=False)  # fmt: skip

    def build(source: str) -> Path:
        return build_derived(source, scheduler="synchronous", config=CONFIG, progress=False)

    grow, fields = append_section(raw, 40, 8, build, reuse=False)
    # the copy holds the raw store's steps, its first ones hard links to the raw chunks
    xr.testing.assert_identical(xr.open_zarr(grow)["t2m"].load(), xr.open_zarr(raw)["t2m"].load())
    assert os.path.samefile(
        grow / "t2m" / "c" / "0" / "0" / "0", raw / "t2m" / "c" / "0" / "0" / "0"
    )
    assert not os.path.samefile(
        grow / "t2m" / "c" / "39" / "0" / "0", raw / "t2m" / "c" / "39" / "0" / "0"
    )
    manifest = json.loads((Path(str(grow) + ".gridscope") / "manifest.json").read_text())
    assert manifest["fingerprint"]["nsteps"] == 40
    assert manifest["last_build"]["appended_from"] == 32
    assert fields["append_from"] == 32 and fields["append_units"] == 1
    assert fields["build"]["bytes_read"] == 32 * np.prod(xr.open_zarr(raw)["t2m"].shape[1:]) * 4
    assert fields["build_fresh"] and fields["append_seconds"] > 0
    assert "temporal aggregates" in fields["append_check"]
    # a reusing run reports the recorded figures, without building
    again, reused = append_section(raw, 40, 8, lambda s: 1 / 0, reuse=True)
    assert again == grow and not reused["build_fresh"]
    assert reused["append_seconds"] == fields["append_seconds"]
