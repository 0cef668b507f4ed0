"""Errors at the file boundary: they name the file and the field at fault."""

from __future__ import annotations

__all__ = ["FileFieldError"]


class FileFieldError(ValueError):
    """A file is missing, malformed or unsupported; the message names the file and the field.

    Subclasses set ``file_label`` (how the file is named in the message) and ``field_label``.
    ``path`` and ``field`` are kept as attributes.
    """

    file_label = "file"
    field_label = "field"

    def __init__(self, path, field: str | None, message: str):
        self.path = None if path is None else str(path)
        self.field = field
        where = []
        if path is not None:
            where.append(f"{self.file_label} '{path}'")
        if field:
            where.append(f"{self.field_label} '{field}'")
        super().__init__((", ".join(where) + ": " if where else "") + message)
