"""Bring your own logs: import real ad logs as adsim bundles (``adsim import --format FORMAT SRC --out DIR``).

Formats: ``obd`` (Open Bandit Dataset), ``ipinyou`` (iPinYou RTB impressions, with the market price to beat),
``taobao`` (the Taobao display-ad sample, over-sampled clicks re-weighted) and ``csv`` (any delimited file with a
column mapping, see ``docs/csv_mapping_example.yaml``). Each maps the source onto the six tables (every default it
invents is written into the manifest's ``import`` entry and documented in its module), validates them, and builds
a bundle through ``write_bundle``: the logs only (``import_logs``), or with the SIDs and reward models adapted to
real logs (``reward_models.pipeline.import_scenario``, what ``adsim import`` runs). Nothing is written when the
source is malformed.

Modules, one idea each: ``canonical`` (the long format and its defaults), ``parsing`` (files and clocks),
``encoding`` (codes and hashed embeddings), ``assemble`` (canonical logs -> tables), ``writing`` (tables -> bundle),
and one module per source format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adsim.data.bundle import BuildStep
from adsim.errors import AdSimOptionError
from adsim.importers.assemble import assemble
from adsim.importers.canonical import RawLogs
from adsim.importers.parsing import check_max_rows
from adsim.importers.writing import write_imported

FORMATS = ("obd", "ipinyou", "taobao", "csv")

__all__ = ["FORMATS", "check_options", "import_logs", "read_source"]


def check_options(format: str, src, *, mapping=None, max_rows: int | None = None, seed: int = 0,
                  behavior: str = "random", natural_ctr: float | None = None) -> None:
    """Every import option in range and meant for ``format``, or an ``AdSimOptionError`` naming the option."""
    if format not in FORMATS:
        raise AdSimOptionError(f"must be one of {FORMATS}, got {format!r}", option="format")
    check_max_rows(max_rows)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise AdSimOptionError(f"must be a non-negative integer, got {seed!r}", option="seed")
    if format == "obd":
        from adsim.importers.obd import BEHAVIORS

        if behavior not in BEHAVIORS:
            raise AdSimOptionError(f"must be one of {BEHAVIORS}, got {behavior!r}", option="behavior")
    elif behavior != "random":
        raise AdSimOptionError(f"applies to format 'obd' only, not {format!r}", option="behavior")
    if natural_ctr is not None and format != "taobao":
        raise AdSimOptionError(f"applies to format 'taobao' only, not {format!r}", option="natural_ctr")
    if natural_ctr is not None and (isinstance(natural_ctr, bool) or not isinstance(natural_ctr, int | float)
                                    or not 0 < natural_ctr < 1):
        raise AdSimOptionError(f"must be a probability strictly between 0 and 1, got {natural_ctr!r}",
                               option="natural_ctr")
    if format == "csv" and (mapping is None or src is None):
        raise AdSimOptionError("format 'csv' needs SRC (the file) and a mapping (--mapping FILE.yaml|json)",
                               option="mapping")
    if mapping is not None and format != "csv":
        raise AdSimOptionError(f"applies to format 'csv' only, not {format!r}", option="mapping")


def read_source(format: str, src: str | Path | None, *, mapping: str | Path | dict | None = None,
                max_rows: int | None = None, seed: int = 0, behavior: str = "random",
                natural_ctr: float | None = None) -> RawLogs:
    """Read ``src`` in ``format`` into the canonical long format (no ids, defaults or validation yet)."""
    check_options(format, src, mapping=mapping, max_rows=max_rows, seed=seed, behavior=behavior,
                  natural_ctr=natural_ctr)
    if format == "obd":
        from adsim.importers.obd import read_raw

        return read_raw(src, behavior, max_rows)
    if format == "ipinyou":
        from adsim.importers.ipinyou import read_raw

        return read_raw(src, max_rows)
    if format == "taobao":
        from adsim.importers.taobao import NATURAL_CTR, read_raw

        return read_raw(src, max_rows, seed, NATURAL_CTR if natural_ctr is None else natural_ctr)
    from adsim.importers.mapping import read_raw

    return read_raw(src, mapping, max_rows)


def import_logs(format: str, src: str | Path | None, out: str | Path, *, mapping: str | Path | dict | None = None,
                max_rows: int | None = None, seed: int = 0, behavior: str = "random",
                natural_ctr: float | None = None, steps: list[tuple[str, BuildStep]] | tuple = (),
                progress: bool = True, overwrite: bool = False) -> Path:
    """Import external logs into a bundle at ``out`` and return its path.

    Args:
        format: one of ``FORMATS``.
        src: the source file or directory; None reads the shared sample of ``obd``, ``ipinyou`` or ``taobao``.
        mapping: the column mapping of ``csv`` (a YAML/JSON file or a dict).
        max_rows: read at most this many rows (per file): small slices for tests.
        seed: the bundle's seed (SIDs, reward models; Taobao's synthetic clock).
        behavior: ``obd`` only: ``random`` or ``bts``, the behaviour policy's log.
        natural_ctr: ``taobao`` only: the natural CTR the over-sampled clicks are re-weighted to (default 0.05).
        steps: build steps after the logs; ``()`` (the default) writes the validated logs only,
            ``reward_models.pipeline.import_steps()`` adds SIDs and reward models.
    """
    raw = read_source(format, src, mapping=mapping, max_rows=max_rows, seed=seed, behavior=behavior,
                      natural_ctr=natural_ctr)
    return write_imported(assemble(raw), out, seed=seed, steps=steps, progress=progress, overwrite=overwrite)

