"""Bad input fails loudly, naming the file, column and first offending rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from adsim import AdSimDataError, Scenario
from adsim.data import validate_table, validate_tables
from adsim.data.bundle import MANIFEST, table_path, write_manifest


@pytest.fixture(scope="module")
def tables(tiny_logs) -> dict[str, pd.DataFrame]:
    scenario = Scenario(tiny_logs)
    return {name: scenario.table(name) for name in ("users", "ads", "requests", "impressions", "organic_items",
                                                    "organic_events")}


def _broken(tables, name, edit):
    copy = {k: v.copy() for k, v in tables.items()}
    copy[name] = edit(copy[name])
    return copy


def _set(column, rows, value):
    def edit(df):
        df.loc[rows, column] = value
        return df

    return edit


CASES = [
    ("ads", lambda df: df.drop(columns=["bid"]), "missing column", "bid", None),
    ("ads", lambda df: df.assign(color=1), "unexpected column", "color", None),
    ("ads", lambda df: df.assign(bid=df["bid"].astype(str)), "wrong dtype", "bid", None),
    ("ads", _set("bid", [3, 9], np.nan), "NaN", "bid", [3, 9]),
    ("ads", _set("bid", [4], -1.0), "negative", "bid", [4]),
    ("impressions", _set("cost", [2, 5], -0.5), "negative", "cost", [2, 5]),
    ("impressions", lambda df: df.assign(request_id=np.r_[df["request_id"].to_numpy()[:-1], 10**9]),
     "unknown requests.request_id", "request_id", None),
    ("impressions", _set("ad_id", [11], 10**6), "unknown ads.ad_id", "ad_id", [11]),
    ("impressions", lambda df: df.assign(conversion=df["conversion"] | (df.index == 12), click=df["click"]
                                         & (df.index != 12)), "conversion without a click", "conversion", [12]),
    ("requests", _set("ts", [20], 0), "not in time order", "ts", [20]),
    ("requests", _set("user_id", [1], 999_999), "unknown users.user_id", "user_id", [1]),
    ("users", _set("activity_group", [0], 9), "above", "activity_group", [0]),
    ("impressions", _set("propensity", [0], 0.0), "below", "propensity", [0]),
    ("ads", lambda df: df.assign(goal=df["goal"].astype(str).where(df.index != 6, "oCPX")), "outside", "goal", [6]),
]


@pytest.mark.parametrize(("name", "edit", "message", "column", "rows"), CASES)
def test_each_problem_names_file_column_and_rows(tables, name, edit, message, column, rows):
    broken = _broken(tables, name, edit)
    with pytest.raises(AdSimDataError, match=message) as info:
        validate_tables(broken, {k: f"{k}.parquet" for k in broken})
    err = info.value
    assert err.column == column
    assert f"{name}.parquet" in str(err)
    if rows is not None:
        assert list(err.rows[: len(rows)]) == rows
        assert str(rows[0]) in str(err)


def test_valid_tables_pass(tables):
    validate_tables(tables)
    validate_table("ads", tables["ads"])


def _copy_bundle(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_tampered_table_fails_the_checksum(tmp_path, tiny_logs):
    bundle = _copy_bundle(tiny_logs, tmp_path / "b")
    path = table_path(bundle, "ads")
    df = pq.read_table(path).to_pandas()
    df.loc[0, "bid"] = 1.0
    pq.write_table(pq.read_table(path).set_column(6, "bid", [df["bid"].to_numpy()]), path)
    with pytest.raises(AdSimDataError, match="checksum mismatch") as info:
        Scenario(bundle)
    assert "ads.parquet" in str(info.value)


def test_bad_values_in_a_bundle_are_caught_on_load(tmp_path, tiny_logs):
    bundle = _copy_bundle(tiny_logs, tmp_path / "b")
    path = table_path(bundle, "ads")
    table = pq.read_table(path)
    bids = table.column("bid").to_numpy().copy()
    bids[5] = -3.0
    pq.write_table(table.set_column(6, "bid", [bids]), path)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.pop("files")
    write_manifest(bundle, manifest)  # checksums now agree: the value check must catch it
    with pytest.raises(AdSimDataError, match="negative values") as info:
        Scenario(bundle)
    assert info.value.column == "bid" and list(info.value.rows) == [5]


def test_incompatible_bundle_version(tmp_path, tiny_logs):
    bundle = _copy_bundle(tiny_logs, tmp_path / "b")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["format_version"] = 999
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(AdSimDataError, match="incompatible"):
        Scenario(bundle)


def test_missing_table_file(tmp_path, tiny_logs):
    bundle = _copy_bundle(tiny_logs, tmp_path / "b")
    table_path(bundle, "impressions").unlink()
    with pytest.raises(AdSimDataError, match="missing") as info:
        Scenario(bundle)
    assert "impressions.parquet" in str(info.value)
