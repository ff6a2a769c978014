"""The memory-mapped Arrow copies of a bundle's Parquet tables: derived from the checksummed Parquet, never trusted.

The first reader of a table converts its Parquet file into an uncompressed Arrow IPC file in the cache, named by the
Parquet file's sha256; every process then maps that copy, so many env processes share one set of pages instead of
each holding its own. Beside it, a JSON sidecar records what the copy was derived from and what it must look like:
the Parquet checksum, size and row count, the schema, and the copy's own size and sha256.

A copy is checked before it is used, at three depths:

* ``open`` (every read): the sidecar parses and names this Parquet file, the sizes and row count match and the copy
  opens as Arrow IPC with the Parquet file's schema. A truncated or half-written copy fails here.
* ``digest`` (``Scenario.validate``, on load): also the copy's sha256 against the sidecar. A copy substituted
  behind the sidecar's back fails here.
* ``content`` (``adsim validate``): also the copy's table against the Parquet file decoded afresh, so even a
  substituted copy *and* sidecar are caught.

A copy that fails is rebuilt from the Parquet file, with an ``AdSimCacheWarning`` saying why; nothing in the bundle
is touched. Writes go to a temporary file renamed into place, so concurrent readers see either copy whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from adsim.errors import AdSimCacheWarning, AdSimDataError
from adsim.paths import cache_dir

Depth = Literal["open", "digest", "content"]
DEPTHS: tuple[Depth, ...] = ("open", "digest", "content")
CACHE_FORMAT = 1
STALE_TMP_S = 3600
"""Temporary copies older than this were left by a killed process and are removed."""


def sha256(path: Path) -> str:
    """sha256 of a file, read in 4 MB blocks (the bundle's checksums use it too)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _paths(digest: str) -> tuple[Path, Path]:
    root = cache_dir() / "tables"
    return root / f"{digest}.arrow", root / f"{digest}.json"


def _parquet_facts(path: Path) -> tuple[int, int, pa.Schema]:
    """(size, rows, schema) from the Parquet footer: cheap, no data pages read."""
    try:
        meta = pq.ParquetFile(path).metadata
        return path.stat().st_size, meta.num_rows, meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as e:
        raise AdSimDataError(f"not a readable Parquet file: {e}", file=str(path)) from None


def _decode(path: Path) -> pa.Table:
    try:
        return pq.read_table(path).unify_dictionaries().combine_chunks()
    except (pa.ArrowException, OSError) as e:
        raise AdSimDataError(f"not a readable Parquet file: {e}", file=str(path)) from None


def _open(arrow: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(arrow))).read_all()


def _problem(source: Path, digest: str, depth: Depth) -> str | None:
    """Why the cached copy of ``source`` cannot be used at ``depth``, or None if it can."""
    arrow, sidecar = _paths(digest)
    if not arrow.is_file():
        return "missing"
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "its sidecar is missing or unreadable"
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or meta.get("source_sha256") != digest:
        return "its sidecar describes another file"
    size, rows, schema = _parquet_facts(source)
    if meta.get("source_size") != size or meta.get("rows") != rows:
        return "its sidecar does not match the Parquet file's size or row count"
    if meta.get("arrow_size") != arrow.stat().st_size:
        return f"it is {arrow.stat().st_size} bytes, {meta.get('arrow_size')} expected (truncated or replaced)"
    try:
        table = _open(arrow)
    except (pa.ArrowException, OSError) as e:
        return f"it is not a readable Arrow file ({e})"
    if table.num_rows != rows or not table.schema.equals(schema, check_metadata=False):
        return "its schema or row count differs from the Parquet file's"
    if depth in ("digest", "content") and sha256(arrow) != meta.get("arrow_sha256"):
        return "its sha256 differs from the one recorded when it was derived (modified or replaced)"
    if depth == "content" and not table.equals(_decode(source)):
        return "its content differs from the Parquet file's"
    return None


def _build(source: Path, digest: str) -> None:
    arrow, sidecar = _paths(digest)
    arrow.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(arrow.parent)
    table = _decode(source)
    size, rows, _ = _parquet_facts(source)
    token = uuid.uuid4().hex[:8]
    tmp, tmp_meta = arrow.with_name(f".{arrow.name}.{token}"), sidecar.with_name(f".{sidecar.name}.{token}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        meta = {"format": CACHE_FORMAT, "source_sha256": digest, "source_size": size, "rows": rows,
                "arrow_size": tmp.stat().st_size, "arrow_sha256": sha256(tmp)}
        tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, arrow)  # the copy first: a reader never finds a sidecar describing a copy not there yet
        os.replace(tmp_meta, sidecar)
    finally:
        for path in (tmp, tmp_meta):
            path.unlink(missing_ok=True)


def _remove_stale_temporaries(directory: Path) -> None:
    """Temporary copies a killed process left behind (``.<digest>.arrow.<token>``), once older than an hour."""
    now = time.time()
    for path in directory.glob(".*.*"):
        try:
            if path.is_file() and now - path.stat().st_mtime > STALE_TMP_S:
                path.unlink()
        except OSError:  # another process removed or is replacing it
            pass


def ensure_copy(source: Path, digest: str, depth: Depth = "open") -> tuple[Path, bool]:
    """The checked cached copy of ``source`` (sha256 ``digest``), rebuilt first if it fails the check at ``depth``
    (see the module docstring); returns (its path, whether it was rebuilt from a bad copy)."""
    arrow, _ = _paths(digest)
    problem = _problem(source, digest, depth)
    if problem is None:
        return arrow, False
    if problem != "missing":
        warnings.warn(f"the cached Arrow copy {arrow} of {source} was rebuilt from the Parquet file: {problem}",
                      AdSimCacheWarning, stacklevel=3)
    _build(source, digest)
    return arrow, problem != "missing"


def mapped_frame(source: Path, digest: str | None, depth: Depth = "open") -> pd.DataFrame:
    """The Parquet table ``source`` as a DataFrame whose numeric columns live in a shared, read-only memory map.

    Args:
        source: the bundle's Parquet file.
        digest: its sha256 from the manifest (the cache key); None (a bundle being built) reads the file directly.
        depth: how thoroughly an existing copy is checked first (see the module docstring).
    """
    if digest is None:
        return _decode(source).to_pandas()
    try:
        arrow, _ = ensure_copy(source, digest, depth)
    except OSError as e:  # an unwritable cache: read the table directly, unshared
        warnings.warn(f"cannot write the Arrow cache for {source} ({e}); reading it without the cache",
                      AdSimCacheWarning, stacklevel=2)
        return _decode(source).to_pandas()
    return _open(arrow).to_pandas(split_blocks=True)
