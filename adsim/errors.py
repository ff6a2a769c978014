"""Exceptions raised by adsim. Every message names the file, column, row or argument at fault."""

from __future__ import annotations


class AdSimError(Exception):
    """Base class of adsim's own errors."""


class AdSimDataError(AdSimError, ValueError):
    """Input data (a bundle, a table, an array, a saved artifact) is malformed or inconsistent."""

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None, rows=None):
        parts = []
        if file is not None:
            parts.append(f"file {file!s}")
        if column is not None:
            parts.append(f"column {column!r}")
        if rows is not None and len(rows):
            shown = ", ".join(str(int(r)) for r in list(rows)[:5])
            parts.append(f"first offending rows [{shown}]" + (f" of {len(rows)}" if len(rows) > 5 else ""))
        where = "; ".join(parts)
        super().__init__(f"{message} ({where})" if where else message)
        self.file, self.column, self.rows = file, column, rows
