"""The one answer cache: maps, series and API bodies, shared by sessions, requests and processes.

A computed answer is a pure function of its query, the stores' version and the code, so
it is computed once and then served to every visitor for the cost of a lookup. Two tiers:

- **memory**: a byte-bounded LRU in this process (``GRIDSCOPE_CACHE_MEMORY_BYTES``,
  default 256 MB); a hit returns the very object that was stored.
- **disk**: one directory shared by every server process on the machine
  (``GRIDSCOPE_CACHE_DIR``, default ``<system temp>/gridscope-answers-<uid>``; ``off``
  disables it), bounded in bytes (``GRIDSCOPE_CACHE_BYTES``, default 1 GB). Each entry is
  one file named by the key's hash, holding ``(key, value)`` pickled; it is written to a
  temporary file in the same directory and `os.replace`-d into place, so a reader sees
  the whole old file, the whole new file or none, never a partial one, whatever other
  processes do meanwhile. A hit touches the file's modification time; after each write
  the oldest-touched entries are removed until the directory holds at most the bound.
  Two processes may both compute a missing answer and both write it: the last rename
  wins and both files hold the same answer. The directory is the user's own (mode 0700,
  checked on start): its pickles are trusted, so in a folder others can write to (a
  Kubernetes ``emptyDir``) the private subfolder ``gridscope-<uid>`` is used, and when
  that is not the user's own either the cache stays in memory.

Keys (`answer_key`) hash what the answer depends on: the kind of answer, the normalised
query and view, the stores' version (`store_version`: file metadata and the derived
stores' version) and the code's version (`code_version`: the gridscope version and the
contents of its source files, so an edited checkout never serves an older answer).
An answer about an in-memory dataset (no file behind it) gets a key starting with
``local:``: it is kept in memory only, since another process's dataset of the same name
may hold other numbers.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import os
import pickle
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from typing import Any

import xarray as xr

__all__ = [
    "AnswerCache",
    "answer_key",
    "code_version",
    "default_directory",
    "gridscope_version",
    "store_version",
]

log = logging.getLogger("gridscope.answer_cache")

_SUFFIX = ".answer"
_TEMP_PREFIX = ".writing-"
#: Seconds after which a temporary file is a crashed writer's leftover (removed on eviction).
_STALE_TEMP_SECONDS = 600.0


def default_directory() -> str:
    """``<system temp dir>/gridscope-answers-<uid>``: one per user, shared by their servers."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"gridscope-answers-{uid}")


def _nbytes(value: Any) -> int:
    """Bytes a value holds in memory (an array's data, a body's length)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    body = getattr(value, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        coords = getattr(value, "coords", None)
        extra = sum(int(c.nbytes) for c in coords.values()) if coords is not None else 0
        return int(nbytes) + extra
    return 1024


class AnswerCache:
    """A byte-bounded in-memory LRU in front of a byte-bounded directory shared by processes.

    Parameters
    ----------
    memory_bytes
        Bound on the bytes held in this process (0: no memory tier).
    directory
        The shared directory (created, mode 0700), or None for memory only.
    disk_bytes
        Bound on the bytes of the directory's entries (0: no disk tier).

    An answer larger than a quarter of a tier's bound is not kept in that tier, so one
    huge answer cannot flush every popular one.
    """

    def __init__(
        self, memory_bytes: int, directory: str | None = None, disk_bytes: int = 0
    ) -> None:
        self.memory_bytes = max(int(memory_bytes), 0)
        self.disk_bytes = max(int(disk_bytes), 0)
        self.directory = _usable_directory(directory) if directory and self.disk_bytes else None
        self._items: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0  # memory hits
        self.disk_hits = 0
        self.misses = 0

    # --- the memory tier --------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes held in this process's memory tier."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Any | None:
        """The answer stored under ``key`` (memory, else the shared directory), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
        value = self._disk_get(key)
        with self._lock:
            if value is None:
                self.misses += 1
                return None
            self.disk_hits += 1
        self._memory_put(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key`` in memory and, unless ``local:``, in the directory."""
        self._memory_put(key, value)
        if not key.startswith("local:"):
            self._disk_put(key, value)

    def clear(self) -> None:
        """Forget this process's memory tier (the shared directory is left to the others)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _memory_put(self, key: str, value: Any) -> None:
        size = _nbytes(value)
        if size * 4 > self.memory_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.memory_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    # --- the shared directory ------------------------------------------------------------
    def _path(self, key: str) -> str:
        assert self.directory is not None
        name = hashlib.sha256(key.encode()).hexdigest()
        return os.path.join(self.directory, name + _SUFFIX)

    def _disk_get(self, key: str) -> Any | None:
        if self.directory is None or key.startswith("local:"):
            return None
        path = self._path(key)
        try:
            with open(path, "rb") as file:
                stored_key, value = pickle.load(file)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001  (an unreadable entry is a miss, and removed)
            log.warning("answer cache: dropping unreadable entry %s (%s)", path, exc)
            _remove(path)
            return None
        if stored_key != key:  # a hash collision: not this answer
            return None
        try:
            os.utime(path)  # the access that eviction goes by
        except OSError:
            pass
        return value

    def _disk_put(self, key: str, value: Any) -> None:
        if self.directory is None:
            return
        try:
            blob = pickle.dumps((key, value), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001  (an answer that cannot be stored stays local)
            log.warning("answer cache: cannot store %r on disk (%s)", key[:80], exc)
            return
        if len(blob) * 4 > self.disk_bytes:
            return
        try:
            fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(blob)
                os.replace(temp, self._path(key))
            except BaseException:
                _remove(temp)
                raise
        except OSError as exc:  # a full disk: the answer stays in memory
            log.warning("answer cache: cannot write to %s (%s)", self.directory, exc)
            return
        self._evict()

    def _evict(self) -> None:
        """Remove the oldest-touched entries until the directory is within its bound."""
        assert self.directory is not None
        entries = []
        now = time.time()
        try:
            with os.scandir(self.directory) as scan:
                for entry in scan:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue  # removed by another process meanwhile
                    if entry.name.startswith(_TEMP_PREFIX):
                        if now - st.st_mtime > _STALE_TEMP_SECONDS:
                            _remove(entry.path)
                        continue
                    if entry.name.endswith(_SUFFIX):
                        entries.append((st.st_mtime_ns, st.st_size, entry.path))
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.disk_bytes:
                break
            _remove(path)
            total -= size

    def disk_usage(self) -> int:
        """Bytes of the entries in the shared directory now (0 without one)."""
        if self.directory is None:
            return 0
        total = 0
        with os.scandir(self.directory) as scan:
            for entry in scan:
                if entry.name.endswith(_SUFFIX):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        pass
        return total


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _usable_directory(directory: str) -> str | None:
    """``directory`` (created, mode 0700) if it is the user's own and only theirs; in a
    folder others may write to (a Kubernetes ``emptyDir`` is mode 0777) the private
    subfolder ``gridscope-<uid>``; None (memory only) when neither is usable."""
    if _private(directory, create=True):
        return directory
    uid = os.getuid() if hasattr(os, "getuid") else 0
    inner = os.path.join(directory, f"gridscope-{uid}")
    if _private(inner, create=True):
        return inner
    log.warning(
        "answer cache: %s belongs to another user or others may write to it; "
        "keeping answers in memory",
        inner,
    )
    return None


def _private(directory: str, *, create: bool) -> bool:
    try:
        if create:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
    except OSError as exc:
        log.warning("answer cache: %s is not usable (%s)", directory, exc)
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    return not hasattr(os, "getuid") or (st.st_uid == os.getuid() and not st.st_mode & 0o022)


# --- keys ---------------------------------------------------------------------------------
@functools.cache
def gridscope_version() -> str:
    """The installed gridscope version (``0+unknown`` in a plain checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gridscope")
    except PackageNotFoundError:  # pragma: no cover  (a plain checkout)
        return "0+unknown"


@functools.cache
def code_version() -> str:
    """The gridscope version plus a hash of its source files' contents.

    An editable install keeps one version number while its code changes: an answer
    computed by older code must not be served by a newer one. Contents, not file times,
    so that every machine running the same code gives the same ETags (found once per
    process: a few milliseconds).
    """
    import app
    import data_catalog
    import pipelines

    digest = hashlib.sha256(gridscope_version().encode())
    for package in (app, pipelines, data_catalog):
        root = os.path.dirname(os.path.abspath(package.__file__ or ""))
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".yaml")):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as file:
                        digest.update(hashlib.sha256(file.read()).digest())
    return f"{gridscope_version()}+{digest.hexdigest()[:16]}"


def store_version(ds: xr.Dataset) -> str:
    """What changes when the data behind ``ds`` changes (cheap: file metadata only).

    The derived stores' version (their folder and manifest time) when there are any,
    plus the source file's modification time and size (a zarr folder: its metadata
    file's), or the source's name for a generated ``virtual:`` source. Any other dataset
    (made in memory, or a remote store whose change cannot be seen this cheaply) is
    versioned by its identity in this process (``memory=``): answers about it are never
    kept on disk or shared with other processes, and die with the opened dataset.
    """
    from pipelines.derived import find_derived

    parts = []
    derived = find_derived(ds)
    if derived is not None:
        parts.append(f"derived={derived.version}")
    source = ds.encoding.get("source")
    if not source:
        source = next((v.encoding.get("source") for v in ds.data_vars.values()
                       if v.encoding.get("source")), None)  # fmt: skip
    source = source or str(ds.attrs.get("gridscope_source", ""))
    stamp = "no-file"
    for path in (source, os.path.join(source, "zarr.json"), os.path.join(source, ".zmetadata")):
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        stamp = f"{st.st_mtime_ns}:{st.st_size}"
    parts.append(f"source={source}:{stamp}")
    if stamp == "no-file" and not source.startswith("virtual:"):
        parts.append(f"memory={id(ds)}")  # an in-memory dataset: valid for this process
    return "|".join(parts)


def answer_key(kind: str, version: str, parts: Iterable[Any]) -> str:
    """The cache key of an answer of ``kind`` about data of store ``version``.

    ``parts`` (the normalised query's JSON, the view, the screen...) are written out
    with `repr`; the code's version is included. ``local:`` when the data has no file
    (see `store_version`).
    """
    text = "\n".join([kind, version, code_version(), *(repr(p) for p in parts)])
    digest = hashlib.sha256(text.encode()).hexdigest()
    return ("local:" if "memory=" in version else "") + f"{kind}:{digest}"
