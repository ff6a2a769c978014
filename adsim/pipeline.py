"""The build pipeline after the logs: the stages ``adsim build`` and preset caching run, in order.

Each stage is ``(root, scenario, progress) -> manifest entry`` and writes into the temporary bundle; stages
from packages further down the data flow (reward models) are imported only when the pipeline runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adsim.data.bundle import BuildStep, Scenario


def semantic_codebook_size(n_items: int) -> int:
    """Codes per semantic level: the power of two nearest sqrt(n), within [8, 256] (16 on tiny, 64 on small)."""
    return int(np.clip(2 ** round(np.log2(np.sqrt(max(n_items, 1)))), 8, 256))


def sid_step(root: Path, scenario: Scenario, progress: bool) -> dict:
    """Fit the default SIDs (RQ-Kmeans+ with a Commercial SID last level) on every ad and organic item."""
    from adsim.sid.metrics import collision_rate
    from adsim.sid.pipeline import SidConfig, fit_scenario_sids

    n_ads = len(scenario.table("ads"))
    per_level = semantic_codebook_size(n_ads)
    config = SidConfig(seed=int(scenario.manifest.get("seed") or 0), semantic_codebook_sizes=(per_level, per_level),
                       vocab_budget=min(256, 4 * per_level))
    artifacts = fit_scenario_sids(np.asarray(scenario.ad_embeddings), scenario.table("ads"),
                                  np.asarray(scenario.organic_embeddings), config)
    artifacts.save(root / "sid")
    return {
        "tokenizer": config.tokenizer + ("+commercial" if config.commercial else ""),
        "codebook_sizes": list(map(int, artifacts.tokenizer.codebook_sizes)),
        "paths": int(len(np.unique(artifacts.ad_codes, axis=0))),
        "collision_rate": round(float(collision_rate(artifacts.ad_codes)), 4),
    }


def reward_model_step(root: Path, scenario: Scenario, progress: bool) -> dict:
    """Train the LightGBM pCTR/pCVR models (with the bundle's SIDs as features) into ``reward_models/``."""
    from reward_models.bundle import bundle_step

    return bundle_step(root, scenario, progress)


def default_steps() -> list[tuple[str, BuildStep]]:
    """Stages that turn logs into a simulator-ready bundle: SIDs, then reward models that use them."""
    return [("sid", sid_step), ("reward_models", reward_model_step)]
