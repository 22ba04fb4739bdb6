"""Pydantic models describing a gridscope catalog file.

A catalog is a YAML mapping with an ``entries`` list; each entry describes one
dataset: where it lives (``urlpath``), how to read it (``format``, ``open_options``,
``storage_options``), what it may be used for (``license``, ``attribution``) and which
derived stores a builder has already made for it (``derived``). Unknown fields are
rejected (``extra="forbid"``) so that a typo in a hand-written catalog is reported
instead of silently ignored.
"""

import re
from typing import Any, Literal

import fsspec.core
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from data_catalog.errors import UnknownDatasetError

__all__ = ["ALLOWED_PROTOCOLS", "Catalog", "CatalogEntry", "DatasetFormat"]

#: URL schemes a catalog ``urlpath`` may use; no scheme means a local path.
ALLOWED_PROTOCOLS: tuple[str, ...] = ("file", "http", "https", "s3", "gs", "gcs")

DatasetFormat = Literal["netcdf", "zarr"]

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")


class CatalogEntry(BaseModel):
    """One dataset of the catalog.

    Attributes
    ----------
    id
        Slug used in URLs and on the command line (``[a-z0-9][a-z0-9_-]*``).
    title, description
        Human-readable name and a sentence or two shown in the dataset picker.
    urlpath
        Local path (relative paths are resolved against the catalog file's folder by
        :func:`data_catalog.load_catalog`), a glob of netCDF files, or a ``file://``,
        ``https://``, ``s3://`` or ``gs://`` URL.
    format
        ``"netcdf"`` or ``"zarr"`` (zarr format 2 or 3).
    open_options
        Keyword arguments passed on to the xarray opener (e.g. ``engine``).
    storage_options
        Keyword arguments passed on to fsspec (e.g. ``{"anon": True}``).
    license, attribution
        Terms of use and the credit line shown with every view.
    derived
        Names of derived stores made by the batch builders (``"pyramid"``,
        ``"aggregates"``, ``"timeseries"``...) mapped to their paths or URLs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str = Field(min_length=1)
    description: str = ""
    urlpath: str = Field(min_length=1)
    format: DatasetFormat
    open_options: dict[str, Any] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    license: str = Field(min_length=1)
    attribution: str = ""
    derived: dict[str, str] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid id; use lowercase letters, digits, '-' and '_', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("urlpath")
    @classmethod
    def _urlpath_protocol_is_known(cls, value: str) -> str:
        protocol, _ = fsspec.core.split_protocol(value)
        if protocol is not None and protocol not in ALLOWED_PROTOCOLS:
            allowed = ", ".join(f"{p}://" for p in ALLOWED_PROTOCOLS)
            raise ValueError(
                f"unsupported protocol {protocol!r} in {value!r}; use a local path or one of {allowed}"
            )
        return value

    @property
    def protocol(self) -> str | None:
        """The fsspec protocol of :attr:`urlpath`, or ``None`` for a plain local path."""
        return fsspec.core.split_protocol(self.urlpath)[0]


class Catalog(BaseModel):
    """A list of :class:`CatalogEntry` with unique ids.

    Use :meth:`get` to look an entry up by id; :attr:`ids` lists them in file order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: list[CatalogEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> "Catalog":
        first_index: dict[str, int] = {}
        for index, entry in enumerate(self.entries):
            if entry.id in first_index:
                raise ValueError(
                    f"entry {entry.id!r}: field 'id': duplicate id {entry.id!r} "
                    f"(entries #{first_index[entry.id]} and #{index}); ids must be unique"
                )
            first_index[entry.id] = index
        return self

    @property
    def ids(self) -> list[str]:
        """Entry ids in catalog order."""
        return [entry.id for entry in self.entries]

    def __contains__(self, dataset_id: object) -> bool:
        return any(entry.id == dataset_id for entry in self.entries)

    def get(self, dataset_id: str) -> CatalogEntry:
        """Return the entry with id ``dataset_id``.

        Raises
        ------
        data_catalog.errors.UnknownDatasetError
            When no entry has that id; the message lists the known ids.
        """
        for entry in self.entries:
            if entry.id == dataset_id:
                return entry
        known = ", ".join(self.ids) or "(the catalog is empty)"
        raise UnknownDatasetError(f"unknown dataset id {dataset_id!r}; known ids: {known}")
