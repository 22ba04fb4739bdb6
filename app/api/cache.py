"""A small answer cache for the HTTP API: finished response bodies, bounded in bytes.

Keyed by the answer's strong ETag (which already hashes the endpoint, the normalised
query, the store version and the gridscope version), so a popular link is computed once
per process and the thousandth visitor costs a dictionary lookup. Least recently used
answers are dropped first once the total exceeds the byte bound
(``GRIDSCOPE_API_CACHE_BYTES``, default 64 MiB); an answer larger than a quarter of the
bound is not kept at all, so one huge answer cannot flush every popular one.
"""

from __future__ import annotations

import collections
import dataclasses
import threading

__all__ = ["Answer", "AnswerCache"]


@dataclasses.dataclass(frozen=True)
class Answer:
    """One finished response: its body, media type and cache headers."""

    body: bytes
    content_type: str
    etag: str
    cache_control: str


class AnswerCache:
    """Thread-safe LRU of `Answer` values bounded by the sum of their body sizes.

    Parameters
    ----------
    max_bytes
        Bound on the bytes of bodies kept (0 disables the cache).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max(int(max_bytes), 0)
        self._items: collections.OrderedDict[str, Answer] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes of bodies held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Answer | None:
        """The answer stored under ``key`` (marked as recently used), or None."""
        with self._lock:
            answer = self._items.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, key: str, answer: Answer) -> None:
        """Keep ``answer``, dropping the least recently used ones beyond the bound."""
        size = len(answer.body)
        if size * 4 > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
            self._items[key] = answer
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped.body)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
