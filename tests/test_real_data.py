"""Where the real data sets are found (``ADSIM_SHARED_DATA``), what the library says when they are not, how the
tests that need them skip (and fail instead under ``ADSIM_REQUIRE_REAL_DATA=1``, as in CI), and that the generated
stand-ins are reproducible."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import pytest
from fixtures.real_formats import AMAZON, DATA_SETS, IPINYOU, OBD, TAOBAO, write_shared_data

from adsim.datasets import load_amazon_industrial
from adsim.errors import AdSimDataError
from adsim.importers import read_source
from adsim.paths import PROJECT_ROOT, SHARED_DATA_ENV, shared_data_dir, shared_data_set
from reward_models.open_bandit import load_open_bandit


def test_the_setting_chooses_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    assert shared_data_dir() == tmp_path
    (tmp_path / OBD).mkdir()
    assert shared_data_set(OBD) == tmp_path / OBD
    monkeypatch.delenv(SHARED_DATA_ENV)
    assert shared_data_dir() == PROJECT_ROOT.parent / "shared" / "data"


READERS = {
    "shared_data_set": (OBD, lambda: shared_data_set(OBD)),
    "amazon_industrial": (AMAZON, load_amazon_industrial),
    "open_bandit": (OBD, load_open_bandit),
    **{f"import {fmt}": (name, lambda fmt=fmt: read_source(fmt, None))
       for fmt, name in (("obd", OBD), ("ipinyou", IPINYOU), ("taobao", TAOBAO))},
}
"""Every reader whose default source is the real data folder: (the data set it reads, a call reading it)."""


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_missing_data_set_names_its_folder_and_the_setting(monkeypatch, tmp_path, reader):
    name, load = READERS[reader]
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(AdSimDataError, match=f"set {SHARED_DATA_ENV} to the folder") as err:
        load()
    assert f"file {tmp_path / 'nowhere' / name})" in str(err.value)


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The two ways a test asks for real data, the marker and the ``data_root`` fixture, in a child pytest."""
    ids = ["tests/sid/test_sid_text_data.py::test_the_default_source_is_the_minionerec_data",
           "tests/sid/test_sid_text_data.py::test_amazon_industrial_loads_items_sequences_and_reference_sids[real]"]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsE", *ids], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_real_data_tests_skip_with_the_reason_and_fail_where_required(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ADSIM_REQUIRE_REAL_DATA"}
    env[SHARED_DATA_ENV] = str(tmp_path / "nowhere")
    skipped = _pytest(env)
    assert skipped.returncode == 0, skipped.stdout[-3000:]
    assert "2 skipped" in skipped.stdout and f"no real data folder {tmp_path / 'nowhere'}" in skipped.stdout
    assert f"set {SHARED_DATA_ENV}" in skipped.stdout
    failed = _pytest({**env, "ADSIM_REQUIRE_REAL_DATA": "1"})
    assert failed.returncode == 1 and "2 errors" in failed.stdout, failed.stdout[-3000:]
    assert failed.stdout.count("ADSIM_REQUIRE_REAL_DATA=1 forbids skipping") >= 2


def test_generated_data_is_reproducible(tmp_path):
    a, b = write_shared_data(tmp_path / "a"), write_shared_data(tmp_path / "b")
    assert sorted(p.name for p in a.iterdir()) == sorted(DATA_SETS)
    for name in DATA_SETS:
        files = sorted(p.name for p in (a / name).iterdir())
        match, mismatch, errors = filecmp.cmpfiles(a / name, b / name, files, shallow=False)
        assert files and match == files and not mismatch and not errors
