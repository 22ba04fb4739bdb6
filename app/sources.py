"""Where the app's datasets come from: catalog entries and extra sources, opened once.

`DatasetSources` is the one object the app asks for "which datasets are there" and
"give me dataset X". The opener is injected (``opener=``), so tests drive the app on
small synthetic datasets, and the catalog opener of `data_catalog` is used when it
is installed. Opened datasets are cached per process and shared across sessions:
they are lazy, so the cache holds metadata, not data.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import xarray as xr

__all__ = ["DatasetInfo", "DatasetSources", "VariableInfo", "is_remote", "time_labels"]

Opener = Callable[[str], xr.Dataset]


@dataclasses.dataclass(frozen=True)
class VariableInfo:
    """What the sidebar shows about one data variable."""

    name: str
    long_name: str
    units: str
    levels: tuple[float, ...] = ()
    has_time: bool = True
    level_units: str = ""

    @property
    def label(self) -> str:
        units = f" ({self.units})" if self.units else ""
        return f"{self.long_name}{units}"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Metadata of one opened dataset: variables and time labels."""

    id: str
    title: str
    variables: Mapping[str, VariableInfo]
    times: tuple[str, ...]
    climatology: bool
    attribution: str = ""
    remote: bool = False
    #: units of a numbered step axis ("Month"; "step" without units); "" for dates
    time_units: str = ""


def time_labels(index: Any, climatology: bool) -> tuple[str, ...]:
    """Labels for each time step that `pipelines.Query` selects that step by.

    `pipelines.selection.step_labels`: month names for climatologies, ``YYYY-MM-DD``
    for daily and coarser data, ``YYYY-MM-DDTHH:MM`` for sub-daily data, the value
    on a numbered step axis.
    """
    from pipelines.selection import step_labels

    return step_labels(index, climatology) if index is not None else ()


class DatasetSources:
    """Catalog entries plus extra sources, each opened lazily at most once.

    Parameters
    ----------
    entries
        ``{id: title}`` in display order.
    opener
        ``opener(id) -> xarray.Dataset`` returning a normalised dataset.
    attributions
        Optional ``{id: attribution line}``.
    """

    def __init__(
        self,
        entries: Mapping[str, str],
        opener: Opener,
        attributions: Mapping[str, str] | None = None,
    ):
        if not entries:
            raise ValueError("no datasets to serve")
        self.entries = dict(entries)
        self._opener = opener
        self._attributions = dict(attributions or {})
        self._datasets: dict[str, xr.Dataset] = {}
        self._infos: dict[str, DatasetInfo] = {}
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}  # one lock per dataset being opened
        #: ids of catalog entries stored elsewhere (opening them needs the network)
        self.remote_ids: frozenset[str] = frozenset()

    # --- construction ------------------------------------------------------------
    @classmethod
    def from_datasets(cls, datasets: Mapping[str, xr.Dataset]) -> DatasetSources:
        """Sources backed by in-memory datasets (tests, notebooks)."""
        titles = {k: str(ds.attrs.get("title", k)) for k, ds in datasets.items()}
        return cls(titles, lambda key: datasets[key])

    @classmethod
    def from_catalog(
        cls, catalog_path: str | None = None, extra: Sequence[str] = ()
    ) -> DatasetSources:
        """The catalog's entries plus ``extra`` paths.

        Remote entries (``gs://``, ``s3://``, ``https://``...) come after the local ones,
        titled "... (remote)": a server without network lists them all the same, and
        opening one there says in words that it cannot be reached.
        """
        catalog = _load_catalog(catalog_path)
        entries: dict[str, str] = {}
        remote: dict[str, str] = {}
        attributions: dict[str, str] = {}
        for entry in catalog.entries:
            attributions[entry.id] = getattr(entry, "attribution", "") or ""
            if is_remote(entry.urlpath):
                remote[entry.id] = f"{entry.title} (remote)"
            else:
                entries[entry.id] = entry.title
        entries.update(remote)
        for path in extra:
            entries[path] = _extra_title(path)
        sources = cls(entries, _catalog_opener(catalog, catalog_path), attributions)
        sources.remote_ids = frozenset(remote)
        return sources

    # --- access --------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return list(self.entries)

    def title(self, dataset_id: str) -> str:
        return self.entries.get(dataset_id, dataset_id)

    def open(self, dataset_id: str) -> xr.Dataset:
        """The normalised dataset; raises `KeyError` with a message for unknown ids."""
        if dataset_id not in self.entries:
            raise KeyError(f"unknown dataset {dataset_id!r}; available: {', '.join(self.entries)}")
        opened = self._datasets.get(dataset_id)
        if opened is not None and not _grew(opened):  # no lock: others never block this
            return opened
        with self._lock:
            lock = self._opening.setdefault(dataset_id, threading.Lock())
        with lock:
            if opened is not None and self._datasets.get(dataset_id) is opened:
                # 'gridscope build' appended new steps: re-open to see them
                del self._datasets[dataset_id]
                self._infos.pop(dataset_id, None)
            if dataset_id not in self._datasets:
                self._datasets[dataset_id] = self._opener(dataset_id)
            return self._datasets[dataset_id]

    def is_loaded(self, dataset_id: str) -> bool:
        """Whether ``dataset_id`` is opened and described already (`info` then costs no IO)."""
        return dataset_id in self._infos

    def info(self, dataset_id: str) -> DatasetInfo:
        if dataset_id in self._infos:
            return self._infos[dataset_id]
        ds = self.open(dataset_id)
        climatology = bool(ds.attrs.get("gridscope_climatology", False))
        variables: dict[str, VariableInfo] = {}
        # the horizontal dims of any grid: (lat, lon), (y, x) or (cell,) (data_catalog.grid)
        spatial = {"lat", "lon"}
        if {"lon", "lat"} <= set(ds.variables):
            spatial = {*ds["lon"].dims, *ds["lat"].dims}
        for name, da in ds.data_vars.items():
            if not spatial <= set(da.dims):
                continue
            has_levels = "level" in da.dims
            levels = tuple(float(v) for v in ds["level"].values) if has_levels else ()
            variables[str(name)] = VariableInfo(
                name=str(name),
                long_name=str(da.attrs.get("long_name", name)),
                units=str(da.attrs.get("units", "")),
                levels=levels,
                has_time="time" in da.dims,
                level_units=str(ds["level"].attrs.get("units", "")) if has_levels else "",
            )
        times = time_labels(ds.indexes["time"], climatology) if "time" in ds.dims else ()
        info = DatasetInfo(
            id=dataset_id,
            title=self.title(dataset_id),
            variables=variables,
            times=times,
            climatology=climatology,
            attribution=self._attributions.get(dataset_id, ""),
            remote=dataset_id in self.remote_ids,
            time_units=_numbered_step_units(ds),
        )
        self._infos[dataset_id] = info
        return info


def _grew(ds: xr.Dataset) -> bool:
    """Whether the source of ``ds`` gained time steps that its derived stores hold
    (`pipelines.derived.source_grew`); datasets made in memory never do."""
    if not ds.attrs.get("gridscope_source"):
        return False
    from pipelines.derived import source_grew

    return source_grew(ds)


def _numbered_step_units(ds: xr.Dataset) -> str:
    """Units of a numbered step axis (no dates), "step" without units; "" otherwise."""
    from pipelines.selection import time_axis_is_numeric

    if not time_axis_is_numeric(ds):
        return ""
    return str(ds["time"].attrs.get("units", "")).strip() or "step"


def _extra_title(source: str) -> str:
    """Title of an extra SOURCE: the file name, or what a ``virtual:`` source holds."""
    if source.startswith("virtual:"):
        from pipelines.synthetic import SyntheticSpec

        try:
            spec = SyntheticSpec.from_source(source)
        except ValueError:
            return source  # opening it says what is wrong
        return (f"Synthetic ERA5-like {spec.freq} {spec.resolution:g}° "
                f"({spec.nbytes / 1e12:.2f} TB, virtual)")  # fmt: skip
    return os.path.basename(source.rstrip("/")) or source


def _load_catalog(path: str | None) -> Any:
    """The catalog at ``path``, else the runtime's ``GRIDSCOPE_CATALOG``, else the bundled one."""
    from app.runtime import current
    from data_catalog import load_catalog

    return load_catalog(path or current().settings.catalog or None)


def is_remote(urlpath: str) -> bool:
    """Whether a catalog ``urlpath`` names data on another machine (needs the network)."""
    return "://" in urlpath and not urlpath.startswith("file://")


_DEFAULT_HOSTS = {"gs": "storage.googleapis.com", "gcs": "storage.googleapis.com",
                  "s3": "s3.amazonaws.com", "az": "blob.core.windows.net"}  # fmt: skip


def _check_reachable(urlpath: str, timeout: float = 3.0) -> None:
    """Fail in words, within ``timeout`` seconds, when a remote store's host is unreachable.

    Without this an offline server would wait on the storage library's retries (tens of
    seconds) and then show its low-level error.
    """
    import socket
    from urllib.parse import urlsplit

    from data_catalog.errors import DatasetOpenError

    parts = urlsplit(urlpath)
    host = parts.hostname if parts.scheme in ("http", "https") else _DEFAULT_HOSTS.get(parts.scheme)
    if not host:
        return  # an unknown protocol: let the opener say what it can
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            reason = "its name cannot be resolved"
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = type(exc).__name__
        raise DatasetOpenError(
            f"it is a remote dataset ({parts.scheme}://{parts.netloc or host}) and this server "
            f"cannot reach {host} ({reason}); it needs a network connection."
        ) from None


def _catalog_opener(catalog: Any, catalog_path: str | None) -> Opener:
    from data_catalog import open_dataset

    remote = {e.id: e.urlpath for e in catalog.entries if is_remote(e.urlpath)}

    def opener(key: str) -> xr.Dataset:
        if key.startswith("virtual:"):  # a synthetic source of any size, chunks computed on read
            from pipelines.build import open_source

            return open_source(key)
        if key in remote:
            _check_reachable(remote[key])
        return open_dataset(key, catalog=catalog)

    return opener
