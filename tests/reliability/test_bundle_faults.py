"""Bundle files the simulator and env read, broken one way each: refused on load with an AdSimDataError naming the
file (and column and rows), nothing on disk changed.

Most cases re-sign the manifest after the damage (``resign``), as a build with a bug would have: the checksums then
agree, and the checks behind them (arrays, ids, derived columns, sanity) are what is tested.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from reliability_support import _logs_copy, refused, resign  # noqa: F401  (fixtures)

from adsim import Scenario
from adsim.data.bundle import array_path, table_path, write_bundle, write_table
from adsim.errors import AdSimDataError


def _array(name, make):
    def corrupt(bundle):
        path = array_path(bundle, name)
        values = np.load(path)
        made = make(values, path)
        if made is not None:
            np.save(path, made)
        resign(bundle)

    return corrupt


def _nan_row(values, path):
    values = values.copy()
    values[5, 3] = np.nan
    return values


def _text(values, path):
    path.write_text("0.1 0.2 0.3\n")


def _truncated(values, path):
    path.write_bytes(path.read_bytes()[:-100])


def _pickled(values, path):
    path.write_bytes(pickle.dumps(values))


def _objects(values, path):
    np.save(path, np.array([{"a": 1}] * len(values), dtype=object), allow_pickle=True)


def _table(name, edit):
    def corrupt(bundle):
        df = pq.read_table(table_path(bundle, name)).to_pandas()
        write_table(bundle, name, edit(df))
        resign(bundle)

    return corrupt


def _set(column, rows, value):
    def edit(df):
        df.loc[rows, column] = value
        return df

    return edit


def _swap(a, b):
    return lambda df: df.assign(**{a: df[b].to_numpy(), b: df[a].to_numpy()})


def _extra_file(bundle):
    (bundle / "tables" / "notes.parquet").write_bytes(b"not listed")


def _flip_byte(bundle):
    path = table_path(bundle, "impressions")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_parquet(bundle):
    table_path(bundle, "users").write_text("user_id,age\n1,2\n")
    resign(bundle)


def _market_price(values_of):
    def corrupt(bundle):
        n = len(pq.read_table(table_path(bundle, "requests")))
        np.save(array_path(bundle, "request_market_price"), values_of(n))
        resign(bundle)

    return corrupt


CASES = {  # name: (corrupt, needles)
    "embeddings: too few rows": (_array("ad_embeddings", lambda v, p: v[:-1]),
                                 ["ad_embeddings.npy", "399 rows but the bundle has 400"]),
    "embeddings: NaN row": (_array("ad_embeddings", _nan_row), ["ad_embeddings.npy", "NaN", "rows [5]"]),
    "embeddings: integer dtype": (_array("ad_embeddings", lambda v, p: v.astype(np.int32)),
                                  ["ad_embeddings.npy", "dtype int32"]),
    "embeddings: 1-D": (_array("organic_embeddings", lambda v, p: v[:, 0]), ["organic_embeddings.npy", "2-D"]),
    "embeddings: other width": (_array("organic_embeddings", lambda v, p: v[:, :-1]),
                                ["organic_embeddings.npy", "31 columns, expected 32"]),
    "embeddings: text file": (_array("ad_embeddings", _text), ["ad_embeddings.npy", "not a .npy array file"]),
    "embeddings: truncated": (_array("ad_embeddings", _truncated), ["ad_embeddings.npy", "truncated"]),
    "embeddings: a pickle": (_array("ad_embeddings", _pickled), ["ad_embeddings.npy", "not a .npy array file"]),
    "embeddings: objects": (_array("ad_embeddings", _objects), ["ad_embeddings.npy", "not numbers"]),
    "market price: wrong rows": (_market_price(lambda n: np.ones(n + 3, np.float32)),
                                 ["request_market_price.npy", "rows but the bundle has"]),
    "market price: negative": (_market_price(lambda n: -np.ones(n, np.float32)),
                               ["request_market_price.npy", "below 0.0"]),
    "ids: users not dense": (_table("users", lambda df: df.assign(user_id=df["user_id"] * 2)),
                             ["users.parquet", "ids must be dense", "'user_id'"]),
    "ids: ads not dense": (_table("ads", lambda df: df.assign(ad_id=df["ad_id"] + 1)),
                           ["ads.parquet", "'ad_id'", "rows [0"]),
    "derived: day vs ts": (_table("requests", _set("day", [7], 3)), ["requests.parquet", "'day'", "rows [7]"]),
    "derived: hour vs ts": (_table("requests", _set("hour", [9], 23)), ["requests.parquet", "'hour'", "rows [9]"]),
    "empty: ads": (_table("ads", lambda df: df.iloc[:0]), ["ads.parquet", "the table is empty"]),
    "empty: impressions": (_table("impressions", lambda df: df.iloc[:0]), ["impressions.parquet", "empty"]),
    "sanity: bid and budget swapped": (_table("ads", _swap("bid", "daily_budget")), ["ads.parquet", "'bid'",
                                                                                     "swapped"]),
    "sanity: bids rescaled": (_table("ads", lambda df: df.assign(bid=df["bid"] * 100)), ["ads.parquet", "'bid'",
                                                                                        "off the goal's scale"]),
    "sanity: organic event after its request": (_table("organic_events", lambda df: df.assign(ts=df["ts"] + 10**6)),
                                                ["organic_events.parquet", "later than the request"]),
    "files: unlisted table file": (_extra_file, ["notes.parquet", "not listed in the manifest"]),
    "files: byte flipped": (_flip_byte, ["impressions.parquet", "checksum mismatch"]),
    "files: listed file missing": (lambda b: array_path(b, "organic_embeddings").unlink(),
                                   ["organic_embeddings.npy", "missing"]),
    "files: table is not Parquet": (_not_parquet, ["users.parquet", "not a readable Parquet file"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_bundle_file_is_refused_naming_it(logs_copy, case):
    corrupt, needles = CASES[case]
    corrupt(logs_copy)
    with refused(logs_copy, AdSimDataError, *needles):
        Scenario(logs_copy)


def test_imported_tables_with_swapped_bid_and_budget_are_refused_and_nothing_written(tmp_path, tiny_logs):
    source = Scenario(tiny_logs)
    tables = {name: source.table(name) for name in ("users", "ads", "organic_items", "organic_events", "requests",
                                                    "impressions")}
    ads = tables["ads"]
    tables["ads"] = ads.assign(bid=ads["daily_budget"].to_numpy() * 50, daily_budget=ads["bid"].to_numpy())
    arrays = {"ad_embeddings": source.ad_embeddings, "organic_embeddings": source.organic_embeddings}
    with refused(tmp_path, AdSimDataError, "test:ads", "'daily_budget'", "are bid and daily_budget swapped"):
        write_bundle(tmp_path / "imported", tables, arrays, source="test", progress=False)
    assert not any(tmp_path.iterdir())


def test_bundle_with_models_needs_organic_content(logs_copy):
    def edit(manifest):
        manifest["sid"] = {"codebook_sizes": [4, 8, 64]}
        manifest["rows"]["organic_events"] = 0

    _table("organic_events", lambda df: df.iloc[:0])(logs_copy)
    resign(logs_copy, edit)
    with refused(logs_copy, AdSimDataError, "organic_events.parquet", "need organic content"):
        Scenario(logs_copy)


def test_values_out_of_schema_are_still_named_by_column_and_row(logs_copy):
    _table("impressions", _set("cost", [3], -1.0))(logs_copy)
    with refused(logs_copy, AdSimDataError, "impressions.parquet", "'cost'", "rows [3]"):
        Scenario(logs_copy)
    assert isinstance(pd.read_parquet(table_path(logs_copy, "impressions")), pd.DataFrame)
