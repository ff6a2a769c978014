"""Scenario bundles: a directory of Parquet tables, arrays and a self-describing ``manifest.json``.

A bundle is written into a temporary sibling directory and renamed into place only when complete, so an
interrupted build never leaves a half bundle that loads. Later pipeline stages (SIDs, reward models) add
their artifacts through the ``steps`` the caller passes (``reward_models.pipeline.default_steps()``) before that
rename; this module never trains anything itself.

Synthetic logs are generated in user shards, in this process or as Ray tasks (``build_scenario(ray_address=...)``,
``adsim.world.shards``); either way each day's shards are merged into time order before they are written, so a
bundle has one time-ordered Parquet file per table (one row group per day) and the same bytes however it was built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from adsim.data import cache
from adsim.data.cache import sha256
from adsim.data.integrity import (
    check_array,
    check_config,
    check_world_ads,
    clean_stale_builds,
    load_array,
    lock,
    unlock,
)
from adsim.data.manifest import MANIFEST, check_fields, check_files, check_signature, read_manifest, sign
from adsim.data.schema import TABLES, arrow_schema
from adsim.data.validate import validate_tables
from adsim.errors import AdSimDataError, AdSimError, AdSimOptionError
from adsim.paths import cache_dir
from adsim.world.config import PRESETS, WorldConfig, preset
from adsim.world.logs import DayLogs, generate_logs
from adsim.world.shards import generate_logs_ray
from adsim.world.world import World

FORMAT_VERSION = 1
"""Bumped when the bundle layout changes incompatibly."""
GENERATOR_VERSION = 4
"""Bumped when the same config and seed would generate a different bundle (logs, SIDs or reward models); part of the
preset cache key. v4: reward models sized to their data, with a quality gate."""
ARRAYS = ("ad_embeddings", "organic_embeddings")
ARRAY_ROWS = {"ad_embeddings": "ads", "organic_embeddings": "organic_items"}
"""The table each array has one row per entity of (per-request arrays, ``request_*``, follow ``requests``)."""
ARTIFACT_DIRS = ("tables", "arrays", "sid", "reward_models")
"""Directories whose files the simulator reads: every file in them must be in the manifest's file map."""

BuildStep = Callable[[Path, "Scenario", bool], dict]
"""A stage run on the finished logs inside the temporary bundle: (root, scenario, progress) -> manifest entry."""


def _package_version() -> str:
    from adsim import __version__

    return __version__


def table_path(root: Path, name: str) -> Path:
    return root / "tables" / f"{name}.parquet"


def array_path(root: Path, name: str) -> Path:
    return root / "arrays" / f"{name}.npy"


def _to_arrow(name: str, df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, schema=arrow_schema(name), preserve_index=False).replace_schema_metadata(None)


def write_table(root: Path, name: str, df: pd.DataFrame) -> None:
    path = table_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_to_arrow(name, df), path)


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest, by relative path."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(root).as_posix(): sha256(p) for p in files}


def write_manifest(root: Path, manifest: dict) -> None:
    """The manifest with the checksum of every file in ``root``, signed (``adsim.data.manifest``), written
    atomically."""
    manifest = sign({**manifest, "files": checksums(root)})
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, root / MANIFEST)


def publish(tmp: Path, out: Path, overwrite: bool) -> Path:
    """Move a finished temporary bundle into place atomically (rename), replacing ``out`` only if asked."""
    if out.exists():
        if not overwrite:
            shutil.rmtree(tmp)
            raise AdSimError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        trash = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        try:
            os.replace(tmp, out)
        except OSError:  # another process published the same bundle meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            raise AdSimError(f"{out} already exists") from None
    return out


def _assemble(out: str | Path, write: Callable[[Path], dict], steps: Sequence[tuple[str, BuildStep]], progress: bool,
              overwrite: bool) -> Path:
    """Write a bundle into a temporary sibling (``write`` returns the manifest), run ``steps``, then publish it."""
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_builds(out.parent)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    held = lock(tmp)  # a live build: other processes' clean_stale_builds leave it alone
    try:
        manifest = {"format_version": FORMAT_VERSION, "package_version": _package_version(), **write(tmp)}
        write_manifest(tmp, manifest)
        for name, step in steps:
            manifest[name] = step(tmp, Scenario(tmp, validate=False), progress)
            write_manifest(tmp, manifest)
        return publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        unlock(held)


def build_scenario(
    out: str | Path,
    preset_name: str = "small",
    seed: int = 0,
    config: WorldConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    steps: Sequence[tuple[str, BuildStep]] = (),
    *,
    ray_address: str | None = None,
    n_shards: int | None = None,
    num_workers: int | None = None,
) -> Path:
    """Generate a synthetic world's logs, then run the named ``steps`` (SIDs, reward models), into ``out``.

    Args:
        ray_address: None generates the logs' user shards in sequence in this process (the default). ``"local"``
            runs them as Ray tasks on a private Ray on this machine, any other value on that Ray cluster
            (``adsim.world.shards``); a Ray already initialised in this process is used as it is. Every choice
            writes the identical bundle.
        n_shards: user shards (default: the config's). Part of the data: the manifest's config records it.
        num_workers: shard-days generated at once with Ray (default: every CPU of the cluster).
    """
    check_build_options(preset_name if config is None else None, seed, n_shards, num_workers, ray_address)
    config = config or preset(preset_name)
    if n_shards is not None:
        config = config.replace(n_shards=n_shards)

    def write(root: Path) -> dict:
        world = World(config, seed)
        days = generate_logs(world) if ray_address is None else generate_logs_ray(world, ray_address, num_workers)
        return {
            "generator_version": GENERATOR_VERSION,
            "source": "synthetic",
            "has_ground_truth": True,
            "preset": preset_name if config == PRESETS.get(preset_name) else "custom",
            "seed": int(seed),
            "config": config.to_dict(),
            "rows": _write_logs(root, world, days, progress),
        }

    return _assemble(out, write, steps, progress, overwrite)


def _positive_int(value, option: str, minimum: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum):
        raise AdSimOptionError(f"must be an integer >= {minimum}, got {value!r}", option=option)


def check_build_options(preset_name: str | None, seed, n_shards=None, num_workers=None, ray_address=None) -> None:
    """``build_scenario``'s options in range, or an ``AdSimOptionError`` naming the option."""
    if preset_name is not None and preset_name not in PRESETS:
        raise AdSimOptionError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}", option="preset")
    if seed is None:
        raise AdSimOptionError("must be a non-negative integer, got None", option="seed")
    _positive_int(seed, "seed", minimum=0)
    _positive_int(n_shards, "n_shards")
    _positive_int(num_workers, "num_workers")
    if num_workers is not None and ray_address is None:
        raise AdSimOptionError("needs a ray_address ('local' or a cluster's)", option="num_workers")


def write_bundle(
    out: str | Path,
    tables: Mapping[str, pd.DataFrame],
    arrays: Mapping[str, np.ndarray],
    source: str,
    extra: Mapping | None = None,
    steps: Sequence[tuple[str, BuildStep]] = (),
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """A bundle from ready tables (imported real logs): validated first, nothing written if they are bad.

    Real logs have no ground truth: the manifest says so, and ``Scenario.world`` then refuses.
    """
    validate_tables(tables, {name: f"{source}:{name}" for name in tables}, sanity=True)
    missing = [name for name in TABLES if name not in tables] + [name for name in ARRAYS if name not in arrays]
    if missing:
        raise AdSimDataError(f"an imported bundle needs every table and array; missing {missing}")

    def write(root: Path) -> dict:
        for name in TABLES:
            write_table(root, name, tables[name])
        (root / "arrays").mkdir()
        for name in ARRAYS:
            np.save(array_path(root, name), np.ascontiguousarray(arrays[name], dtype=np.float32))
        return {"source": source, "has_ground_truth": False, "preset": None, "seed": None, "config": None,
                "rows": {name: len(tables[name]) for name in TABLES}, **dict(extra or {})}

    return _assemble(out, write, steps, progress, overwrite)


def _write_logs(root: Path, world: World, days: Iterator[DayLogs], progress: bool) -> dict[str, int]:
    """Static tables at once, then the logs streamed day by day (one row group per day) as ``days`` yields them."""
    rows = {}
    for name, df in (("users", world.users.table), ("ads", world.ads.table), ("organic_items", world.organic.table)):
        write_table(root, name, df)
        rows[name] = len(df)
    (root / "arrays").mkdir()
    np.save(array_path(root, "ad_embeddings"), world.ads.embeddings)
    np.save(array_path(root, "organic_embeddings"), world.organic.embeddings)

    streamed = ("requests", "impressions", "organic_events")
    writers = {name: pq.ParquetWriter(table_path(root, name), arrow_schema(name)) for name in streamed}
    rows.update({name: 0 for name in streamed})
    bar = tqdm(total=world.config.n_days, desc="days", unit="day", disable=not progress)
    try:
        for day in days:
            for name in streamed:
                df = getattr(day, name)
                writers[name].write_table(_to_arrow(name, df))
                rows[name] += len(df)
            bar.update()
            bar.set_postfix(requests=rows["requests"], impressions=rows["impressions"])
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()
        if hasattr(days, "close"):  # a generator on Ray: end its Ray session now, not at garbage collection
            days.close()
    return rows


# ---------------------------------------------------------------------------------------------- loading
_VALIDATED: set[tuple[str, str, bool]] = set()


class Scenario:
    """An opened bundle. Tables load lazily (memory-mapped Arrow copies, ``adsim.data.cache``); arrays are
    memory-mapped read-only.

    Opening reads and checks the manifest (``adsim.data.manifest``: its signature, file map and fields), so a
    bundle whose manifest was edited or lacks a file map never opens; ``validate`` (the default) then checks the
    files themselves.
    """

    def __init__(self, path: str | Path, validate: bool = True):
        self.path = Path(path)
        manifest_file = self.path / MANIFEST
        file = str(manifest_file)
        self.manifest: dict = read_manifest(manifest_file)
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise AdSimDataError(
                f"bundle format version {version} is incompatible with this adsim (expects {FORMAT_VERSION}); "
                "rebuild it with `adsim build`", file=file, column="format_version")
        check_signature(self.manifest, file)
        required = [f"tables/{name}.parquet" for name in TABLES] + [f"arrays/{name}.npy" for name in ARRAYS]
        self.files: dict[str, str] = check_files(self.manifest.get("files"), file, required)
        check_fields(self.manifest, file, TABLES)
        check_config(self.manifest, file)
        if validate:
            self.validate()

    def __repr__(self) -> str:
        rows = self.manifest.get("rows", {})
        return f"Scenario({str(self.path)!r}, preset={self.manifest.get('preset')!r}, rows={rows})"

    def validate(self, deep: bool = False) -> None:
        """Check everything the simulator and env read: every file against the manifest's checksum (and no
        unlisted file beside them), the Arrow caches against the Parquet files, every table's schema, values,
        references and sanity, row counts against the manifest, and every array (shape, dtype, finite values,
        one row per entity).

        ``deep`` (``adsim validate``) also compares each cached table with its Parquet file decoded afresh. SID
        and reward-model files are checked by their own layers (``adsim.sid.pipeline.check_bundle_sids``,
        ``reward_models.lightgbm_model.check_bundle_models``), which ``adsim validate`` runs too.
        """
        digest = hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()
        key = (str(self.path.resolve()), digest, deep)
        if key in _VALIDATED or (not deep and (key[0], digest, True) in _VALIDATED):
            return
        manifest_file = str(self.path / MANIFEST)
        for rel, expected in self.files.items():
            path = self.path / rel
            if not path.is_file():
                raise AdSimDataError("file listed in the manifest is missing", file=str(path))
            if sha256(path) != expected:
                raise AdSimDataError("checksum mismatch with manifest.json: the file was modified or is corrupt",
                                     file=str(path))
        for folder in ARTIFACT_DIRS:
            for path in sorted((self.path / folder).rglob("*")):
                rel = path.relative_to(self.path).as_posix()
                if path.is_file() and rel not in self.files:
                    raise AdSimDataError("file not listed in the manifest: the simulator would read a file no "
                                         "checksum vouches for (remove it, or rebuild the bundle)", file=str(path))
        for name in TABLES:
            _, rebuilt = cache.ensure_copy(table_path(self.path, name), self.files[f"tables/{name}.parquet"],
                                           "content" if deep else "digest")
            if rebuilt:
                self._tables.pop(name, None)
        tables = {name: self.table(name) for name in TABLES}
        has_truth = bool(self.manifest["has_ground_truth"])
        validate_tables(tables, {name: str(table_path(self.path, name)) for name in TABLES}, sanity=not has_truth)
        for name, table in tables.items():
            if len(table) != self.manifest["rows"][name]:
                raise AdSimDataError(f"table {name} has {len(table)} rows, the manifest says "
                                     f"{self.manifest['rows'][name]}", file=manifest_file, column="rows")
        if has_truth:
            check_world_ads(tables["ads"], self.config, str(table_path(self.path, "ads")))
        built = any(step in self.manifest for step in ("sid", "reward_models"))
        if built and not self.manifest.get("organic_fallback"):  # imports without organic views say so
            for name in ("organic_items", "organic_events"):
                if len(tables[name]) == 0:
                    raise AdSimDataError("the table is empty, but the bundle's SIDs, reward models and env history "
                                         "need organic content", file=str(table_path(self.path, name)))
        self._check_arrays(tables)
        _VALIDATED.add(key)

    def _check_arrays(self, tables: Mapping[str, pd.DataFrame]) -> None:
        dim = None
        for rel in sorted(self.files):
            if not rel.startswith("arrays/"):
                continue
            name = rel[len("arrays/"):-len(".npy")]
            if not rel.endswith(".npy") or "/" in name:
                raise AdSimDataError("the arrays folder holds only .npy files", file=str(self.path / rel))
            values = self.array(name)
            if name in ARRAY_ROWS:
                check_array(values, str(array_path(self.path, name)), len(tables[ARRAY_ROWS[name]]), dim=dim or 0,
                            name=name)
                dim = dim or values.shape[1]
            elif name.startswith("request_"):
                check_array(values, str(array_path(self.path, name)), len(tables["requests"]), name=name,
                            min_value=0.0)

    @property
    def config(self) -> WorldConfig | None:
        return check_config(self.manifest, str(self.path / MANIFEST))

    @cached_property
    def _tables(self) -> dict[str, pd.DataFrame]:
        return {}

    def table(self, name: str) -> pd.DataFrame:
        """The logged table ``name`` as a DataFrame (loaded once, then cached)."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; tables are {sorted(TABLES)}")
        if name not in self._tables:
            path = table_path(self.path, name)
            if not path.is_file():
                raise AdSimDataError("table file is missing", file=str(path))
            self._tables[name] = cache.mapped_frame(path, self.files.get(f"tables/{name}.parquet"))
        return self._tables[name]

    def array(self, name: str) -> np.ndarray:
        """The array ``arrays/NAME.npy``, memory-mapped read-only after a header check (``load_array``)."""
        return load_array(array_path(self.path, name))

    @property
    def ad_embeddings(self) -> np.ndarray:
        return self.array("ad_embeddings")

    @property
    def organic_embeddings(self) -> np.ndarray:
        return self.array("organic_embeddings")

    @cached_property
    def world(self) -> World:
        """The ground truth behind a synthetic bundle, regenerated from its config and seed."""
        if not self.manifest.get("has_ground_truth"):
            raise AdSimError(f"{self.path} was imported from real logs and has no ground truth")
        generator = self.manifest.get("generator_version")
        if generator != GENERATOR_VERSION:
            raise AdSimDataError(f"the bundle was generated by generator version {generator}; this adsim's is "
                                 f"{GENERATOR_VERSION} and would regenerate a different ground truth from its seed "
                                 "(rebuild the bundle)", file=str(self.path / MANIFEST), column="generator_version")
        return World(self.config, self.manifest["seed"])


def preset_cache_path(name: str, seed: int) -> Path:
    return cache_dir() / f"{name}-seed{seed}-gen{GENERATOR_VERSION}"


def load_scenario(path_or_preset: str | Path = "small", seed: int = 0, validate: bool = True) -> Scenario:
    """Open and validate a bundle directory, or a preset already built into the cache.

    Opening never builds: a preset that is not built yet is an error naming the two ways to build it
    (``reward_models.pipeline.ensure_scenario`` builds on first use; ``gym.make`` and the CLI call it).
    """
    path = Path(path_or_preset).expanduser()
    if isinstance(path_or_preset, str) and path_or_preset in PRESETS and not path.exists():
        path = preset_cache_path(path_or_preset, seed)
        if not (path / MANIFEST).is_file():
            raise AdSimDataError(f"preset {path_or_preset!r} (seed {seed}) is not built yet: run `adsim build --preset "
                                 f"{path_or_preset} --seed {seed} --out {path}` or call "
                                 f"reward_models.pipeline.ensure_scenario({path_or_preset!r}, seed={seed})",
                                 file=str(path))
    elif not path.exists():
        raise AdSimDataError(f"no such bundle directory or preset; presets are {sorted(PRESETS)}", file=str(path))
    return Scenario(path, validate=validate)
