"""Subcommands of the ``gridscope`` CLI, one module each."""

from __future__ import annotations

__all__ = ["user_errors"]


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (printed, no traceback)."""
    from app.settings import SettingsError
    from data_catalog.errors import CatalogError, DatasetOpenError
    from pipelines.query import QueryError

    return (
        QueryError,
        CatalogError,
        DatasetOpenError,
        SettingsError,
        FileNotFoundError,
        PermissionError,
    )
