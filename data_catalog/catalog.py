"""Loading and validating catalog YAML files.

:func:`load_catalog` turns a YAML file into a :class:`~data_catalog.schema.Catalog`,
resolving relative local ``urlpath`` values against the catalog file's folder, and turns
every YAML or validation problem into a one-line :class:`~data_catalog.errors.CatalogError`
that names the file, the entry and the field.
"""

import os
from pathlib import Path
from typing import Any

import fsspec.core
import yaml
from pydantic import ValidationError

from data_catalog.errors import CatalogError
from data_catalog.schema import Catalog, CatalogEntry

__all__ = ["CATALOG_ENV_VAR", "DEFAULT_CATALOG_PATH", "load_catalog"]

#: Environment variable naming the catalog file used when no path is given.
CATALOG_ENV_VAR = "GRIDSCOPE_CATALOG"

#: The catalog bundled with the package (the NOAA samples plus public remote stores).
DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.yaml")


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Read and validate a catalog file.

    Parameters
    ----------
    path
        The YAML file. ``None`` means the file named by the ``GRIDSCOPE_CATALOG``
        environment variable when it is set, else the bundled ``catalog.yaml``.

    Returns
    -------
    Catalog
        Validated entries; relative local ``urlpath`` values are made absolute against
        the catalog file's folder so that the catalog works from any working directory.

    Raises
    ------
    CatalogError
        When the file is missing, is not YAML, or does not match the schema; the message
        names the file, the entry (id or position) and the field, and what is allowed.
    """
    if path is None:
        # the app passes its own setting (app.sources); this is for the CLI and library use
        path = os.environ.get(CATALOG_ENV_VAR) or DEFAULT_CATALOG_PATH
    catalog_path = Path(path).expanduser()
    try:
        text = catalog_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"{catalog_path}: catalog file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{catalog_path}: cannot read catalog file ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise CatalogError(f"{catalog_path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{catalog_path}: the top level must be a mapping with an 'entries' list, "
            f"got {_kind(raw)}"
        )
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_describe_validation_error(catalog_path, raw, exc)) from None
    folder = catalog_path.resolve().parent
    entries = [_resolve_local_urlpath(entry, folder) for entry in catalog.entries]
    return catalog.model_copy(update={"entries": entries})


def _resolve_local_urlpath(entry: CatalogEntry, folder: Path) -> CatalogEntry:
    derived = {name: _resolve_path(path, folder) for name, path in entry.derived.items()}
    return entry.model_copy(
        update={"urlpath": _resolve_path(entry.urlpath, folder), "derived": derived}
    )


def _resolve_path(urlpath: str, folder: Path) -> str:
    """A local path made absolute against the catalog's folder; URLs unchanged."""
    protocol, stripped = fsspec.core.split_protocol(urlpath)
    if protocol not in (None, "file"):
        return urlpath
    local = Path(stripped).expanduser()
    return str(local if local.is_absolute() else folder / local)


def _kind(value: Any) -> str:
    if value is None:
        return "an empty document"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value!r:.40})"


def _entry_label(raw: dict[str, Any], index: int) -> str:
    entries = raw.get("entries")
    if isinstance(entries, list) and index < len(entries):
        item = entries[index]
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            return f"entry {item['id']!r} (#{index})"
    return f"entry #{index}"


def _describe_validation_error(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    # One line: the first problem in full, then how many more there are.
    error = exc.errors()[0]
    loc = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    parts = [str(path)]
    if loc[:1] == ["entries"] and len(loc) >= 2 and isinstance(loc[1], int):
        parts.append(_entry_label(raw, loc[1]))
        field = ".".join(str(part) for part in loc[2:])
        if not field:
            allowed = ", ".join(CatalogEntry.model_fields)
            message = f"must be a mapping of fields ({allowed}), got {_kind(error['input'])}"
    else:
        field = ".".join(str(part) for part in loc)
    if field:
        parts.append(f"field {field!r}")
    if kind == "extra_forbidden":
        owner = CatalogEntry if len(loc) > 2 else Catalog
        message = f"unknown field; allowed fields: {', '.join(owner.model_fields)}"
    elif kind == "missing":
        message = "required field is missing"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return ": ".join(parts) + f": {message}{suffix}"
