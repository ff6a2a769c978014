"""Malformed sources fail with an AdSimDataError naming the file, column and rows, and write nothing.

The broken files are edited copies of the generated stand-ins and of the real samples (``data_root``).
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from fixtures.real_formats import IPINYOU, OBD, TAOBAO

from adsim.errors import AdSimDataError
from adsim.importers.obd import obd_files
from adsim.importers.taobao import FILE as TAOBAO_FILE
from reward_models.pipeline import import_scenario


def _obd_copy(directory, data_root, edit) -> str:
    """The first 50 rows of the random log, edited, beside a copy of the item table."""
    log_file, item_file = obd_files(data_root / OBD, "random")
    lines = log_file.read_text().splitlines()[:51]
    (directory / "random_all.csv").write_text(edit(lines))
    shutil.copy(item_file, directory / "random_all_item_context.csv")
    return str(directory / "random_all.csv")


def _drop_click(lines):
    df = pd.DataFrame([line.split(",") for line in lines[1:]], columns=lines[0].split(","))
    return df.drop(columns="click").to_csv(index=False)


def _click_two(lines):
    fields = lines[4].split(",")
    fields[lines[0].split(",").index("click")] = "2"
    return "\n".join([*lines[:4], ",".join(fields), *lines[5:]]) + "\n"


OBD_CASES = {
    "missing column": (_drop_click, r"missing column\(s\) \['click'\].*random_all\.csv.*'click'"),
    "wrong separator": (lambda lines: "\n".join(line.replace(",", ";") for line in lines),
                        r"missing column.*comma-separated\?.*random_all\.csv"),
    "empty file": (lambda lines: "", r"file is empty.*random_all\.csv"),
    "header only": (lambda lines: lines[0] + "\n", r"no data rows.*random_all\.csv"),
    "bad value": (_click_two, r"not 0 or 1.*random_all\.csv.*column 'click' \(adsim impressions\.click\).*"
                              r"data rows \(1-based\) \[4\]"),
}


def _assert_nothing_written(out):
    assert not out.exists()
    if out.parent.exists():  # no half-written temporary sibling either
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.mark.parametrize("case", sorted(OBD_CASES))
def test_malformed_obd(tmp_path, data_root, case):
    edit, message = OBD_CASES[case]
    src = _obd_copy(tmp_path, data_root, edit)
    out = tmp_path / "out" / "bundle"
    with pytest.raises(AdSimDataError, match=message):
        import_scenario("obd", src, out, progress=False)
    _assert_nothing_written(out)


def test_ipinyou_wrong_separator_and_bad_timestamp(tmp_path, data_root):
    lines = (data_root / IPINYOU / "train.log.txt").read_text().splitlines()[:20]
    (tmp_path / "comma.log.txt").write_text("\n".join(line.replace("\t", ",") for line in lines))
    out = tmp_path / "out"
    with pytest.raises(AdSimDataError, match=r"found 1 TAB-separated columns, expected 27 or 29.*comma\.log\.txt"):
        import_scenario("ipinyou", tmp_path / "comma.log.txt", out, progress=False)
    fields = lines[2].split("\t")
    fields[4] = "yesterday"
    (tmp_path / "stamp.log.txt").write_text("\n".join([*lines[:2], "\t".join(fields), *lines[3:]]) + "\n")
    with pytest.raises(AdSimDataError, match=r"not a number.*stamp\.log\.txt.*column 'timestamp'.*"
                                             r"data rows \(1-based\) \[3\]"):
        import_scenario("ipinyou", tmp_path / "stamp.log.txt", out, progress=False)
    _assert_nothing_written(out)


def test_taobao_wrong_column_count(tmp_path, data_root):
    lines = (data_root / TAOBAO / TAOBAO_FILE).read_text().splitlines()[:10]
    (tmp_path / TAOBAO_FILE).write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines))
    out = tmp_path / "out"
    with pytest.raises(AdSimDataError, match=r"found 266 comma-separated columns, expected 267"):
        import_scenario("taobao", tmp_path, out, progress=False)
    _assert_nothing_written(out)


def _own_csv(tmp_path):
    pd.DataFrame({"t": ["2024-01-01 10:00:00", "2024-01-01 11:00:00"], "u": ["a", "b"], "ad": ["x", "y"],
                  "c": [0, 1]}).to_csv(tmp_path / "logs.csv", index=False)
    return tmp_path / "logs.csv"


@pytest.mark.parametrize("mapping, message", [
    ({"timestamp": "t", "columns": {"user": "u", "ad": "ad", "click": "clicked"}},
     r"missing column\(s\) \['clicked'\].*logs\.csv.*column 'clicked'"),
    ({"timestamp": "t", "columns": {"user": "u", "ad": "ad", "click": "c"}, "ads": {"bid": "price"}},
     r"missing column\(s\) \['price'\].*logs\.csv"),
    ({"timestamp": "t", "columns": {"user": "u", "ad": "ad", "click": "c", "colour": "c"}},
     r"unknown key\(s\) \['colour'\].*column 'columns\.colour'"),
    ({"timestamp": "t", "columns": {"user": "u", "click": "c"}}, r"columns must map \['ad'\]"),
    ({"timestamp": "t", "columns": {"user": "u", "ad": "ad", "click": "c"}, "constants": {"goal": "CPX"}},
     r"goal outside"),
])
def test_malformed_mapping(tmp_path, mapping, message):
    out = tmp_path / "out"
    with pytest.raises(AdSimDataError, match=message):
        import_scenario("csv", _own_csv(tmp_path), out, mapping=mapping, progress=False)
    _assert_nothing_written(out)


def test_logs_without_organic_views_record_their_fallback(tmp_path):
    """Organic views are optional: the manifest says what stands in for them (the full import with SIDs and reward
    models is tests/importers/test_import_recipe.py)."""
    mapping = {"timestamp": "t", "columns": {"user": "u", "ad": "ad", "click": "c"}}
    path = import_scenario("csv", _own_csv(tmp_path), tmp_path / "out", mapping=mapping, steps=[], progress=False)
    assert "organic history is empty" in json.loads((path / "manifest.json").read_text())["organic_fallback"]
