"""Manifests that are missing, malformed, edited or forged: each refused with an AdSimDataError naming the manifest and
the field, nothing on disk changed."""

from __future__ import annotations

import os
import warnings

import pytest
from reliability_support import (  # noqa: F401  (fixtures)
    _logs_copy,
    read_manifest_json,
    refused,
    sign_as_is,
    write_manifest_json,
)

from adsim import Scenario
from adsim.errors import AdSimDataError, AdSimWarning


def _raw(text: bytes):
    def edit(bundle):
        (bundle / "manifest.json").write_bytes(text)

    return edit


def _edited(change):
    """An edit of the JSON that keeps the old signature."""
    def edit(bundle):
        manifest = read_manifest_json(bundle)
        change(manifest)
        write_manifest_json(bundle, manifest)

    return edit


def _forged(change):
    """An edit signed afresh: only the field checks can catch it."""
    return lambda bundle: sign_as_is(bundle, change)


def _delete(key):
    return lambda m: m.pop(key)


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


CASES = {
    "missing": (lambda b: (b / "manifest.json").unlink(), ["manifest.json is missing"]),
    "json list": (_raw(b"[1, 2, 3]\n"), ["must be a JSON object", "JSON list"]),
    "random bytes": (_raw(os.urandom(64) + b"\xff\xfe"), ["not UTF-8"]),
    "empty": (_raw(b""), ["not valid JSON"]),
    "truncated": (lambda b: (b / "manifest.json").write_bytes((b / "manifest.json").read_bytes()[:200]),
                  ["not valid JSON"]),
    "seed edited": (_edited(_set("seed", 8)), ["does not match its signature", "manifest_sha256"]),
    "generator edited": (_edited(_set("generator_version", 1)), ["does not match its signature"]),
    "config edited": (_edited(lambda m: m["config"].__setitem__("n_users", 301)), ["does not match its signature"]),
    "file checksum swapped": (_edited(lambda m: m["files"].__setitem__(
        "tables/ads.parquet", m["files"]["tables/users.parquet"])), ["does not match its signature"]),
    "file map deleted": (_edited(_delete("files")), ["does not match its signature"]),
    "signature deleted": (_edited(_delete("manifest_sha256")), ["signature is missing", "manifest_sha256"]),
    "newer manifest version": (_forged(_set("manifest_version", 3)), ["newer adsim", "manifest_version"]),
    "format version": (_edited(_set("format_version", 999)), ["incompatible", "format_version"]),
    "forged: no file map": (_forged(_delete("files")), ["no file map", "'files'"]),
    "forged: empty file map": (_forged(_set("files", {})), ["non-empty object", "'files'"]),
    "forged: path leaves the bundle": (_forged(lambda m: m["files"].__setitem__("../outside.txt", "0" * 64)),
                                       ["not a path inside the bundle", "../outside.txt"]),
    "forged: checksum not sha256": (_forged(lambda m: m["files"].__setitem__("tables/ads.parquet", "abc")),
                                    ["no sha256 checksum", "tables/ads.parquet"]),
    "forged: table not listed": (_forged(lambda m: m["files"].pop("tables/requests.parquet")),
                                 ["does not list", "tables/requests.parquet"]),
    "forged: truth without config": (_forged(_set("config", None)), ["has_ground_truth is true but config",
                                                                     "'config'"]),
    "forged: config unknown field": (_forged(lambda m: m["config"].__setitem__("colour", 1)),
                                     ["not a valid world config", "colour"]),
    "forged: negative seed": (_forged(_set("seed", -4)), ["seed must be an integer >= 0", "'seed'"]),
    "forged: truth not a bool": (_forged(_set("has_ground_truth", "yes")), ["has_ground_truth must be true or false"]),
    "forged: rows not counts": (_forged(lambda m: m["rows"].__setitem__("ads", "many")), ["rows['ads']", "'rows'"]),
    "forged: source missing": (_forged(_delete("source")), ["source must be a non-empty string"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_manifest_is_refused_naming_it(logs_copy, case):
    corrupt, needles = CASES[case]
    corrupt(logs_copy)
    with refused(logs_copy, AdSimDataError, "manifest.json", *needles):
        Scenario(logs_copy)


def test_forged_generator_version_opens_but_refuses_to_regenerate_the_truth(logs_copy):
    sign_as_is(logs_copy, _set("generator_version", 3))
    scenario = Scenario(logs_copy)  # the logs themselves are intact
    with refused(logs_copy, AdSimDataError, "generator version 3", "generator_version", "manifest.json"):
        _ = scenario.world


def test_forged_row_count_is_caught_by_validate(logs_copy):
    sign_as_is(logs_copy, lambda m: m["rows"].__setitem__("ads", 399))
    with refused(logs_copy, AdSimDataError, "table ads has 400 rows, the manifest says 399", "'rows'"):
        Scenario(logs_copy)


def test_unsigned_manifest_of_an_older_build_opens_with_a_warning(logs_copy):
    """Not a refusal: bundles built before manifests were signed keep opening (their file map is still checked)."""
    manifest = read_manifest_json(logs_copy)
    for key in ("manifest_sha256", "manifest_version"):
        manifest.pop(key)
    write_manifest_json(logs_copy, manifest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Scenario(logs_copy)
    assert any(issubclass(w.category, AdSimWarning) and "predates manifest signatures" in str(w.message)
               for w in caught)
