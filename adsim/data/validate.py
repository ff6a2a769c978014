"""Validation of logged tables: every failure names the file, the column and the first offending rows."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from adsim.data.schema import FOREIGN_KEYS, TABLES, TIME_ORDERED, UNIQUE, Column
from adsim.errors import AdSimDataError

SECONDS_PER_DAY = 86_400
NON_EMPTY = ("users", "ads", "requests", "impressions")
"""Tables the simulator cannot run without a row of (organic tables may be empty in a logs-only import)."""
DERIVED = {"day": "ts // 86400", "hour": "ts % 86400 // 3600"}


def _kind_ok(column: Column, series: pd.Series) -> bool:
    t = column.type
    if pa.types.is_dictionary(t):
        return isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(series.dtype)
    if pa.types.is_boolean(t):
        return pd.api.types.is_bool_dtype(series.dtype)
    if pa.types.is_integer(t):
        return pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    if pa.types.is_floating(t):
        return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    raise TypeError(f"no dtype rule for {t}")


def validate_table(name: str, df: pd.DataFrame, file: str | None = None) -> None:
    """Columns, dtypes, missing values, value ranges, categories, unique ids and time order of one table."""
    if name not in TABLES:
        raise AdSimDataError(f"unknown table {name!r}; expected one of {sorted(TABLES)}", file=file)
    file = file or name
    columns = TABLES[name]
    expected = [c.name for c in columns]
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise AdSimDataError(f"missing column(s) {missing}", file=file, column=missing[0])
    extra = [c for c in df.columns if c not in expected]
    if extra:
        raise AdSimDataError(f"unexpected column(s) {extra}", file=file, column=str(extra[0]))
    for col in columns:
        series = df[col.name]
        if not _kind_ok(col, series):
            raise AdSimDataError(f"wrong dtype {series.dtype}, expected {col.type}", file=file, column=col.name)
        null = series.isna().to_numpy()
        if null.any():
            raise AdSimDataError("missing values (NaN/null) are not allowed", file=file, column=col.name,
                                 rows=np.flatnonzero(null))
        if col.categories is not None:
            bad = ~series.astype(str).isin(col.categories).to_numpy()
            if bad.any():
                raise AdSimDataError(f"values outside {list(col.categories)}", file=file, column=col.name,
                                     rows=np.flatnonzero(bad))
            continue
        if pd.api.types.is_bool_dtype(series.dtype):
            continue
        values = series.to_numpy()
        if pd.api.types.is_float_dtype(series.dtype) and not np.isfinite(values).all():
            raise AdSimDataError("infinite values", file=file, column=col.name,
                                 rows=np.flatnonzero(~np.isfinite(values)))
        if col.min_value is not None and (values < col.min_value).any():
            what = "negative values" if col.min_value == 0 else f"values below {col.min_value}"
            raise AdSimDataError(what, file=file, column=col.name, rows=np.flatnonzero(values < col.min_value))
        if col.max_value is not None and (values > col.max_value).any():
            raise AdSimDataError(f"values above {col.max_value}", file=file, column=col.name,
                                 rows=np.flatnonzero(values > col.max_value))
    if name in NON_EMPTY and len(df) == 0:
        raise AdSimDataError("the table is empty: the simulator needs at least one row", file=file)
    key = UNIQUE.get(name)
    if key is not None:
        dup = df[key].duplicated().to_numpy()
        if dup.any():
            raise AdSimDataError("duplicate ids", file=file, column=key, rows=np.flatnonzero(dup))
        sparse = df[key].to_numpy() != np.arange(len(df))
        if sparse.any():
            raise AdSimDataError("ids must be dense: row i has id i (the simulator indexes arrays by id)",
                                 file=file, column=key, rows=np.flatnonzero(sparse))
    order_col = TIME_ORDERED.get(name)
    if order_col is not None:
        values = df[order_col].to_numpy()
        back = np.flatnonzero(values[1:] < values[:-1]) + 1
        if len(back):
            raise AdSimDataError("not in time order (values decrease)", file=file, column=order_col, rows=back)
    if name == "requests":
        ts = df["ts"].to_numpy()
        for column, derived in (("day", ts // SECONDS_PER_DAY), ("hour", ts % SECONDS_PER_DAY // 3600)):
            bad = df[column].to_numpy() != derived
            if bad.any():
                raise AdSimDataError(f"{column} disagrees with ts (must be {DERIVED[column]})", file=file,
                                     column=column, rows=np.flatnonzero(bad))
    if name == "impressions":
        bad = (df["conversion"] & ~df["click"]).to_numpy()
        if bad.any():
            raise AdSimDataError("conversion without a click", file=file, column="conversion",
                                 rows=np.flatnonzero(bad))


def validate_tables(tables: Mapping[str, pd.DataFrame], files: Mapping[str, str] | None = None,
                    sanity: bool = False) -> None:
    """Validate each table, then the references between them; with ``sanity``, also the checks that catch swapped
    columns in tables without a world config (``check_budgets``)."""
    files = dict(files or {})
    for name, df in tables.items():
        validate_table(name, df, files.get(name, name))
    for table, column, ref_table, ref_column in FOREIGN_KEYS:
        if table not in tables or ref_table not in tables:
            continue
        known = tables[ref_table][ref_column].to_numpy()
        unknown = ~np.isin(tables[table][column].to_numpy(), known)
        if unknown.any():
            raise AdSimDataError(f"references unknown {ref_table}.{ref_column}", file=files.get(table, table),
                                 column=column, rows=np.flatnonzero(unknown))
    if "organic_events" in tables and "requests" in tables:
        events, requests = tables["organic_events"], tables["requests"]
        later = events["ts"].to_numpy() > requests["ts"].to_numpy()[events["request_id"].to_numpy()]
        if later.any():
            raise AdSimDataError("an organic event is later than the request it precedes", column="ts",
                                 file=files.get("organic_events", "organic_events"), rows=np.flatnonzero(later))
    if sanity and "ads" in tables:
        check_budgets(tables["ads"], files.get("ads", "ads"))


def check_budgets(ads: pd.DataFrame, file: str, max_share: float = 0.5) -> None:
    """Refuse ads tables where most daily budgets cannot pay for one billed event (a click or conversion at the bid;
    for CPM, one impression at bid / 1000): the sign of ``bid`` and ``daily_budget`` swapped or mis-mapped."""
    if len(ads) == 0:
        return
    bid = ads["bid"].to_numpy(dtype=np.float64)
    unit = np.where(ads["goal"].astype(str).to_numpy() == "CPM", bid / 1000.0, bid)
    short = ads["daily_budget"].to_numpy(dtype=np.float64) < unit
    if short.mean() > max_share:
        raise AdSimDataError(f"{short.mean():.0%} of ads have a daily budget below the price of one billed event "
                             "(the bid; bid / 1000 for CPM): are bid and daily_budget swapped?", file=file,
                             column="daily_budget", rows=np.flatnonzero(short))
