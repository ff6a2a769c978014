"""Temporary build directories a killed build left behind are removed by the next build beside them, once old and
unlocked; a live build's directory, a young one, a bundle or a look-alike is never touched."""

from __future__ import annotations

import os
import time

import pytest
from reliability_support import tree_digest

from adsim import build_scenario
from adsim.data.integrity import STALE_AFTER_S, clean_stale_builds, lock, unlock


def _leftover(parent, name, age_s):
    """A half-written temporary bundle, last touched ``age_s`` seconds ago."""
    path = parent / name
    (path / "tables").mkdir(parents=True)
    (path / "tables" / "ads.parquet").write_bytes(b"half")
    then = time.time() - age_s
    for p in (path / "tables" / "ads.parquet", path / "tables", path):
        os.utime(p, (then, then))
    return path


OLD = STALE_AFTER_S + 60


@pytest.mark.parametrize(("name", "age", "removed"), [
    (".bundle.tmp-0123abcd", OLD, True),
    (".bundle.old-89abcdef", OLD, True),
    (".other.tmp-00000000", OLD, True),
    (".bundle.tmp-0123abcd", 60, False),
    (".bundle.tmp-notahex!", OLD, False),
    ("bundle.tmp-0123abcd", OLD, False),
], ids=["killed build", "killed replace", "another bundle's", "young", "look-alike", "not hidden"])
def test_leftovers_are_removed_only_when_stale(tmp_path, name, age, removed):
    path = _leftover(tmp_path, name, age)
    assert clean_stale_builds(tmp_path) == ([path] if removed else [])
    assert path.exists() is not removed


def test_a_live_builds_directory_is_kept_however_old(tmp_path):
    path = _leftover(tmp_path, ".bundle.tmp-0123abcd", OLD)
    held = lock(path)
    try:
        assert clean_stale_builds(tmp_path) == []
        assert path.is_dir()
    finally:
        unlock(held)
    assert clean_stale_builds(tmp_path) == [path]


def test_the_next_build_removes_a_killed_builds_leftovers_and_nothing_else(tmp_path, tiny_logs):
    stale = _leftover(tmp_path, ".bundle.tmp-0123abcd", OLD)
    young = _leftover(tmp_path, ".bundle.tmp-4567abcd", 5)
    (tmp_path / "notes.txt").write_text("keep me")
    out = build_scenario(tmp_path / "bundle", "tiny", seed=7, progress=False)
    assert not stale.exists() and young.exists() and (tmp_path / "notes.txt").read_text() == "keep me"
    assert tree_digest(out).keys() >= {"tables/ads.parquet", "manifest.json"}
