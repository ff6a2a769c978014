"""Reading a source's delimited files and clock, with errors in the user's terms.

Every error names the user's file, the user's column (and the adsim field it feeds) and the 1-based data rows of
the user's file: data row 1 is the first line after the header (the first line of a file without one), counted as
lines, so a blank line counts too. Rows keep that number however the importer later sorts or groups them
(``Origin``).

A file is refused, before anything is built, when it is empty, not UTF-8, has a row with more or fewer fields than
the header (or than its first row, without a header), or ends inside a row (no final newline after the last row
read: a truncated download or an interrupted write).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError, AdSimOptionError

DATA_ROWS = "data rows (1-based)"
"""How errors label rows of a source file."""


@dataclass
class Origin:
    """Where the rows of one frame came from: a user file and 1-based data row per row, and the user's column
    behind each field, so an error found later (after sorting, grouping, assembling) still names them."""

    files: tuple[str, ...]
    file: np.ndarray
    """(n,) index into ``files`` of each row's file."""
    rows: np.ndarray
    """(n,) 1-based data row of each row in its file."""
    columns: dict[str, str] = field(default_factory=dict)
    """field -> the user's column (or a description, e.g. ``constants.goal`` of the mapping file)."""
    row_label: str = DATA_ROWS

    @classmethod
    def of(cls, path: str | Path, rows: np.ndarray, columns: Mapping[str, str] | None = None) -> Origin:
        rows = np.asarray(rows, dtype=np.int64)
        return cls((str(path),), np.zeros(len(rows), dtype=np.int64), rows, dict(columns or {}))

    @classmethod
    def positions(cls, name: str, n: int) -> Origin:
        """A frame not read from a file (``name``: the importer's source name): rows are its 0-based positions."""
        return cls((name,), np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64), {}, "rows")

    @classmethod
    def concat(cls, parts: Sequence[Origin], columns: Mapping[str, str] | None = None) -> Origin:
        files = tuple(dict.fromkeys(f for p in parts for f in p.files))
        index = [np.asarray([files.index(f) for f in p.files], dtype=np.int64)[p.file] for p in parts]
        return cls(files, np.concatenate(index) if index else np.zeros(0, np.int64),
                   np.concatenate([p.rows for p in parts]) if parts else np.zeros(0, np.int64),
                   dict(columns if columns is not None else (parts[0].columns if parts else {})),
                   parts[0].row_label if parts else DATA_ROWS)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions) -> Origin:
        positions = np.asarray(positions)
        return Origin(self.files, self.file[positions], self.rows[positions], self.columns, self.row_label)

    def with_columns(self, columns: Mapping[str, str]) -> Origin:
        """The same rows, with ``columns`` (field -> the user's column) replacing the column map."""
        return Origin(self.files, self.file, self.rows, dict(columns), self.row_label)

    def error(self, message: str, positions=None, field: str | None = None, adsim: str | None = None
              ) -> AdSimDataError:
        """An error about rows ``positions`` of the frame (all rows if None) and ``field``, naming the file of the
        first of them, its data rows there and the user's column; ``adsim`` names the adsim field it maps to."""
        positions = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64)
        column = self.columns.get(field) if field is not None else None
        if not len(positions) or not len(self):
            return AdSimDataError(message, file=self.files[0] if self.files else None, column=column,
                                  field=adsim or field)
        first_file = self.file[positions[0]]
        rows = np.unique(self.rows[positions[self.file[positions] == first_file]])
        return AdSimDataError(message, file=self.files[first_file], column=column, field=adsim or field,
                              rows=rows, row_label=self.row_label)


@dataclass
class SourceFile:
    """One delimited file read as strings, with the data row of every record."""

    path: Path
    frame: pd.DataFrame
    rows: np.ndarray
    """(n,) 1-based data row of each record of ``frame``."""
    sha256: str

    @property
    def file(self) -> str:
        return str(self.path)

    def __len__(self) -> int:
        return len(self.frame)

    def origin(self, columns: Mapping[str, str] | None = None) -> Origin:
        return Origin.of(self.path, self.rows, columns)

    def info(self) -> dict:
        """Name and sha256 of the file, for the manifest."""
        return {"file": self.path.name, "sha256": self.sha256}

    def error(self, message: str, positions=None, column: str | None = None, field: str | None = None
              ) -> AdSimDataError:
        rows = None if positions is None else self.rows[np.asarray(positions, dtype=np.int64)]
        return AdSimDataError(message, file=self.file, column=column, field=field, rows=rows, row_label=DATA_ROWS)

    def numeric(self, column: str, kind: type = float, field: str | None = None,
                bounds: tuple[float | None, float | None] = (None, None), positive: bool = False) -> np.ndarray:
        """The ``column`` as numbers of ``kind`` (float, int or bool), every row checked: an error naming the file,
        the column (and the adsim ``field`` it feeds) and the data rows that are not numbers, not integers, not 0/1,
        outside ``bounds`` (inclusive) or, with ``positive``, not above 0."""
        values, bad, what = to_numbers(self.frame[column], kind)
        if len(bad):
            raise self.error(f"{what}: {self.frame[column].iloc[int(bad[0])]!r}", bad, column, field)
        return check_bounds(values, bounds, positive, lambda m, p: self.error(m, p, column, field))

    def text(self, column: str) -> np.ndarray:
        return self.frame[column].to_numpy().astype(str)


def check_bounds(values: np.ndarray, bounds: tuple[float | None, float | None], positive: bool, error
                 ) -> np.ndarray:
    """``values`` if inside ``bounds`` (inclusive) and, with ``positive``, above 0; else ``error(message, rows)``."""
    low, high = bounds
    if values.dtype == bool:
        return values
    checks = []
    if positive:
        checks.append((values <= 0, "must be above 0"))
    if low is not None:
        checks.append((values < low, f"below the smallest allowed value {low}"))
    if high is not None:
        checks.append((values > high, f"above the largest allowed value {high}"))
    for bad, message in checks:
        if bad.any():
            rows = np.flatnonzero(bad)
            raise error(f"{message}, found {values[rows[0]].item()!r}", rows)
    return values


def to_numbers(series: pd.Series, kind: type = float) -> tuple[np.ndarray, np.ndarray, str]:
    """(values, positions that are not a ``kind``, what they should be): strings as float64, int64 (exact, even
    17-digit timestamps) or bool (0/1, true/false)."""
    text = series.dtype == object or pd.api.types.is_string_dtype(series)
    stripped = series.astype(str).str.strip() if text else series
    if kind is bool and text:
        stripped = stripped.str.lower().replace({"true": "1", "false": "0"})
    parsed = pd.to_numeric(stripped, errors="coerce")
    missing = np.flatnonzero(parsed.isna().to_numpy())
    if len(missing):
        return np.zeros(0), missing, "not 0 or 1 (or true/false)" if kind is bool else "not a number"
    if kind is int and pd.api.types.is_integer_dtype(parsed.dtype):
        return parsed.to_numpy(dtype=np.int64), missing, ""
    out = parsed.to_numpy(dtype=np.float64)
    if not np.isfinite(out).all():
        return out, np.flatnonzero(~np.isfinite(out)), "not a finite number"
    if kind is int:
        frac = np.flatnonzero(out != np.round(out))
        return (out, frac, "not an integer") if len(frac) else (out.astype(np.int64), frac, "")
    if kind is bool:
        bad = np.flatnonzero(~np.isin(out, (0, 1)))
        return (out, bad, "not 0 or 1 (or true/false)") if len(bad) else (out.astype(bool), bad, "")
    return out, missing, ""


def _records(text: str, sep: str, limit: int | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(first line of every non-blank record, its field count, whether records remain after ``limit``)."""
    starts, counts = [], []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    line = 0
    more = False
    for record in reader:
        start, line = line + 1, reader.line_num
        if not record:
            continue
        if limit is not None and len(starts) == limit:
            more = True
            break
        starts.append(start)
        counts.append(len(record))
    return np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64), more


def read_delimited(path: str | Path, *, sep: str, header: bool = True, required: Sequence[str] = (),
                   n_columns: Sequence[int] = (), names: Sequence[str] | None = None, nrows: int | None = None
                   ) -> SourceFile:
    """Read a delimited text file as strings, or fail naming the file (and the column or data rows) at fault.

    Args:
        required: columns a file with a header must have.
        n_columns: the column counts a file without a header may have (e.g. 27 or 29).
        names: column names of a headerless file, given to its first ``len(names)`` columns.
        nrows: read at most this many data rows.
    """
    path = Path(path)
    if not path.is_file():
        raise AdSimDataError("file not found", file=str(path))
    data = path.read_bytes()
    if not data.strip():
        raise AdSimDataError("file is empty", file=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AdSimDataError(f"not UTF-8 text (byte {e.start}, line {line})", file=str(path)) from None
    shown_sep = {"\t": "TAB", ",": "comma"}.get(sep, repr(sep))
    try:
        starts, counts, more = _records(text, sep, None if nrows is None else nrows + int(header))
    except csv.Error as e:
        raise AdSimDataError(f"cannot parse as {shown_sep}-separated text: {e}", file=str(path)) from None
    if not len(starts):
        raise AdSimDataError("file is empty", file=str(path))
    offset = 1 if header else 0
    data_starts, data_counts = starts[offset:] - offset, counts[offset:]
    if not len(data_starts):
        raise AdSimDataError("file has no data rows", file=str(path))
    expected = counts[0]
    if header:
        names_found = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep))
        missing = [c for c in required if c not in names_found]
        if missing:
            hint = f"; is it {shown_sep}-separated?" if len(names_found) <= 1 else ""
            raise AdSimDataError(f"missing column(s) {missing}; found {names_found[:8]}{hint}", file=str(path),
                                 column=missing[0])
    elif n_columns and expected not in n_columns:
        hint = " (wrong separator?)" if expected <= 1 else ""
        raise AdSimDataError(f"found {expected} {shown_sep}-separated columns, expected "
                             f"{' or '.join(map(str, n_columns))}{hint}", file=str(path))
    wrong = np.flatnonzero(data_counts != expected)
    if len(wrong):
        what = "the header has" if header else "the first row has"
        raise AdSimDataError(f"a row has {data_counts[wrong[0]]} {shown_sep}-separated fields where {what} "
                             f"{expected} (truncated, or a separator inside a value?)", file=str(path),
                             rows=data_starts[wrong], row_label=DATA_ROWS)
    if not more and not data.endswith(b"\n"):
        raise AdSimDataError("the file ends inside its last row (no newline after it): the file looks truncated; "
                             "complete the row, or add the final newline if it is whole", file=str(path),
                             rows=data_starts[-1:], row_label=DATA_ROWS)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None, dtype=str, nrows=nrows,
                         keep_default_na=False, engine="c")
    except (pd.errors.ParserError, ValueError) as e:
        raise AdSimDataError(f"cannot parse as {shown_sep}-separated text: {e}", file=str(path)) from None
    if len(df) != len(data_starts):  # the two parsers disagree (exotic quoting): number records instead
        data_starts = np.arange(1, len(df) + 1, dtype=np.int64)
    if not header and names is not None:
        df = df.iloc[:, : len(names)].set_axis(list(names), axis=1)
    return SourceFile(path, df, data_starts, hashlib.sha256(data).hexdigest())


def check_max_rows(max_rows: int | None, option: str = "max_rows") -> int | None:
    """``max_rows`` if None or a positive integer, else an ``AdSimOptionError`` naming the option."""
    if max_rows is None:
        return None
    if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) or max_rows < 1:
        raise AdSimOptionError(f"must be a positive integer (rows to read per file), got {max_rows!r}", option=option)
    return int(max_rows)


def file_info(path: str | Path) -> dict:
    """Name and sha256 of a source file, for the manifest."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"file": path.name, "sha256": digest}


def seconds_since_first_midnight(times: pd.Series) -> np.ndarray:
    """int64 seconds from midnight of the earliest day in ``times`` (datetimes, in the clock the source logs)."""
    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_localize(None)
    start = times.min().normalize()
    return ((times - start) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
