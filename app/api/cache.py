"""What the API keeps of a finished answer: its body, media type and cache headers.

Answers are kept in the one answer cache (`app.answer_cache`, on the runtime), keyed by
`app.api.answers.cache_key` (the strong ETag, which already hashes the endpoint, the
normalised query, the store version and the code's version), beside the dashboard's
maps and series and shared with the other server processes, so a popular link is
computed once and the thousandth visitor costs a lookup.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Answer"]


@dataclasses.dataclass(frozen=True)
class Answer:
    """One finished response: its body, media type and cache headers."""

    body: bytes
    content_type: str
    etag: str
    cache_control: str
