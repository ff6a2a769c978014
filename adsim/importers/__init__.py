"""Bring your own logs: import real ad logs as adsim bundles (``adsim import --format FORMAT SRC --out DIR``).

Formats: ``obd`` (Open Bandit Dataset), ``ipinyou`` (iPinYou RTB impressions, with the market price to beat),
``taobao`` (the Taobao display-ad sample, over-sampled clicks re-weighted) and ``csv`` (any delimited file with a
column mapping, see ``docs/csv_mapping_example.yaml``). Each maps the source onto the six tables (every default it
invents is written into the manifest's ``import`` entry and documented in its module), validates them, and builds
a full bundle through ``write_bundle`` with the pipeline's steps (SIDs, reward models). Nothing is written when the
source is malformed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from adsim.data.bundle import BuildStep
from adsim.errors import AdSimError
from adsim.importers.common import RawLogs, assemble, import_steps, write_imported

FORMATS = ("obd", "ipinyou", "taobao", "csv")

__all__ = ["FORMATS", "add_import_parser", "import_logs", "import_steps", "read_source"]


def read_source(format: str, src: str | Path | None, *, mapping: str | Path | dict | None = None,
                max_rows: int | None = None, seed: int = 0, behavior: str = "random",
                natural_ctr: float | None = None) -> RawLogs:
    """Read ``src`` in ``format`` into the canonical long format (no ids, defaults or validation yet)."""
    if format == "obd":
        from adsim.importers.obd import read_raw

        return read_raw(src, behavior, max_rows)
    if format == "ipinyou":
        from adsim.importers.ipinyou import read_raw

        return read_raw(src, max_rows)
    if format == "taobao":
        from adsim.importers.taobao import NATURAL_CTR, read_raw

        return read_raw(src, max_rows, seed, NATURAL_CTR if natural_ctr is None else natural_ctr)
    if format == "csv":
        from adsim.importers.mapping import read_raw

        if mapping is None or src is None:
            raise AdSimError("format 'csv' needs SRC (the file) and a mapping (--mapping FILE.yaml|json)")
        return read_raw(src, mapping, max_rows)
    raise AdSimError(f"format must be one of {FORMATS}, got {format!r}")


def import_logs(format: str, src: str | Path | None, out: str | Path, *, mapping: str | Path | dict | None = None,
                max_rows: int | None = None, seed: int = 0, behavior: str = "random",
                natural_ctr: float | None = None, steps: list[tuple[str, BuildStep]] | None = None,
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
        steps: build steps after the logs; default ``import_steps()`` (the pipeline's SIDs and reward models);
            ``[]`` writes validated logs only.
    """
    raw = read_source(format, src, mapping=mapping, max_rows=max_rows, seed=seed, behavior=behavior,
                      natural_ctr=natural_ctr)
    return write_imported(assemble(raw), out, seed=seed, steps=steps, progress=progress, overwrite=overwrite)


def _run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    path = import_logs(args.format, args.src, args.out, mapping=args.mapping, max_rows=args.max_rows, seed=args.seed,
                       behavior=args.behavior, natural_ctr=args.natural_ctr, steps=[] if args.logs_only else None,
                       progress=not args.quiet, overwrite=args.overwrite)
    print(f"imported {path} in {time.perf_counter() - started:.1f}s")


def add_import_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``import`` subcommand to ``adsim``'s subparsers (``args.func(args)`` runs it)."""
    p = subparsers.add_parser("import", help="import real logs (obd, ipinyou, taobao, csv + mapping) as a bundle",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", nargs="?", type=Path, help="source file or directory (default for obd, ipinyou, taobao: "
                                                     "the shared sample)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="bundle directory to create")
    p.add_argument("--mapping", type=Path, help="csv: the column mapping (YAML or JSON)")
    p.add_argument("--behavior", default="random", choices=("random", "bts"), help="obd: which behaviour log")
    p.add_argument("--natural-ctr", type=float, help="taobao: natural CTR to re-weight clicks to (default 0.05)")
    p.add_argument("--max-rows", type=int, help="read at most this many rows per file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logs-only", action="store_true", help="write the validated logs without SIDs or reward models")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
    return p
