"""Exceptions raised by the library. Each message says what is wrong and what to do."""

from __future__ import annotations


class DeliftError(Exception):
    """Base class of every error the library raises on purpose."""


class DataError(DeliftError):
    """A data file cannot be read or a record is invalid.

    The message names the file, the line (or row) and the field where known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class FieldMapNeeded(DataError):
    """The records use field names no known schema has: the user must name the fields. Each
    front end says how (the CLI's --field, the app's Field names form)."""


class PathError(DataError):
    """A local path lies outside the folders this installation may use, or local paths are off.

    The message is the same whether or not the path exists, so that it reveals nothing about
    files outside those folders.
    """


class ModelError(DeliftError):
    """A model or tokenizer cannot be loaded or used."""


class ConfigError(DeliftError):
    """A parameter is out of range or parameters do not fit together."""


class CacheError(DeliftError):
    """The cache database cannot be opened, read or written: damaged, or held by another process.

    The message names the file and what to do about it.
    """


class CancelledError(DeliftError):
    """Long work was stopped by its cancel callback. Work already stored is kept."""


class ResourceError(DeliftError):
    """The requested work would not fit in this machine's memory or time."""
