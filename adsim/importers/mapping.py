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
* ``file`` (optional): the impressions file when the source is a folder (default: its only delimited file).
  Relative file names (``file``, ``organic.file``) resolve against the source folder (the folder given, or the
  given file's folder), never against the mapping's.
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
from adsim.importers.canonical import AD_DEFAULTS, EVENT_DEFAULTS, TARGETS, USER_DEFAULTS, RawLogs, field_bounds
from adsim.importers.encoding import feature_embeddings
from adsim.importers.parsing import Origin, SourceFile, read_delimited, seconds_since_first_midnight
from adsim.world.config import GOALS, ORGANIC_KINDS
from adsim.world.logs import SPLITS

KEY_FIELDS = ("user", "ad", "request", "item")
BOOL_FIELDS = ("click", "conversion", "privacy")
INT_FIELDS = ("position", "device", "placement", "n_slots", "age_bucket", "gender", "primary_device", "created_day")
FLOAT_FIELDS = ("propensity", "ranking_ecpm", "cost", "gmv", "bid", "roi_target", "daily_budget",
                "conversion_value", "dwell_s")
EVENT_FIELDS = ("user", "ad", "click", *EVENT_DEFAULTS)
AD_FIELDS = tuple(AD_DEFAULTS)
USER_FIELDS = tuple(USER_DEFAULTS)
ORGANIC_FIELDS = ("user", "item", "topic", "kind", "dwell_s")
TOP_KEYS = ("source", "file", "separator", "timestamp", "columns", "ads", "users", "constants", "ad_features",
            "organic")
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
    file: str | None = None
    """The impressions file inside a source folder (default: the folder's only delimited file besides the organic
    one)."""
    path: Path | None = None
    """The mapping file (named in errors). Relative file names (``file``, ``organic.file``) resolve against the
    source folder, not against the mapping's, so one mapping serves logs anywhere."""

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
        _check_constants(constants, where)
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
                   source=data.get("source"), file=data.get("file"), path=path)

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


def _typed(src: SourceFile, frame: str, name: str, column: str) -> np.ndarray:
    """The file's ``column`` as the type and range adsim field ``name`` of ``frame`` needs, every row checked."""
    target = TARGETS[frame].get(name)
    bounds, positive = field_bounds(frame, name)
    if name in BOOL_FIELDS:
        return src.numeric(column, bool, target)
    if name in INT_FIELDS:
        return src.numeric(column, int, target, bounds, positive)
    if name in FLOAT_FIELDS:
        return src.numeric(column, float, target, bounds, positive)
    values = src.text(column)
    allowed = {"goal": GOALS, "kind": ORGANIC_KINDS, "split": SPLITS}.get(name)
    if allowed is not None:
        bad = np.flatnonzero(~np.isin(values, allowed))
        if len(bad):
            raise src.error(f"{name} outside {list(allowed)}: {values[bad[0]]!r}", bad, column, target)
    return values


def _check_constants(constants: dict, where: str) -> None:
    """Each constant of the mapping has the type and range of its adsim field (checked before any file is read)."""
    for name, value in constants.items():
        frame = next(f for f in ("events", "ads", "users") if name in TARGETS[f] or f == "users")
        key = f"constants.{name}"
        allowed = {"goal": GOALS, "split": SPLITS}.get(name)
        if allowed is not None:
            if value not in allowed:
                raise AdSimDataError(f"{name} outside {list(allowed)}: {value!r}", file=where, column=key)
            continue
        if name in KEY_FIELDS or name in ("advertiser", "industry", "industry_l1", "region"):
            continue
        if name in BOOL_FIELDS:
            if value not in (True, False) or not isinstance(value, bool | int):
                raise AdSimDataError(f"{name} must be true or false (or 0/1), got {value!r}", file=where, column=key)
            continue
        if name not in (*INT_FIELDS, *FLOAT_FIELDS):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AdSimDataError(f"{name} must be a number, got {value!r}", file=where, column=key)
        if name in INT_FIELDS and value != int(value):
            raise AdSimDataError(f"{name} must be an integer, got {value!r}", file=where, column=key)
        (low, high), positive = field_bounds(frame, name)
        if not np.isfinite(value) or (positive and value <= 0) or (low is not None and value < low) or (
                high is not None and value > high):
            raise AdSimDataError(f"{name} = {value!r} is outside its range [{low}, {high}]"
                                 + (" and must be positive" if positive else ""), file=where, column=key)


def _times(src: SourceFile, column: str, unit: str, target: str = "requests.ts") -> pd.Series:
    if unit == "datetime":
        times = pd.to_datetime(src.frame[column], errors="coerce", utc=True)
    else:
        times = pd.to_datetime(src.numeric(column, float, target), unit=unit, errors="coerce", utc=True)
    times = pd.Series(times)
    bad = np.flatnonzero(times.isna().to_numpy())
    if len(bad):
        raise src.error(f"not a timestamp ({unit}): {src.frame[column].iloc[int(bad[0])]!r}", bad, column, target)
    return times


DELIMITED = (".csv", ".tsv", ".txt")


def source_files(src: str | Path, mapping: CsvMapping) -> tuple[Path, Path]:
    """The source folder (relative file names resolve against it) and the impressions file of ``src``: a file
    (its folder is the source folder), or a folder holding ``mapping.file`` or a single delimited file besides the
    organic one."""
    src = Path(src)
    if not src.is_dir():
        return src.parent, src
    if mapping.file is not None:
        return src, src / mapping.file
    organic = Path(mapping.organic["file"]).name if mapping.organic else None
    found = sorted(p for p in src.iterdir() if p.suffix.lower() in DELIMITED and p.name != organic)
    if len(found) != 1:
        named = [p.name for p in found]
        raise AdSimDataError(f"a source folder must hold one impressions file (.csv, .tsv or .txt besides the "
                             f"organic file), found {named or 'none'}; name it with the mapping's top-level "
                             "'file:' or pass the file itself", file=str(src))
    return src, found[0]


def read_raw(src: str | Path, mapping: str | Path | dict | CsvMapping, max_rows: int | None = None) -> RawLogs:
    """The canonical long format of a mapped file or folder (see the module docstring)."""
    if isinstance(mapping, CsvMapping):
        m = mapping
    elif isinstance(mapping, dict):
        m = CsvMapping.from_dict(mapping)
    else:
        m = CsvMapping.load(mapping)
    where = str(m.path) if m.path else "mapping"
    base, src = source_files(src, m)
    constants = {name: f"constants.{name} of {where}" for name in m.constants}
    source = read_delimited(src, sep=m.separator, required=m.named_columns(), nrows=max_rows)
    df = source.frame

    # ---- impressions
    stamps = _times(source, m.timestamp, m.timestamp_unit)
    events = pd.DataFrame({name: _typed(source, "events", name, column) for name, column in m.columns.items()})
    for name, value in m.constants.items():
        if name in EVENT_FIELDS and name not in events:
            events[name] = value
    events_origin = source.origin({**constants, **m.columns, "ts": m.timestamp})

    # ---- ads: attributes from each ad's first row (every row's value checked)
    first_ad = np.flatnonzero(~events["ad"].duplicated().to_numpy())
    ad_keys = events["ad"].to_numpy()[first_ad]
    order = np.argsort(ad_keys, kind="stable")
    ad_rows = first_ad[order]
    ads = pd.DataFrame({name: _typed(source, "ads", name, column)[ad_rows] for name, column in m.ads.items()},
                       index=pd.Index(ad_keys[order]))
    for name, value in m.constants.items():
        if name in AD_FIELDS and name not in ads:
            ads[name] = value
    ad_emb = feature_embeddings(len(ads), {c: source.numeric(c)[ad_rows] for c in m.ad_numeric},
                                {c: df[c].to_numpy()[ad_rows] for c in m.ad_categorical})
    ads_origin = source.origin({**constants, **m.ads}).take(ad_rows)

    # ---- users: attributes from each user's first row (every row's value checked)
    first_user = np.flatnonzero(~events["user"].duplicated().to_numpy())
    users = pd.DataFrame({name: _typed(source, "users", name, column)[first_user]
                          for name, column in m.users.items()},
                         index=pd.Index(events["user"].to_numpy()[first_user]))
    for name, value in m.constants.items():
        if name in USER_FIELDS and name not in users:
            users[name] = value
    users_origin = source.origin({**constants, **m.users}).take(first_user)

    # ---- organic views
    organic_items = organic_emb = organic_events = None
    origins: dict[str, Origin] = {}
    files = [source.info()]
    times = [stamps]
    if m.organic is not None:
        ofile = Path(m.organic["file"])
        if not ofile.is_absolute():
            ofile = base / ofile
        o = m.organic
        stamp = o["timestamp"] if isinstance(o["timestamp"], dict) else {"column": o["timestamp"]}
        ocols = o["columns"]
        feats = o.get("features") or {}
        needed = list(dict.fromkeys([*ocols.values(), stamp["column"], *(feats.get("numeric") or []),
                                     *(feats.get("categorical") or [])]))
        views = read_delimited(ofile, sep=o.get("separator", m.separator), required=needed)
        ostamps = _times(views, stamp["column"], stamp.get("unit", "datetime"), "organic_events.ts")
        organic_events = pd.DataFrame({name: _typed(views, "organic_events", name, column)
                                       for name, column in ocols.items() if name in ("user", "item", "dwell_s")})
        item_values = {name: _typed(views, "organic_items", name, ocols[name]) for name in ("topic", "kind")
                       if name in ocols}
        first_item = np.flatnonzero(~organic_events["item"].duplicated().to_numpy())
        item_rows = first_item[np.argsort(organic_events["item"].to_numpy()[first_item], kind="stable")]
        organic_items = pd.DataFrame({name: values[item_rows] for name, values in item_values.items()},
                                     index=pd.Index(organic_events["item"].to_numpy()[item_rows]))
        organic_emb = feature_embeddings(len(organic_items), {c: views.numeric(c)[item_rows]
                                                              for c in feats.get("numeric") or []},
                                         {c: views.frame[c].to_numpy()[item_rows]
                                          for c in feats.get("categorical") or []})
        files.append(views.info())
        seen = np.flatnonzero(np.isin(organic_events["user"].to_numpy(), users.index))  # views of users who never
        organic_events = organic_events.iloc[seen].reset_index(drop=True)  # saw an ad: no request follows them
        times.append(ostamps.iloc[seen].reset_index(drop=True))
        origins["organic_events"] = views.origin({**ocols, "ts": stamp["column"]}).take(seen)
        origins["organic_items"] = views.origin(ocols).take(item_rows)

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
                   notes=notes, origins={"events": events_origin, "ads": ads_origin, "users": users_origin,
                                         **origins})
