"""Exceptions and warnings raised by adsim. Every message names the file, column, row, option or state key at fault."""

from __future__ import annotations


class AdSimError(Exception):
    """Base class of adsim's own errors."""


class AdSimDataError(AdSimError, ValueError):
    """Input data (a bundle, a table, an array, a saved artifact, a source file) is malformed or inconsistent.

    Args:
        file: the file at fault, as the user knows it (a bundle's table, or the source file of an import).
        column: the column at fault, in the file's own terms (an imported file's column, not adsim's).
        rows: the offending rows (all of them; the message shows the first five).
        field: the adsim field ``column`` maps to, where that differs from it (imports: ``ads.bid``).
        row_label: what ``rows`` count: "rows" (0-based positions in a bundle's table) or, for a source file,
            "data rows (1-based)" (1 is the first data row after the header).
    """

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None, rows=None,
                 field: str | None = None, row_label: str = "rows"):
        parts = []
        if file is not None:
            parts.append(f"file {file!s}")
        if column is not None:
            parts.append(f"column {column!r}" + (f" (adsim {field})" if field and field != column else ""))
        elif field is not None:
            parts.append(f"adsim field {field}")
        if rows is not None and len(rows):
            shown = ", ".join(str(int(r)) for r in list(rows)[:5])
            parts.append(f"first offending {row_label} [{shown}]" + (f" of {len(rows)}" if len(rows) > 5 else ""))
        where = "; ".join(parts)
        super().__init__(f"{message} ({where})" if where else message)
        self.message, self.file, self.column, self.rows, self.field = message, file, column, rows, field
        self.row_label = row_label


class AdSimOptionError(AdSimError, ValueError):
    """An option or argument is out of range or of the wrong kind; ``option`` names it as the caller wrote it
    (``natural_ctr``, or ``--natural-ctr`` on the command line)."""

    def __init__(self, message: str, *, option: str):
        super().__init__(f"option {option}: {message}")
        self.option, self.detail = option, message


class AdSimStateError(AdSimError, ValueError):
    """A saved env state (``set_state``) is malformed or inconsistent with the env it is restored into; ``key``
    names the part of the state at fault (``episodes.prefix``)."""

    def __init__(self, message: str, *, key: str | None = None):
        super().__init__(f"{message} (state key {key!r})" if key else message)
        self.key = key


class AdSimWarning(UserWarning):
    """Base class of adsim's warnings."""


class AdSimCacheWarning(AdSimWarning):
    """A derived cache (the Arrow copy of a table) did not match its source and was rebuilt from it."""
