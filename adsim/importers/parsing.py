"""Reading a source's delimited files and clock, with errors that name the file, column and rows."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError


def read_delimited(path: str | Path, *, sep: str, header: bool = True, required: Sequence[str] = (),
                   n_columns: Sequence[int] = (), names: Sequence[str] | None = None, nrows: int | None = None,
                   index_col: int | None = None) -> pd.DataFrame:
    """Read a delimited text file as strings, or fail naming the file (and the column or row) at fault.

    Args:
        required: columns a file with a header must have.
        n_columns: the column counts a file without a header may have (e.g. 27 or 29).
        names: column names of a headerless file, given to its first ``len(names)`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise AdSimDataError("file not found", file=str(path))
    if path.stat().st_size == 0:
        raise AdSimDataError("file is empty", file=str(path))
    shown_sep = {"\t": "TAB", ",": "comma"}.get(sep, repr(sep))
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, dtype=str, nrows=nrows, index_col=index_col,
                         keep_default_na=False, engine="c")
    except pd.errors.EmptyDataError:
        raise AdSimDataError("file is empty", file=str(path)) from None
    except pd.errors.ParserError as e:
        raise AdSimDataError(f"cannot parse as {shown_sep}-separated text: {e}", file=str(path)) from None
    if len(df) == 0:
        raise AdSimDataError("file has no data rows", file=str(path))
    if header:
        missing = [c for c in required if c not in df.columns]
        if missing:
            hint = f"; is it {shown_sep}-separated?" if len(df.columns) <= 1 else ""
            raise AdSimDataError(f"missing column(s) {missing}; found {list(df.columns)[:8]}{hint}",
                                 file=str(path), column=missing[0])
    else:
        if n_columns and df.shape[1] not in n_columns:
            hint = " (wrong separator?)" if df.shape[1] <= 1 else ""
            raise AdSimDataError(f"found {df.shape[1]} {shown_sep}-separated columns, expected "
                                 f"{' or '.join(map(str, n_columns))}{hint}", file=str(path))
        if names is not None:
            df = df.iloc[:, : len(names)].set_axis(list(names), axis=1)
    return df


def numeric(df: pd.DataFrame, column: str, file: str, kind: type = float) -> np.ndarray:
    """A string column as numbers; an error naming the file, column and data rows that are not numbers."""
    series = df[column]
    text = series.dtype == object or pd.api.types.is_string_dtype(series)
    values = pd.to_numeric(series.str.strip() if text else series, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        raise AdSimDataError(f"not a number: {series.iloc[int(np.flatnonzero(bad)[0])]!r}", file=file,
                             column=column, rows=np.flatnonzero(bad))
    if kind is int and pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)  # exact: 17-digit timestamps do not survive float64
    out = values.to_numpy(dtype=np.float64)
    if kind is int:
        frac = out != np.round(out)
        if frac.any():
            raise AdSimDataError("not an integer", file=file, column=column, rows=np.flatnonzero(frac))
        return out.astype(np.int64)
    if kind is bool:
        bad = ~np.isin(out, (0, 1))
        if bad.any():
            raise AdSimDataError("not 0 or 1", file=file, column=column, rows=np.flatnonzero(bad))
        return out.astype(bool)
    return out


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
