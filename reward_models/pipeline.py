"""The scenario build pipeline: the stages that turn logs into a simulator-ready bundle, and presets built on first use.

This is the first layer that knows both the SIDs (``adsim.sid``) and the reward models, so the wiring lives here:
``adsim.build_scenario`` and ``adsim.importers.import_logs`` write logs and run whatever ``steps`` they are given,
``adsim.load_scenario`` only opens and validates, and ``ensure_scenario`` (used by ``gym.make`` and the CLI) builds
a preset into the cache the first time it is asked for.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from adsim.data.bundle import MANIFEST, BuildStep, Scenario, build_scenario, load_scenario, preset_cache_path
from adsim.data.manifest import SIGNATURE
from adsim.errors import AdSimError, AdSimWarning
from adsim.importers import import_logs
from adsim.sid.pipeline import semantic_codebook_sizes, sid_step
from adsim.simulator.branching import branching_step
from adsim.world.config import PRESETS
from reward_models.bundle import (
    QualityGate,
    RewardModelsConfig,
    bundle_sid_codes,
    bundle_step,
    train_reward_models,
)
from reward_models.value import ValueConfig

__all__ = ["default_steps", "ensure_scenario", "import_reward_step", "import_scenario", "import_steps",
           "semantic_codebook_sizes", "sid_step"]


def default_steps(allow_weak_models: bool = False) -> list[tuple[str, BuildStep]]:
    """Stages that turn logs into a simulator-ready bundle: SIDs, the branching they leave per level (recorded in
    the manifest), then reward models that use them.

    ``allow_weak_models``: record a reward model that fails its quality gate (constant, or AUC below the floor)
    in the manifest instead of failing the build (CLI: ``adsim build --allow-weak-models``).
    """
    models = bundle_step if not allow_weak_models else partial(bundle_step, gate=QualityGate(allow_failure=True))
    return [("sid", sid_step), ("branching", branching_step), ("reward_models", models)]


def ensure_scenario(path_or_preset: str | Path = "small", seed: int = 0, validate: bool = True,
                    progress: bool = True) -> Scenario:
    """``adsim.load_scenario``, except that a preset name not built yet is built (logs, SIDs, reward models) into
    the cache first and reused afterwards."""
    if isinstance(path_or_preset, str) and path_or_preset in PRESETS and not Path(path_or_preset).exists():
        path = preset_cache_path(path_or_preset, seed)
        stale = _unsigned(path / MANIFEST)
        if stale:
            warnings.warn(f"{path} was built by an adsim older than manifest signatures and may hold another world "
                          "than this version generates: rebuilding it", AdSimWarning, stacklevel=2)
        if stale or not (path / MANIFEST).is_file():
            try:
                build_scenario(path, path_or_preset, seed, progress=progress, steps=default_steps(), overwrite=stale)
            except AdSimError:
                if not (path / MANIFEST).is_file():  # another process published it first: use theirs
                    raise
    return load_scenario(path_or_preset, seed=seed, validate=validate)


def _unsigned(manifest: Path) -> bool:
    """A cached preset's manifest without a signature: built by a development version of the same generator."""
    try:
        return SIGNATURE not in json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False  # absent (built below) or unreadable (loading says why)


def import_scenario(format: str, src: str | Path | None, out: str | Path, **options) -> Path:
    """``adsim.importers.import_logs`` with the SIDs and the reward models adapted to real logs (``import_steps``):
    what ``adsim import`` runs. ``options`` are ``import_logs``'s keyword arguments."""
    options.setdefault("steps", import_steps())
    return import_logs(format, src, out, **options)


def import_reward_step(root: Path, scenario: Scenario, progress: bool) -> dict:
    """The reward-model build step, adapted to real logs that the default configuration cannot train on.

    Real logs often have no conversions at all (OBD, iPinYou's impression log, the Taobao sample) or only a few
    clicks (iPinYou: 5 in 12k impressions). With no conversions the pCVR model is fitted with ``min_positives=0``
    on every impression (``cvr_target="ctcvr"``: a validation split without clicks would leave the clicked-rows
    model no validation rows), so it predicts a constant near 0, and final_value drops its pCVR term (alphas
    ``{"pctr": 1}``); with fewer
    than 20 training clicks the pCTR model is fitted anyway (``min_positives=0``; with none it is a constant)
    and the manifest says so.
    Otherwise this is ``bundle_step`` unchanged.
    """
    imp, req = scenario.table("impressions"), scenario.table("requests")
    train = req["split"].astype(str).to_numpy()[imp["request_id"].to_numpy()] == "train"
    clicks = int(imp["click"].to_numpy()[train].sum())
    conversions = int(imp["conversion"].to_numpy()[train].sum())
    config = RewardModelsConfig(seed=int(scenario.manifest.get("seed") or 0))
    adjusted = []
    # real logs are what they are: a model that fails the gate is recorded in the manifest, not refused
    config.gate = QualityGate(allow_failure=True)
    if clicks < config.pctr.min_positives:
        config.pctr = replace(config.pctr, min_positives=0)
        adjusted.append(f"pctr trained on only {clicks} clicks (fewer than 20: low confidence)")
    if conversions < config.pcvr.min_positives:
        config.pcvr = replace(config.pcvr, min_positives=0)
        config.cvr_target = "ctcvr"  # fitted on every impression: a split with no click still has rows
        config.value = ValueConfig(alphas={"pctr": 1.0})
        adjusted.append(f"{conversions} conversions logged: pcvr is a constant near 0 and final_value = "
                        "eCPM + pCTR term only")
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # a split without clicks has no pCVR metrics: they are NaN in the manifest, not warnings
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        summary = train_reward_models(scenario, root / "reward_models", config, bundle_sid_codes(root))
    return {**summary, "import_adjustments": adjusted}


def import_steps(base: Sequence[tuple[str, BuildStep]] | None = None) -> list[tuple[str, BuildStep]]:
    """``default_steps()`` (or ``base``) with the reward-model step swapped for ``import_reward_step`` (appended
    if ``base`` has none)."""
    steps = [(name, import_reward_step if name == "reward_models" else step)
             for name, step in (default_steps() if base is None else base)]
    if "reward_models" not in [name for name, _ in steps]:
        steps.append(("reward_models", import_reward_step))
    return steps
