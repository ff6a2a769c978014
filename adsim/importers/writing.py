"""Writing assembled logs as a bundle: validated first (nothing is written if they are bad), then the build steps.

The steps are the caller's: ``()`` writes the logs only; ``reward_models.pipeline.import_steps()`` adds the SIDs
and the reward models adapted to real logs (``reward_models.pipeline.import_scenario`` does both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from adsim.data.bundle import BuildStep, Scenario, array_path, write_bundle
from adsim.data.validate import validate_tables
from adsim.errors import AdSimDataError
from adsim.importers.canonical import ImportedLogs


def request_arrays_step(arrays: Mapping[str, np.ndarray]) -> BuildStep:
    """A build step writing per-request arrays (aligned with ``requests``) into the bundle's ``arrays/``."""

    def step(root: Path, scenario: Scenario, progress: bool) -> dict:
        n = len(scenario.table("requests"))
        out = {}
        for name, values in arrays.items():
            if len(values) != n:
                raise AdSimDataError(f"{name} has {len(values)} rows, requests has {n}", column=name)
            np.save(array_path(root, name), np.ascontiguousarray(values))
            out[name] = {"dtype": str(values.dtype), "min": float(values.min()), "median": float(np.median(values)),
                         "max": float(values.max())}
        return out

    return step


def check_imported(logs: ImportedLogs) -> None:
    """Validate the assembled tables (schemas, values, references, sanity), reporting a problem in the user's terms:
    the user's file, column (and the adsim field it became) and data rows, through the tables' origins."""
    try:
        validate_tables(logs.tables, {name: name for name in logs.tables}, sanity=True)
    except AdSimDataError as e:
        origin = logs.origins.get(e.file)
        if origin is None:
            raise
        adsim = f"{e.file}.{e.column}" if e.column else e.file
        raise origin.error(e.message, e.rows, e.column, adsim) from None


ORGANIC_FALLBACK = ("no organic views imported: the reward models' organic interest features are NaN (an empty "
                    "history) and the env's organic history is empty (ad interactions only)")


def write_imported(logs: ImportedLogs, out: str | Path, *, seed: int = 0,
                   steps: Sequence[tuple[str, BuildStep]] = (), progress: bool = True,
                   overwrite: bool = False) -> Path:
    """Validate and write the bundle (nothing is written if anything fails), then run the build steps.

    Logs without organic views import too: the manifest's ``organic_fallback`` says what stands in for them (the
    reward models' interest-match features are NaN, as for any user with an empty history, and the env's organic
    history is empty: only ad interactions fill ``history_codes``).
    """
    check_imported(logs)
    steps = list(steps)
    extra = {**logs.manifest, "seed": int(seed)}
    if len(logs.tables["organic_events"]) == 0:
        extra["organic_fallback"] = ORGANIC_FALLBACK
    if logs.request_arrays:
        steps = [("request_arrays", request_arrays_step(logs.request_arrays)), *steps]
    return write_bundle(out, logs.tables, logs.arrays, logs.source, extra=extra, steps=steps, progress=progress,
                        overwrite=overwrite)
