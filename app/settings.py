"""Every ``GRIDSCOPE_*`` setting the app reads, read once into one typed, frozen value.

`Settings.from_env` reads the environment once (when ``gridscope serve`` starts, or an
`app.explorer.Explorer` is made; `app.runtime` keeps the result); each value is checked
and a malformed one is refused with a `SettingsError` naming the variable and what is
allowed, rather than silently replaced by a default. Command-line flags override the
environment (``serve``'s limits: `app.limits.Limits.from_options`; others:
`app.runtime.Runtime.update_settings`). Nothing is ever written back to the environment.

Variables read elsewhere, on purpose: the app passes ``GRIDSCOPE_CATALOG`` to
``data_catalog.load_catalog`` (`app.sources`), which also reads it when called without a
path (the ``catalog`` command, library use); ``GRIDSCOPE_DERIVED_DIR`` is read by
``pipelines.derived`` (those packages never import the app, and the derived-store
folder must be found the same way by ``gridscope build``, the server and Dask workers,
which have no `Runtime`); ``GRIDSCOPE_MAX_BYTES`` is the planner's budget for library
use (`pipelines.planner.Plan.compute`, which may run on a worker); the cluster's
``DASK_*`` variables are read by `pipelines.cluster.ClusterSpec.from_env`;
``GRIDSCOPE_ALLOW_WEBSOCKET_ORIGIN`` by `app.jupyter_proxy.allowed_origins`, which runs in
the Jupyter server's process (it starts gridscope, with the origins as a flag).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Settings", "SettingsError", "argument_type"]


class SettingsError(ValueError):
    """A ``GRIDSCOPE_*`` variable has a value that is not allowed (one line, in words)."""


class _Invalid(ValueError):
    """What a setting's parser expected (the message, written here)."""


def _size(text: str) -> int:
    from app.limits import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError:
        raise _Invalid("expected a positive size such as 2GB, 500MiB or 1e9") from None


def _number(expected: str, *, least: float, above: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers ``>= least`` (``> least`` when ``above``) that says
    ``expected`` about anything else."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _Invalid(expected) from None
        if not math.isfinite(value) or value < least or (above and value == least):
            raise _Invalid(expected)
        return value

    return parse


_seconds = _number("expected a number of seconds, 0 or more", least=0)
_positive_seconds = _number("expected a positive number of seconds", least=0, above=True)
_rate = _number("expected bytes per second, a positive number such as 2e8", least=0, above=True)
_at_least_one = _number("expected a whole number of at least 1", least=1)


def _whole(text: str) -> int:
    value = _at_least_one(text)
    if value != int(value):
        raise _Invalid("expected a whole number of at least 1")
    return int(value)


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise _Invalid("expected 1 or 0 (true/false, yes/no, on/off)")


def _text(text: str) -> str:
    return text.strip()


def _field(var: str, parse: Callable[[str], Any], default: Any, doc: str) -> Any:
    return dataclasses.field(default=default, metadata={"var": var, "parse": parse, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Settings:
    """The app's settings (defaults here; ``GRIDSCOPE_<NAME>`` in the environment).

    Each field's ``metadata`` names its variable and says what it sets.
    """

    inprocess_bytes: int = _field("GRIDSCOPE_INPROCESS_BYTES", _size, 32 * 2**20,
        "jobs reading less input than this run in-process, not on the Dask cluster")  # fmt: skip
    fallback_bytes: int = _field("GRIDSCOPE_FALLBACK_BYTES", _size, 256 * 10**6,
        "input up to which a job runs in-process while the cluster is unavailable")  # fmt: skip
    reconnect_interval: float = _field("GRIDSCOPE_RECONNECT_INTERVAL", _positive_seconds, 2.0,
        "seconds between tries to reconnect to a lost Dask scheduler")  # fmt: skip
    ask_bytes: int = _field("GRIDSCOPE_ASK_BYTES", _size, 256 * 10**6,
        "a series reading more than this waits for the user's go-ahead")  # fmt: skip
    read_rate: float | None = _field("GRIDSCOPE_READ_RATE", _rate, None,
        "bytes per second quoted for long reads (unset: measured on recent jobs)")  # fmt: skip
    small_grid_cells: int = _field("GRIDSCOPE_SMALL_GRID_CELLS", _whole, 600_000,
        "maps of grids of at most this many cells are kept whole and cropped in-process")  # fmt: skip
    max_time_options: int = _field("GRIDSCOPE_MAX_TIME_OPTIONS", _whole, 5000,
        "a time axis with more steps is picked with a text box, not a drop-down")  # fmt: skip
    sync_bytes: int = _field("GRIDSCOPE_SYNC_BYTES", _size, 2 * 2**20,
        "views reading less than this are computed without a progress message")  # fmt: skip
    webgl: bool = _field("GRIDSCOPE_WEBGL", _flag, False, "draw plots with WebGL")
    warm_up_seconds: float = _field("GRIDSCOPE_WARM_UP_SECONDS", _seconds, 20.0,
        "seconds serve waits for datasets to open before it listens")  # fmt: skip
    max_request_bytes: int | None = _field("GRIDSCOPE_MAX_REQUEST_BYTES", _size, None,
        "bytes one request may read (--max-request-bytes)")  # fmt: skip
    max_concurrent: int | None = _field("GRIDSCOPE_MAX_CONCURRENT", _whole, None,
        "computations running at once (--max-concurrent)")  # fmt: skip
    request_timeout: float | None = _field("GRIDSCOPE_REQUEST_TIMEOUT", _positive_seconds, None,
        "seconds one computation may run (--request-timeout)")  # fmt: skip
    max_bytes: int | None = _field("GRIDSCOPE_MAX_BYTES", _size, None,
        "the planner's budget for gridscope export (--max-bytes)")  # fmt: skip
    api_json_cells: int = _field("GRIDSCOPE_API_JSON_CELLS", _whole, 250_000,
        "largest map a map.json answer holds")  # fmt: skip
    api_max_queued: int = _field("GRIDSCOPE_API_MAX_QUEUED", _whole, 16,
        "API computations that may wait for a slot before more get 429")  # fmt: skip
    api_max_age: int = _field("GRIDSCOPE_API_MAX_AGE", _whole, 3600,
        "Cache-Control max-age of catalog datasets' API answers, seconds")  # fmt: skip
    cache_memory_bytes: int = _field("GRIDSCOPE_CACHE_MEMORY_BYTES", _size, 256 * 10**6,
        "bytes of answers each server process keeps in memory")  # fmt: skip
    cache_bytes: int = _field("GRIDSCOPE_CACHE_BYTES", _size, 10**9,
        "bytes of answers kept in the directory shared by the server processes")  # fmt: skip
    cache_dir: str = _field("GRIDSCOPE_CACHE_DIR", _text, "",
        "the shared answer directory (empty: under the system temp dir; off: none)")  # fmt: skip
    catalog: str = _field("GRIDSCOPE_CATALOG", _text, "",
        "catalog YAML (empty: the bundled one)")  # fmt: skip
    num_procs: int = _field("GRIDSCOPE_NUM_PROCS", _whole, 1,
        "server processes gridscope serve forks on one port (--num-procs)")  # fmt: skip

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The settings in ``environ`` (unset or empty: the default).

        Raises
        ------
        SettingsError
            For the first malformed value: ``GRIDSCOPE_X='…': expected …``.
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            var = field.metadata["var"]
            text = environ.get(var)
            if text is None or not text.strip():
                continue
            try:
                values[field.name] = field.metadata["parse"](text)
            except _Invalid as invalid:
                raise SettingsError(f"{var}={text.strip()[:40]!r}: {invalid.args[0]}") from None
        return cls(**values)

    @property
    def cache_directory(self) -> str | None:
        """The shared answer directory, or None when ``GRIDSCOPE_CACHE_DIR=off``."""
        from app.answer_cache import default_directory

        if self.cache_dir.lower() == "off":
            return None
        return self.cache_dir or default_directory()

    @staticmethod
    def variables() -> dict[str, str]:
        """``{variable: what it sets}`` for every setting (for ``--help`` and the docs)."""
        return {f.metadata["var"]: f.metadata["doc"] for f in dataclasses.fields(Settings)}


def argument_type(name: str) -> Callable[[str], Any]:
    """The parser of the setting ``name`` (a `Settings` field) as an argparse ``type``:
    the flag and its ``GRIDSCOPE_*`` variable accept the same values, in the same words."""
    import argparse

    parse = next(f.metadata["parse"] for f in dataclasses.fields(Settings) if f.name == name)

    def argument(text: str) -> Any:
        try:
            return parse(text)
        except _Invalid as invalid:
            raise argparse.ArgumentTypeError(f"{text[:40]!r}: {invalid.args[0]}") from None

    return argument
