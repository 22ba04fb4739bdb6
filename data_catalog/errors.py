"""Exceptions raised by :mod:`data_catalog`.

Both derive from :class:`ValueError` so callers that only care about "bad input"
can catch one thing, and both carry a one-line message fit to show a user as is:
it names the file (or URL) and says what could not be understood or what is allowed.
"""

__all__ = ["CatalogError", "DatasetOpenError", "UnknownDatasetError"]


class CatalogError(ValueError):
    """A catalog file is missing, unreadable or malformed.

    The message names the catalog file, the entry (by id, or by position when the
    entry has no usable id) and the field, and says what is allowed there.
    """


class UnknownDatasetError(CatalogError, KeyError):
    """A dataset id is not in the catalog; the message lists the known ids.

    It is also a :class:`KeyError` so that ``catalog.get(id)`` behaves like a mapping
    lookup for callers that expect one.
    """

    def __str__(self) -> str:
        # KeyError quotes its message (repr); a user should see the plain sentence.
        return str(self.args[0]) if self.args else ""


class DatasetOpenError(ValueError):
    """A dataset could not be opened or does not fit the normalised-dataset contract.

    The message names the file, URL or catalog id and what could not be understood
    (missing file, unreadable format, no longitude/latitude axis, undecodable time...).
    """
