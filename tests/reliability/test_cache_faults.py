"""The Arrow cache is derived, never trusted: a truncated, substituted or foreign cached copy is rebuilt from the
checksummed Parquet with an AdSimCacheWarning naming both files, the data read is the Parquet's, and the bundle is
untouched. Every case uses a cache of its own."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_support import _logs_copy, _private_cache, tree_digest  # noqa: F401  (fixtures)

from adsim import Scenario
from adsim.cli import main
from adsim.data import cache
from adsim.data.bundle import table_path
from adsim.errors import AdSimCacheWarning


def _copy_paths(bundle, name="ads"):
    digest = Scenario(bundle, validate=False).files[f"tables/{name}.parquet"]
    return cache._paths(digest)


def _substitute_bids(bundle):
    """Rewrite the cached ads copy with bids x100 (same size and schema), as a stale or hostile copy would."""
    arrow, _ = _copy_paths(bundle)
    table = cache._decode(table_path(bundle, "ads"))  # as the cache derives it, with other bids
    index = table.schema.get_field_index("bid")
    table = table.set_column(index, table.schema.field(index), pa.array(table.column("bid").to_numpy() * 100))
    size = arrow.stat().st_size
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert arrow.stat().st_size == size


def _truncate(bundle):
    arrow, _ = _copy_paths(bundle)
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 3])


def _sidecar(text):
    def corrupt(bundle):
        _copy_paths(bundle)[1].write_text(text)

    return corrupt


def _delete_sidecar(bundle):
    _copy_paths(bundle)[1].unlink()


def _foreign_copy(bundle):
    """The users table's copy (and its sidecar) under the ads table's name."""
    Scenario(bundle, validate=False).table("users")
    users_arrow, users_meta = _copy_paths(bundle, "users")
    arrow, sidecar = _copy_paths(bundle)
    arrow.write_bytes(users_arrow.read_bytes())
    sidecar.write_text(users_meta.read_text())


def _substitute_with_sidecar(bundle):
    """Bids x100 and a sidecar rewritten to match: only the deep check (the decoded Parquet) catches it."""
    _substitute_bids(bundle)
    arrow, sidecar = _copy_paths(bundle)
    meta = json.loads(sidecar.read_text())
    meta["arrow_sha256"] = cache.sha256(arrow)
    sidecar.write_text(json.dumps(meta))


CASES = {  # name: (corrupt the cache, how the bundle is opened, the cause the warning names)
    "truncated copy (read)": (_truncate, "read", "bytes"),
    "truncated copy (validate)": (_truncate, "validate", "bytes"),
    "substituted copy": (_substitute_bids, "validate", "sha256 differs"),
    "sidecar garbage": (_sidecar("{not json"), "read", "sidecar is missing or unreadable"),
    "sidecar of another file": (_sidecar(json.dumps({"format": 1, "source_sha256": "0" * 64})), "read",
                                "describes another file"),
    "sidecar deleted": (_delete_sidecar, "read", "sidecar is missing"),
    "foreign copy": (_foreign_copy, "read", "describes another file"),
    "substituted copy and sidecar": (_substitute_with_sidecar, "deep", "content differs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cached_copy_is_rebuilt_from_the_parquet(logs_copy, private_cache, case):
    corrupt, how, cause = CASES[case]
    Scenario(logs_copy, validate=False).table("ads")  # the copy exists (not validated: as in another process)
    corrupt(logs_copy)
    bundle_before = tree_digest(logs_copy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scenario = Scenario(logs_copy, validate=False)
        if how == "validate":
            scenario.validate()
        elif how == "deep":
            scenario.validate(deep=True)
        bids = scenario.table("ads")["bid"].to_numpy()
    rebuilt = [str(w.message) for w in caught if issubclass(w.category, AdSimCacheWarning)]
    assert len(rebuilt) == 1, [str(w.message) for w in caught]
    assert "ads.parquet" in rebuilt[0] and ".arrow" in rebuilt[0] and cause in rebuilt[0], rebuilt[0]
    np.testing.assert_array_equal(bids, pq.read_table(table_path(logs_copy, "ads")).column("bid").to_numpy())
    assert tree_digest(logs_copy) == bundle_before
    assert cache._problem(table_path(logs_copy, "ads"), scenario.files["tables/ads.parquet"], "content") is None


def test_describe_and_validate_read_the_parquet_not_a_substituted_copy(logs_copy, private_cache, capsys):
    Scenario(logs_copy, validate=False).table("ads")
    _substitute_bids(logs_copy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["validate", str(logs_copy)]) == 0
    assert any(issubclass(w.category, AdSimCacheWarning) for w in caught)
    bids = pq.read_table(table_path(logs_copy, "ads")).column("bid").to_numpy()
    np.testing.assert_array_equal(Scenario(logs_copy).table("ads")["bid"].to_numpy(), bids)
    assert "valid" in capsys.readouterr().out
