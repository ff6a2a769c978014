"""A bundle's ``manifest.json``: read safely, signed over its whole content, and checked field by field.

The manifest says what a bundle means: the seed, generator and format versions and the world config that
regenerate its ground truth, and the sha256 of every file (``files``). A bundle is therefore only as trustworthy as
its manifest, so the manifest protects itself: ``manifest_sha256`` is the sha256 of every other field (canonical
JSON), and a manifest that does not match it, or that has no ``files`` map, is refused. Editing the seed, deleting
the file map or swapping a file's checksum is then an error instead of a silently different bundle.

Manifests written before the signature existed (no ``manifest_version``) still open, with an ``AdSimWarning``:
their file map is checked as before, but their other fields are not protected. This is a checksum against edits and
corruption, not a defence against someone who recomputes it on purpose.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from adsim.errors import AdSimDataError, AdSimWarning

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
"""1 (no ``manifest_version`` field): unsigned. 2: ``manifest_sha256`` signs every other field."""
SIGNATURE = "manifest_sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_BYTES = 64 << 20


def canonical_digest(manifest: dict) -> str:
    """sha256 of the manifest without its signature, as sorted compact JSON (stable across load/dump)."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sign(manifest: dict) -> dict:
    """``manifest`` with ``manifest_version`` and the signature over everything else."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    body["manifest_version"] = MANIFEST_VERSION
    return {**body, SIGNATURE: canonical_digest(body)}


def read_manifest(path: Path) -> dict:
    """The parsed manifest at ``path``, or an ``AdSimDataError`` naming it (missing, unreadable, not UTF-8 JSON, not
    an object)."""
    if not path.is_file():
        raise AdSimDataError("not an adsim bundle: manifest.json is missing (run `adsim build`)", file=str(path))
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise AdSimDataError(f"manifest is {size} bytes, more than any bundle writes: not a manifest",
                                 file=str(path))
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise AdSimDataError(f"manifest is not UTF-8 text (byte {e.start}): corrupt or not a manifest",
                             file=str(path)) from None
    except OSError as e:
        raise AdSimDataError(f"cannot read the manifest: {e.strerror or e}", file=str(path)) from None
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise AdSimDataError(f"manifest is not valid JSON: {e}", file=str(path)) from None
    if not isinstance(manifest, dict):
        raise AdSimDataError(f"manifest must be a JSON object, got a JSON {type(manifest).__name__}",
                             file=str(path))
    return manifest


def _field_error(file: str, key: str, message: str) -> AdSimDataError:
    return AdSimDataError(message, file=file, column=key)


def check_signature(manifest: dict, file: str) -> None:
    """Refuse a signed manifest that was edited, and warn about an unsigned (pre-signature) one."""
    version = manifest.get("manifest_version")
    if version is None and SIGNATURE not in manifest:
        warnings.warn(f"{file}: the manifest predates manifest signatures: its seed, config and versions are not "
                      "protected against edits (rebuild the bundle to sign it)", AdSimWarning, stacklevel=3)
        return
    if not isinstance(version, int) or isinstance(version, bool) or version < MANIFEST_VERSION:
        raise _field_error(file, "manifest_version", f"manifest_version must be {MANIFEST_VERSION}, got {version!r}")
    if version > MANIFEST_VERSION:
        raise _field_error(file, "manifest_version", f"manifest_version {version} was written by a newer adsim "
                           f"(this one reads {MANIFEST_VERSION}): upgrade adsim")
    signature = manifest.get(SIGNATURE)
    if not isinstance(signature, str):
        raise _field_error(file, SIGNATURE, "the manifest's signature is missing: it was edited or truncated")
    if signature != canonical_digest(manifest):
        raise _field_error(file, SIGNATURE, "the manifest does not match its signature: a field (seed, config, "
                           "versions, the file map, ...) was edited after the bundle was built; rebuild it")


def check_files(files, file: str, required: Iterable[str]) -> dict[str, str]:
    """The ``files`` map as {relative posix path: sha256}, or an error: absent, empty, a path that leaves the
    bundle, a checksum that is not sha256 hex, or a required file not listed."""
    if files is None:
        raise _field_error(file, "files", "the manifest has no file map ('files'): its checksums cannot be "
                           "checked, so the bundle is refused; rebuild it")
    if not isinstance(files, dict) or not files:
        raise _field_error(file, "files", f"the file map must be a non-empty object, got {type(files).__name__}")
    for rel, digest in files.items():
        pure = PurePosixPath(rel)
        if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel or rel != pure.as_posix():
            raise _field_error(file, "files", f"file map entry {rel!r} is not a path inside the bundle")
        if rel == MANIFEST:
            raise _field_error(file, "files", "the file map lists the manifest itself")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _field_error(file, "files", f"file map entry {rel!r} has no sha256 checksum: {digest!r}")
    missing = [rel for rel in required if rel not in files]
    if missing:
        raise _field_error(file, "files", f"the file map does not list {missing}")
    return files


def _int(manifest: dict, key: str, file: str, minimum: int = 0, optional: bool = False) -> int | None:
    value = manifest.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _field_error(file, key, f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def check_fields(manifest: dict, file: str, tables: Iterable[str]) -> None:
    """Types and consistency of the fields that decide what the bundle means (after ``format_version``)."""
    source = manifest.get("source")
    if not isinstance(source, str) or not source:
        raise _field_error(file, "source", f"source must be a non-empty string, got {source!r}")
    truth = manifest.get("has_ground_truth")
    if not isinstance(truth, bool):
        raise _field_error(file, "has_ground_truth", f"has_ground_truth must be true or false, got {truth!r}")
    if truth:
        if not isinstance(manifest.get("config"), dict):
            raise _field_error(file, "config", "has_ground_truth is true but config is not a world config object "
                               f"(got {type(manifest.get('config')).__name__}): the ground truth cannot be "
                               "regenerated")
        _int(manifest, "seed", file)
        _int(manifest, "generator_version", file, minimum=1)
    else:
        _int(manifest, "seed", file, optional=True)
        if manifest.get("config") is not None and not isinstance(manifest["config"], dict):
            raise _field_error(file, "config", "config must be an object or null")
    rows = manifest.get("rows")
    if not isinstance(rows, dict):
        raise _field_error(file, "rows", f"rows must be an object of row counts per table, got {rows!r}")
    for name in tables:
        count = rows.get(name)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _field_error(file, "rows", f"rows[{name!r}] must be a row count, got {count!r}")
    for step in ("sid", "reward_models", "import"):
        if step in manifest and not isinstance(manifest[step], dict):
            raise _field_error(file, step, f"{step} must be an object, got {type(manifest[step]).__name__}")
