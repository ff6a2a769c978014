"""Malformed sources and options, in every format: an AdSimDataError in the user's terms (the user's file, the
user's column and the adsim field it feeds, the 1-based data row of the user's file) or an AdSimOptionError naming
the option; nothing written, the sources untouched."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import IPINYOU, OBD, TAOBAO
from reliability_support import refused

from adsim.errors import AdSimDataError, AdSimOptionError
from adsim.importers import import_logs
from adsim.importers.obd import obd_files
from adsim.importers.taobao import FILE as TAOBAO_FILE

ROWS = 200
MAPPING = {"source": "my_shop", "timestamp": "t",
           "columns": {"user": "u", "ad": "ad", "click": "c", "position": "pos", "conversion": "conv",
                       "request": "req", "device": "dev"},
           "ads": {"bid": "price", "daily_budget": "budget"}}


def _logs() -> pd.DataFrame:
    """Two impressions per request, seven ads, budgets far above the bids."""
    i = np.arange(ROWS)
    return pd.DataFrame({"t": pd.Timestamp("2024-01-01") + pd.to_timedelta(i // 2, unit="min"),
                         "u": [f"u{r % 9}" for r in i // 2], "ad": [f"a{k % 7}" for k in i], "c": i % 5 == 0,
                         "conv": 0, "req": i // 2, "dev": 0, "pos": i % 2, "price": 1.5, "budget": 100.0,
                         "note": "free text"})


def _csv(edit=None, text_edit=None):
    def write(directory):
        df = _logs()
        if edit is not None:
            edit(df)
        text = df.to_csv(index=False)
        (directory / "logs.csv").write_text(text if text_edit is None else text_edit(text))
        return directory / "logs.csv", {}

    return write


def _at(column, row, value):
    """Data row ``row`` (1-based, as the user counts) of ``column`` set to ``value``."""
    def edit(df):
        df[column] = df[column].astype(object)
        df.loc[row - 1, column] = value

    return edit


def _swap(df):
    df["price"], df["budget"] = 100.0, 1.5


def _short_row(text):
    lines = text.split("\n")
    lines[42] = ",".join(lines[42].split(",")[:5])  # data row 42 loses its last fields
    return "\n".join(lines)


def _latin1(directory):
    text = _logs().to_csv(index=False).replace("free text", "caf\xe9", 1)
    (directory / "logs.csv").write_bytes(text.encode("latin-1"))
    return directory / "logs.csv", {}


def _views(dwell):
    def write(directory):
        path, _ = _csv()(directory)
        pd.DataFrame({"u": ["u1", "u2", "u3"], "item": ["i1", "i2", "i1"], "vt": ["2024-01-01 00:00:00"] * 3,
                      "dwell": dwell}).to_csv(directory / "views.csv", index=False)
        organic = {"file": str(directory / "views.csv"), "timestamp": "vt",
                   "columns": {"user": "u", "item": "item", "dwell_s": "dwell"}}
        return path, {"organic": organic}

    return write


CSV_CASES = {  # name: (write the source, needles)
    "negative bid on an ad's later row": (_csv(_at("price", 151, -2.0)),
                                          ["logs.csv", "column 'price' (adsim ads.bid)", "data rows (1-based) [151]"]),
    "position out of range on data row 100": (_csv(_at("pos", 100, 5)),
                                              ["column 'pos' (adsim impressions.position)", "[100]"]),
    "click not 0/1": (_csv(_at("c", 7, "maybe")), ["column 'c' (adsim impressions.click)", "[7]", "'maybe'"]),
    "budget not a number": (_csv(_at("budget", 33, "lots")), ["column 'budget' (adsim ads.daily_budget)", "[33]"]),
    "timestamp unparsable": (_csv(_at("t", 121, "not a time")), ["column 't' (adsim requests.ts)", "[121]"]),
    "conversion without click": (_csv(_at("conv", 78, 1)), ["column 'conv' (adsim impressions.conversion)",
                                                            "without a click", "[78]"]),
    "device differs within a request": (_csv(_at("dev", 52, 2)), ["column 'dev' (adsim requests.device)",
                                                                  "[51, 52]"]),
    "bid and budget swapped": (_csv(_swap), ["column 'budget' (adsim ads.daily_budget)", "swapped"]),
    "truncated inside the last text column": (_csv(text_edit=lambda text: text.rstrip("\n")[:-4]),
                                              ["logs.csv", "ends inside its last row", f"[{ROWS}]"]),
    "a short row": (_csv(text_edit=_short_row), ["logs.csv", "fields where the header has 11", "[42]"]),
    "not UTF-8": (_latin1, ["logs.csv", "not UTF-8", "line 2"]),
    "negative dwell in the organic file": (_views([1.0, -3.0, 2.0]), ["views.csv", "column 'dwell'",
                                                                     "organic_events.dwell_s", "[2]"]),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_bad_csv_value_is_named_in_the_users_terms(tmp_path, case):
    write, needles = CSV_CASES[case]
    src, extra = write(tmp_path)
    mapping = {**MAPPING, **extra}
    with refused(tmp_path, AdSimDataError, *needles):
        import_logs("csv", src, tmp_path / "bundle", mapping=mapping, progress=False)


def test_mapping_constant_out_of_range_names_the_mapping_key(tmp_path):
    src, _ = _csv()(tmp_path)
    mapping = {**MAPPING, "constants": {"placement": 7}}
    with refused(tmp_path, AdSimDataError, "constants.placement", "outside its range [0, 2]"):
        import_logs("csv", src, tmp_path / "bundle", mapping=mapping, progress=False)


def _obd(directory, data_root, edit_line):
    log_file, item_file = obd_files(data_root / OBD, "random")
    lines = log_file.read_text().splitlines()[:61]
    header = lines[0].split(",")
    lines = [lines[0], *[edit_line(header, i, line) for i, line in enumerate(lines[1:], start=1)]]
    (directory / "random_all.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(item_file, directory / "random_all_item_context.csv")
    return directory / "random_all.csv"


def _obd_field(column, row, value):
    def edit(header, i, line):
        if i != row:
            return line
        fields = line.split(",")
        fields[header.index(column)] = value
        return ",".join(fields)

    return edit


@pytest.mark.parametrize(("column", "row", "value", "needles"), [
    ("propensity_score", 17, "0", ["column 'propensity_score' (adsim impressions.propensity)", "[17]"]),
    ("position", 23, "4", ["column 'position' (adsim impressions.position)", "[23]"]),
    ("item_id", 40, "999", ["column 'item_id' (adsim impressions.ad_id)", "not in the item table", "[40]"]),
], ids=["propensity 0", "position 4", "unknown item"])
def test_bad_obd_value_is_named_by_its_row_in_the_file(tmp_path, generated_data, column, row, value, needles):
    src = _obd(tmp_path, generated_data, _obd_field(column, row, value))
    with refused(tmp_path, AdSimDataError, "random_all.csv", *needles):
        import_logs("obd", src, tmp_path / "bundle", progress=False)


def _ipinyou(directory, data_root, row, column, value):
    from adsim.importers.ipinyou import COLUMNS

    lines = (data_root / IPINYOU / "train.log.txt").read_text().splitlines()[:80]
    fields = lines[row - 1].split("\t")
    fields[COLUMNS.index(column)] = value
    lines[row - 1] = "\t".join(fields)
    (directory / "train.log.txt").write_text("\n".join(lines) + "\n")
    return directory / "train.log.txt"


@pytest.mark.parametrize(("column", "value", "needle"), [
    ("payprice", "99999", "payprice above bidprice"), ("bidprice", "-5", "must be above 0")],
    ids=["payprice above bid", "negative bid"])
def test_bad_ipinyou_value_is_named_by_its_line(tmp_path, generated_data, column, value, needle):
    src = _ipinyou(tmp_path, generated_data, 61, column, value)
    with refused(tmp_path, AdSimDataError, "train.log.txt", f"column '{column}'", needle, "[61]"):
        import_logs("ipinyou", src, tmp_path / "bundle", progress=False)


def test_bad_taobao_click_is_named_by_its_line(tmp_path, generated_data):
    lines = (generated_data / TAOBAO / TAOBAO_FILE).read_text().splitlines()[:30]
    fields = lines[11].split(",")
    fields[-1] = "2"
    lines[11] = ",".join(fields)
    (tmp_path / TAOBAO_FILE).write_text("\n".join(lines) + "\n")
    with refused(tmp_path, AdSimDataError, TAOBAO_FILE, "column 'clk' (adsim impressions.click)", "[12]"):
        import_logs("taobao", tmp_path, tmp_path / "bundle", progress=False)


OPTION_CASES = {  # name: (format, options, option named)
    "natural_ctr above 1": ("taobao", {"natural_ctr": 2.0}, "natural_ctr"),
    "natural_ctr 0": ("taobao", {"natural_ctr": 0.0}, "natural_ctr"),
    "natural_ctr for csv": ("csv", {"natural_ctr": 0.1, "mapping": MAPPING}, "natural_ctr"),
    "max_rows negative": ("obd", {"max_rows": -5}, "max_rows"),
    "max_rows zero": ("ipinyou", {"max_rows": 0}, "max_rows"),
    "max_rows a string": ("obd", {"max_rows": "10"}, "max_rows"),
    "seed negative": ("taobao", {"seed": -1}, "seed"),
    "behavior unknown": ("obd", {"behavior": "greedy"}, "behavior"),
    "behavior for ipinyou": ("ipinyou", {"behavior": "bts"}, "behavior"),
    "mapping for obd": ("obd", {"mapping": MAPPING}, "mapping"),
    "csv without a mapping": ("csv", {}, "mapping"),
    "unknown format": ("parquet", {}, "format"),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_out_of_range_option_is_refused_naming_it(tmp_path, case):
    format, options, option = OPTION_CASES[case]
    src, _ = _csv()(tmp_path)
    with refused(tmp_path, AdSimOptionError, f"option {option}:") as info:
        import_logs(format, src, tmp_path / "bundle", progress=False, **options)
    assert info.value.option == option
