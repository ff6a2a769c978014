"""The tokenizer interface, input checks and the versioned, checksummed on-disk format shared by every tokenizer.

A saved tokenizer is a directory with ``meta.json`` (format version, kind, config, small JSON state, checksum) and
``arrays.npz`` (codebooks, weights, bin edges). The checksum covers both, so a truncated or edited artifact is refused
instead of silently producing other codes. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError

FORMAT_VERSION = 1
"""Bumped whenever the meaning of a saved field changes; loading another version is refused."""

META_FILE = "meta.json"
ARRAYS_FILE = "arrays.npz"

_REGISTRY: dict[str, type[SidTokenizer]] = {}


def register(cls: type[SidTokenizer]) -> type[SidTokenizer]:
    """Class decorator: makes ``load_tokenizer`` find ``cls`` by its ``kind``."""
    _REGISTRY[cls.kind] = cls
    return cls


# ----------------------------------------------------------------------------------------------- input checks


def check_embeddings(embeddings: Any, *, name: str = "embeddings", dim: int | None = None) -> np.ndarray:
    """Return ``embeddings`` as a C-contiguous ``(N, D) float64`` array, or raise naming ``name``.

    Args:
        embeddings: array-like of shape (N, D).
        name: the argument name used in error messages.
        dim: the dimension the tokenizer was fitted on; a different D is an error.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise AdSimDataError(f"{name} contain NaN or inf", rows=bad)
    if dim is not None and x.shape[1] != dim:
        raise AdSimDataError(f"{name} have {x.shape[1]} dimensions, expected {dim} (the dimension fitted on)")
    return x


def check_codebook_sizes(sizes: Any, name: str = "codebook_sizes") -> tuple[int, ...]:
    """Validate a per-level codebook size list: at least one level, every size an int >= 2."""
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise ValueError(f"{name} must name at least one level")
    if min(sizes) < 2:
        raise ValueError(f"{name} must all be >= 2 (a 1-code level carries no information), got {sizes}")
    return sizes


def check_enough_items(n_items: int, sizes: tuple[int, ...], name: str = "embeddings") -> None:
    """k-means cannot place K centroids on fewer than K items, and an RQ-VAE trained on them would collapse."""
    if n_items < max(sizes):
        raise AdSimDataError(f"{name} has {n_items} items, fewer than the {max(sizes)} codes of the largest level")


# ----------------------------------------------------------------------------------------------- interface


class SidTokenizer(ABC):
    """Maps items to L-level code paths, coarse to fine: ``fit``, ``encode``, ``codebook_sizes``, ``save``/``load``.

    Subclasses describe their state with ``_get_state`` / ``_set_state`` and the base class does the file format.
    """

    kind: ClassVar[str]

    @property
    @abstractmethod
    def codebook_sizes(self) -> tuple[int, ...]:
        """Number of codes at each level; every code of level l is in ``[0, codebook_sizes[l])``."""

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    @abstractmethod
    def is_fitted(self) -> bool: ...

    @abstractmethod
    def fit(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> Self:
        """Learn the codebooks from ``(N, D)`` embeddings (and per-item attributes where the tokenizer uses them)."""

    @abstractmethod
    def encode(self, embeddings: np.ndarray, attrs: pd.DataFrame | None = None) -> np.ndarray:
        """Code paths of the items: ``(N, L) int64``; deterministic for a fitted tokenizer."""

    @abstractmethod
    def _get_state(self) -> tuple[dict, dict, dict[str, np.ndarray]]:
        """(config as JSON, small JSON state, named arrays) describing the fitted tokenizer."""

    @classmethod
    @abstractmethod
    def _from_state(cls, directory: Path, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> Self: ...

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")

    def save(self, directory: str | Path) -> Path:
        """Write ``meta.json`` + ``arrays.npz`` into ``directory`` (created if needed) and return it."""
        self._require_fitted()
        config, state, arrays = self._get_state()
        return write_state(directory, kind=self.kind, config=config, state=state, arrays=arrays)

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Load a tokenizer of this class saved by ``save``; refuses other kinds, versions and corrupted files."""
        directory = Path(directory)
        config, state, arrays = read_state(directory, kind=cls.kind)
        return cls._from_state(directory, config, state, arrays)


class SemanticTokenizer(SidTokenizer):
    """A tokenizer of content embeddings alone (``attrs`` is accepted for the common interface and ignored).

    Semantic tokenizers can also ``decode`` a code path back to an embedding, which measures reconstruction error.
    """

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding dimension the tokenizer was fitted on."""

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruct ``(N, D) float64`` embeddings from ``(N, L)`` code paths."""

    def check_codes(self, codes: Any) -> np.ndarray:
        """``codes`` as ``(N, L) int64``, each code inside its level's codebook, or a ValueError naming ``codes``."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.num_levels or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be an (N, {self.num_levels}) integer array, got {codes.dtype} {codes.shape}")
        if codes.size and ((codes < 0).any() or (codes >= np.asarray(self.codebook_sizes)).any()):
            raise ValueError(f"codes must lie in [0, codebook_sizes) = {self.codebook_sizes} at each level")
        return codes.astype(np.int64)


def load_tokenizer(directory: str | Path) -> SidTokenizer:
    """Load any saved tokenizer, dispatching on the ``kind`` recorded in its ``meta.json``."""
    kind = _read_meta(Path(directory)).get("kind")
    if kind not in _REGISTRY:
        raise AdSimDataError(f"unknown tokenizer kind {kind!r}; known: {sorted(_REGISTRY)}",
                             file=str(Path(directory) / META_FILE))
    return _REGISTRY[kind].load(directory)


# ----------------------------------------------------------------------------------------------- file format


def config_to_json(config: Any) -> dict:
    """A config dataclass as plain JSON (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_json(cls: type, data: dict) -> Any:
    """Inverse of ``config_to_json``: lists become tuples again so that configs compare equal after a round trip."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise AdSimDataError(f"saved {cls.__name__} has unknown fields {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _checksum(kind: str, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"kind": kind, "config": config, "state": state}, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_state(directory: str | Path, *, kind: str, config: dict, state: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write one artifact: arrays to ``arrays.npz`` and everything else plus a sha256 over both to ``meta.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / ARRAYS_FILE, **arrays)
    meta = {
        "format": "adsim.sid",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "state": state,
        "sha256": _checksum(kind, config, state, arrays),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def _read_meta(directory: Path) -> dict:
    path = directory / META_FILE
    if not path.is_file():
        raise AdSimDataError("no saved tokenizer here: meta.json is missing", file=str(path))
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise AdSimDataError(f"meta.json is not valid JSON: {e}", file=str(path)) from None
    if not isinstance(meta, dict):
        raise AdSimDataError(f"meta.json must be a JSON object, got a JSON {type(meta).__name__}", file=str(path))
    if meta.get("format") != "adsim.sid" or meta.get("format_version") != FORMAT_VERSION:
        raise AdSimDataError(
            f"incompatible SID artifact: format {meta.get('format')!r} version {meta.get('format_version')!r}, "
            f"this adsim reads adsim.sid version {FORMAT_VERSION}", file=str(path))
    for key, kind in (("kind", str), ("config", dict), ("state", dict), ("sha256", str)):
        if not isinstance(meta.get(key), kind):
            raise AdSimDataError(f"meta.json field {key!r} is missing or not a {kind.__name__}", file=str(path),
                                 column=key)
    return meta


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles), or an ``AdSimDataError`` naming it when it is missing,
    truncated or not an ``.npz`` archive."""
    if not path.is_file():
        raise AdSimDataError(f"{path.name} is missing", file=str(path))
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with loaded as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise AdSimDataError(f"not a readable .npz archive ({type(e).__name__}: {e}): truncated or corrupt",
                             file=str(path)) from None


def read_state(directory: str | Path, *, kind: str) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """Read and verify an artifact written by ``write_state``: (config, state, arrays)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    if meta["kind"] != kind:
        raise AdSimDataError(f"saved artifact is a {meta['kind']!r}, expected {kind!r}", file=str(directory))
    arrays = read_npz(directory / ARRAYS_FILE)
    if _checksum(kind, meta["config"], meta["state"], arrays) != meta["sha256"]:
        raise AdSimDataError("checksum mismatch: the saved files were modified or are incomplete", file=str(directory))
    return meta["config"], meta["state"], arrays
