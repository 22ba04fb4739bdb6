"""Derived stores on any fsspec location (``s3://``, ``gs://``, ``memory://``, local).

A build always runs into a local staging folder (`pipelines.build.build_derived`: the
units' many small writes, resumability, hard links for appends, the atomic local
manifest swap all need a file system), then `publish_to` copies the published version
to the location:

1. the version's data folder ``data-<id>/`` is uploaded, only the files that changed
   since the last upload from this staging folder (an append uploads the new chunks,
   not the whole store); progress markers stay local;
2. ``manifest.json`` is written last, as one small object. One PUT of an object is
   atomic on object stores (readers get the old or the new object, never a part), so
   readers switch from one complete version to the next exactly as with the local
   ``os.replace``; until then they keep reading the previous data folder, which is
   left in place (older ones are removed after the next publish).

Readers (`pipelines.derived.DerivedStores`) open a remote location's manifest and
zarr arrays through fsspec (zarr v3 opens a URL with its ``FsspecStore``); the
manifest is re-read at most every `MANIFEST_TTL_S` seconds. Only regular-grid stores
can be read remotely: the cell stores of non-regular grids (`pipelines.cell_stores`)
read ``cells/`` files with numpy and are refused at publish time.

Why not Icechunk: it is not installed here, and plain zarr plus one manifest keeps the
stores readable by any zarr reader; the manifest swap gives the same all-or-nothing
visibility on object stores, without history.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_TTL_S",
    "build_derived_at",
    "build_to",
    "is_url",
    "join",
    "publish_to",
    "read_text",
    "staging_root",
    "upload_version",
    "write_remote_manifest",
]

#: Seconds a reader keeps a remote manifest before reading it again.
MANIFEST_TTL_S = 1.0

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL of an fsspec file system other than ``file://``."""
    match = _SCHEME.match(str(location))
    return match is not None and match.group(1).lower() != "file"


def join(location: str | os.PathLike[str], *parts: str) -> Any:
    """``location`` / ``parts``: a `Path` for a local folder, a ``/``-joined URL else."""
    if not is_url(location):
        text = str(location)
        return Path(text[len("file://") :] if text.startswith("file://") else text).joinpath(*parts)
    return "/".join([str(location).rstrip("/"), *[p.strip("/") for p in parts if p]])


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(url)


def read_text(location: str | os.PathLike[str]) -> str:
    """The text of a file at a local path or URL (FileNotFoundError when absent)."""
    if not is_url(location):
        return Path(join(location)).read_text()
    fs, path = _fs(str(location))
    return fs.cat_file(path).decode()


def staging_root(location: str) -> Path:
    """The local folder builds for ``location`` run in (kept: resumable, and an append
    uploads only what changed). ``$GRIDSCOPE_STAGING_DIR`` or the user's cache."""
    base = os.environ.get("GRIDSCOPE_STAGING_DIR") or Path.home() / ".cache" / "gridscope"
    digest = hashlib.sha1(location.encode()).hexdigest()[:12]
    return Path(base) / "staging" / digest


_UPLOADED = ".uploaded.json"


def upload_version(staging: Path, remote: str) -> dict[str, Any]:
    """Upload the data folder of ``staging``'s published version to the derived folder
    ``remote`` (files changed since the last upload only) and return the manifest to
    write last (`write_remote_manifest`). Readers see nothing of it until then.

    Raises
    ------
    ValueError
        When nothing is published in ``staging``, or the stores are cell stores of a
        non-regular grid (read locally only).
    """
    manifest = json.loads((staging / "manifest.json").read_text())
    data = str(manifest.get("data") or "")
    if not data:
        raise ValueError(f"{staging}: no published version to upload")
    if any(v.get("layout") == "cells" for v in manifest.get("variables", {}).values()):
        raise ValueError(
            "derived stores of non-regular grids can only be kept on a local disk; "
            "give 'gridscope build --out' a local folder for this source"
        )
    fs, root = _fs(remote)
    record_path = staging / _UPLOADED
    try:
        record = json.loads(record_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        record = {}
    if record.get("remote") != remote:
        record = {"remote": remote, "files": {}}
    files: dict[str, list[int]] = record["files"]
    local = staging / data
    for folder, dirs, names in os.walk(local):
        rel = Path(folder).relative_to(local)
        if rel.parts[:1] == ("progress",):
            dirs[:] = []
            continue
        for name in names:
            path = Path(folder) / name
            key = str(Path(data) / rel / name)
            info = path.stat()
            stamp = [info.st_size, info.st_mtime_ns, info.st_ino]
            if files.get(key) == stamp:
                continue
            fs.pipe_file(f"{root.rstrip('/')}/{key}", path.read_bytes())
            files[key] = stamp
    record_path.write_text(json.dumps(record))
    return manifest


def write_remote_manifest(remote: str, manifest: dict[str, Any]) -> None:
    """Make ``manifest`` the version readers of ``remote`` see: one object written
    whole, then data folders no longer named (but the one just replaced, which
    readers may still be using until they re-read the manifest) are removed."""
    fs, root = _fs(remote)
    root = root.rstrip("/")
    try:
        before = json.loads(fs.cat_file(f"{root}/manifest.json"))
    except FileNotFoundError:
        before = {}
    fs.pipe_file(f"{root}/manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    keep = {str(manifest.get("data")), str(before.get("data"))}
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("data-") and name not in keep:
            fs.rm(entry, recursive=True)


def publish_to(staging: Path, remote: str) -> dict[str, Any]:
    """Copy ``staging``'s published version to ``remote``: data first, manifest last."""
    manifest = upload_version(staging, remote)
    write_remote_manifest(remote, manifest)
    return manifest


def build_to(source: str, remote: str, **build_options: Any) -> str:
    """Build ``source``'s derived stores in its local staging folder for ``remote`` (a
    derived folder URL, `pipelines.derived.derived_dir_for`) and publish them there.

    ``build_options`` go to `pipelines.build.build_derived`; with ``stop_after_units``
    nothing is published (a partial build stays in staging, resumed by the next call).
    Returns ``remote``, which this process's planner then uses for ``source``.
    """
    from pipelines.build import build_derived
    from pipelines.derived import register_derived

    staging = build_derived(source, staging_root(remote), **build_options)
    if build_options.get("stop_after_units") is not None:
        return remote
    publish_to(staging, remote)
    register_derived(source, remote)  # not the staging folder build_derived registered
    return remote


def build_derived_at(source: str, out: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """`pipelines.build.build_derived` for wherever ``source``'s stores live
    (`pipelines.derived.derived_dir_for`: ``out``, ``$GRIDSCOPE_DERIVED_DIR``, next to
    the source): a local folder is built in place (its `Path` returned), a URL through
    `build_to` (the URL returned)."""
    from pipelines.build import build_derived
    from pipelines.derived import derived_dir_for

    target = derived_dir_for(source, out)
    if is_url(target):
        return build_to(source, target, **options)
    return build_derived(source, None if out is None else join(out), **options)
