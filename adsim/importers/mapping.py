"""Anyone's own logs: a delimited file of impressions plus a column mapping (YAML or JSON) -> an adsim bundle.

The mapping names, for each adsim field, the column of the file that holds it; ``docs/csv_mapping_example.yaml``
documents every key. In short:

* ``columns``: per-impression fields. ``user``, ``ad`` and ``click`` are required; ``request`` groups impressions
  into one request (default: one request per row), and ``position``, ``propensity``, ``conversion``, ``cost``,
  ``gmv``, ``ranking_ecpm``, ``device``, ``placement``, ``n_slots``, ``privacy``, ``split`` are optional.
* ``timestamp``: ``{column, unit}`` with unit ``datetime`` (any format pandas parses), ``s`` or ``ms`` (Unix time).
* ``ads`` / ``users``: per-ad and per-user attributes, read from each ad's (user's) first row.
* ``constants``: fixed values for fields the file lacks (e.g. ``goal: CPC``).
* ``ad_features``: ``numeric`` (at most 4) and ``categorical`` columns embedded into ``ad_embeddings``.
* ``organic`` (optional): a second file of organic views with its own ``file``, ``timestamp`` and ``columns``
  (``user``, ``item``; optional ``topic``, ``kind``, ``dwell_s``) and ``features`` for the item embeddings.

Everything the mapping leaves out takes ``adsim.importers.common``'s documented defaults. A mapping that names a
column the file lacks, an unknown key, or a value of the wrong type fails before anything is written, naming the
file, the column and the first offending rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.importers.canonical import AD_DEFAULTS, EVENT_DEFAULTS, USER_DEFAULTS, RawLogs
from adsim.importers.encoding import feature_embeddings
from adsim.importers.parsing import file_info, numeric, read_delimited, seconds_since_first_midnight
from adsim.world.config import GOALS, ORGANIC_KINDS

KEY_FIELDS = ("user", "ad", "request", "item")
BOOL_FIELDS = ("click", "conversion", "privacy")
INT_FIELDS = ("position", "device", "placement", "n_slots", "age_bucket", "gender", "primary_device", "created_day")
FLOAT_FIELDS = ("propensity", "ranking_ecpm", "cost", "gmv", "bid", "roi_target", "daily_budget",
                "conversion_value", "dwell_s")
EVENT_FIELDS = ("user", "ad", "click", *EVENT_DEFAULTS)
AD_FIELDS = tuple(AD_DEFAULTS)
USER_FIELDS = tuple(USER_DEFAULTS)
ORGANIC_FIELDS = ("user", "item", "topic", "kind", "dwell_s")
TOP_KEYS = ("source", "separator", "timestamp", "columns", "ads", "users", "constants", "ad_features", "organic")
TIME_UNITS = ("datetime", "s", "ms")


@dataclass
class CsvMapping:
    """A parsed, checked mapping. Keys name adsim fields, values the file's columns."""

    columns: dict[str, str]
    timestamp: str
    timestamp_unit: str = "datetime"
    separator: str = ","
    ads: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    constants: dict[str, object] = field(default_factory=dict)
    ad_numeric: list[str] = field(default_factory=list)
    ad_categorical: list[str] = field(default_factory=list)
    organic: dict | None = None
    source: str | None = None
    path: Path | None = None
    """The mapping file: relative organic file names resolve against its directory."""

    @classmethod
    def load(cls, path: str | Path) -> CsvMapping:
        path = Path(path)
        if not path.is_file():
            raise AdSimDataError("mapping file not found", file=str(path))
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                try:
                    import yaml
                except ImportError:
                    raise AdSimDataError("YAML mappings need PyYAML (pip install pyyaml); or write the mapping "
                                         "as JSON", file=str(path)) from None
                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (ValueError, ImportError) as e:
            raise AdSimDataError(f"cannot parse the mapping: {e}", file=str(path)) from None
        except Exception as e:  # yaml.YAMLError
            raise AdSimDataError(f"cannot parse the mapping: {e}", file=str(path)) from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data, path: Path | None = None) -> CsvMapping:
        where = str(path) if path else "mapping"
        if not isinstance(data, dict):
            raise AdSimDataError("the mapping must be a dictionary", file=where)
        _known(data, TOP_KEYS, where, "")
        columns = _section(data, "columns", where, EVENT_FIELDS)
        missing = [k for k in ("user", "ad", "click") if k not in columns]
        if missing:
            raise AdSimDataError(f"columns must map {missing}", file=where, column=f"columns.{missing[0]}")
        stamp = data.get("timestamp")
        if isinstance(stamp, str):
            stamp = {"column": stamp}
        if not isinstance(stamp, dict) or "column" not in stamp:
            raise AdSimDataError("timestamp must name a column ({column: ..., unit: datetime|s|ms})", file=where,
                                 column="timestamp")
        _known(stamp, ("column", "unit"), where, "timestamp.")
        unit = stamp.get("unit", "datetime")
        if unit not in TIME_UNITS:
            raise AdSimDataError(f"timestamp unit must be one of {TIME_UNITS}, got {unit!r}", file=where,
                                 column="timestamp.unit")
        constants = data.get("constants") or {}
        _known(constants, (*EVENT_FIELDS, *AD_FIELDS, *USER_FIELDS), where, "constants.")
        features = data.get("ad_features") or {}
        _known(features, ("numeric", "categorical"), where, "ad_features.")
        organic = data.get("organic")
        if organic is not None:
            if not isinstance(organic, dict) or "file" not in organic:
                raise AdSimDataError("organic must give a file", file=where, column="organic.file")
            _known(organic, ("file", "separator", "timestamp", "columns", "features"), where, "organic.")
            ocols = _section(organic, "columns", where, ORGANIC_FIELDS)
            if "user" not in ocols or "item" not in ocols or "timestamp" not in organic:
                raise AdSimDataError("organic needs columns.user, columns.item and timestamp", file=where,
                                     column="organic")
        separator = data.get("separator", ",")
        if not isinstance(separator, str) or len(separator) != 1:
            raise AdSimDataError(f"separator must be one character, got {separator!r}", file=where,
                                 column="separator")
        return cls(columns=columns, timestamp=str(stamp["column"]), timestamp_unit=unit, separator=separator,
                   ads=_section(data, "ads", where, AD_FIELDS), users=_section(data, "users", where, USER_FIELDS),
                   constants=dict(constants), ad_numeric=list(features.get("numeric") or []),
                   ad_categorical=list(features.get("categorical") or []), organic=organic,
                   source=data.get("source"), path=path)

    def named_columns(self) -> list[str]:
        """Every column of the impressions file the mapping reads."""
        return list(dict.fromkeys([*self.columns.values(), self.timestamp, *self.ads.values(), *self.users.values(),
                                   *self.ad_numeric, *self.ad_categorical]))


def _known(section: dict, allowed, where: str, prefix: str) -> None:
    if not isinstance(section, dict):
        raise AdSimDataError("must be a dictionary", file=where, column=prefix.rstrip(".") or "mapping")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise AdSimDataError(f"unknown key(s) {unknown}; allowed: {list(allowed)}", file=where,
                             column=prefix + str(unknown[0]))


def _section(data: dict, name: str, where: str, allowed) -> dict[str, str]:
    section = data.get(name) or {}
    _known(section, allowed, where, f"{name}.")
    bad = [k for k, v in section.items() if not isinstance(v, str)]
    if bad:
        raise AdSimDataError("a mapping value must be a column name (use constants for fixed values)", file=where,
                             column=f"{name}.{bad[0]}")
    return dict(section)


def _typed(df: pd.DataFrame, name: str, column: str, file: str) -> np.ndarray:
    """The file's ``column`` as the type adsim field ``name`` needs."""
    if name in BOOL_FIELDS:
        lowered = df[column].str.strip().str.lower().replace({"true": "1", "false": "0"})
        return numeric(df.assign(**{column: lowered}), column, file, bool)
    if name in INT_FIELDS:
        return numeric(df, column, file, int)
    if name in FLOAT_FIELDS:
        return numeric(df, column, file)
    values = df[column].to_numpy().astype(str)
    if name == "goal":
        bad = ~np.isin(values, GOALS)
        if bad.any():
            raise AdSimDataError(f"goal outside {list(GOALS)}", file=file, column=column, rows=np.flatnonzero(bad))
    if name == "kind":
        bad = ~np.isin(values, ORGANIC_KINDS)
        if bad.any():
            raise AdSimDataError(f"kind outside {list(ORGANIC_KINDS)}", file=file, column=column,
                                 rows=np.flatnonzero(bad))
    return values


def _times(df: pd.DataFrame, column: str, unit: str, file: str) -> pd.Series:
    if unit == "datetime":
        times = pd.to_datetime(df[column], errors="coerce", utc=True)
    else:
        times = pd.to_datetime(numeric(df, column, file), unit=unit, errors="coerce", utc=True)
    times = pd.Series(times)
    if times.isna().any():
        raise AdSimDataError("not a timestamp", file=file, column=column, rows=np.flatnonzero(times.isna().to_numpy()))
    return times


def read_raw(src: str | Path, mapping: str | Path | dict | CsvMapping, max_rows: int | None = None) -> RawLogs:
    """The canonical long format of a mapped file (see the module docstring)."""
    src = Path(src)
    if isinstance(mapping, CsvMapping):
        m = mapping
    elif isinstance(mapping, dict):
        m = CsvMapping.from_dict(mapping)
    else:
        m = CsvMapping.load(mapping)
    f = str(src)
    df = read_delimited(src, sep=m.separator, required=m.named_columns(), nrows=max_rows)

    # ---- impressions
    stamps = _times(df, m.timestamp, m.timestamp_unit, f)
    events = pd.DataFrame({name: _typed(df, name, column, f) for name, column in m.columns.items()})
    for name, value in m.constants.items():
        if name in EVENT_FIELDS and name not in events:
            events[name] = value

    # ---- ads: attributes from each ad's first row
    first_ad = ~events["ad"].duplicated().to_numpy()
    ad_keys = events["ad"].to_numpy()[first_ad]
    order = np.argsort(ad_keys, kind="stable")
    ads = pd.DataFrame({name: _typed(df, name, column, f)[first_ad][order] for name, column in m.ads.items()},
                       index=pd.Index(ad_keys[order]))
    for name, value in m.constants.items():
        if name in AD_FIELDS and name not in ads:
            ads[name] = value
    if "goal" in ads and not np.isin(ads["goal"].astype(str), GOALS).all():
        raise AdSimDataError(f"goal outside {list(GOALS)}", file=f, column="constants.goal")
    ad_rows = df.loc[first_ad].iloc[order]
    ad_emb = feature_embeddings(len(ads), {c: numeric(ad_rows, c, f) for c in m.ad_numeric},
                                {c: ad_rows[c].to_numpy() for c in m.ad_categorical})

    # ---- users: attributes from each user's first row
    first_user = ~events["user"].duplicated().to_numpy()
    users = pd.DataFrame({name: _typed(df, name, column, f)[first_user] for name, column in m.users.items()},
                         index=pd.Index(events["user"].to_numpy()[first_user]))
    for name, value in m.constants.items():
        if name in USER_FIELDS and name not in users:
            users[name] = value

    # ---- organic views
    organic_items = organic_emb = organic_events = None
    files = [file_info(src)]
    times = [stamps]
    if m.organic is not None:
        ofile = Path(m.organic["file"])
        if not ofile.is_absolute():
            ofile = (m.path.parent if m.path else src.parent) / ofile
        o = m.organic
        stamp = o["timestamp"] if isinstance(o["timestamp"], dict) else {"column": o["timestamp"]}
        ocols = o["columns"]
        feats = o.get("features") or {}
        needed = list(dict.fromkeys([*ocols.values(), stamp["column"], *(feats.get("numeric") or []),
                                     *(feats.get("categorical") or [])]))
        odf = read_delimited(ofile, sep=o.get("separator", m.separator), required=needed)
        g = str(ofile)
        ostamps = _times(odf, stamp["column"], stamp.get("unit", "datetime"), g)
        organic_events = pd.DataFrame({name: _typed(odf, name, column, g) for name, column in ocols.items()
                                       if name in ("user", "item", "dwell_s")})
        first_item = ~organic_events["item"].duplicated().to_numpy()
        item_order = np.argsort(organic_events["item"].to_numpy()[first_item], kind="stable")
        item_rows = odf.loc[first_item].iloc[item_order]
        organic_items = pd.DataFrame({name: _typed(item_rows, name, ocols[name], g) for name in ("topic", "kind")
                                      if name in ocols},
                                     index=pd.Index(organic_events["item"].to_numpy()[first_item][item_order]))
        organic_emb = feature_embeddings(len(organic_items), {c: numeric(item_rows, c, g)
                                                              for c in feats.get("numeric") or []},
                                         {c: item_rows[c].to_numpy() for c in feats.get("categorical") or []})
        files.append(file_info(ofile))
        seen = np.isin(organic_events["user"].to_numpy(), users.index)  # views of users who never saw an ad: no
        organic_events = organic_events.loc[seen].reset_index(drop=True)  # request follows them, drop them
        times.append(ostamps.loc[seen].reset_index(drop=True))

    # one clock for both files: seconds since the first midnight of either
    ts = seconds_since_first_midnight(pd.concat(times, ignore_index=True))
    events["ts"] = ts[: len(df)]
    if organic_events is not None:
        organic_events["ts"] = ts[len(df):]

    notes = {"format": "csv", "files": files, "rows_read": len(df), "mapping": {
        "columns": m.columns, "timestamp": {"column": m.timestamp, "unit": m.timestamp_unit}, "ads": m.ads,
        "users": m.users, "constants": m.constants, "ad_features": {"numeric": m.ad_numeric,
                                                                     "categorical": m.ad_categorical},
        "organic": m.organic},
        "propensities": "logged" if "propensity" in m.columns else "unknown (1.0)"}
    return RawLogs(source=m.source or f"csv:{src.name}", events=events, ads=ads, ad_embeddings=ad_emb, users=users,
                   organic_items=organic_items, organic_embeddings=organic_emb, organic_events=organic_events,
                   notes=notes)
