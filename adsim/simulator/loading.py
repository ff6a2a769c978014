"""Open a scenario bundle as a simulator context: SIDs, scorers, observation builder and request pools.

Contexts are cached per process, so the many env copies an RLlib runner or a vector env creates share one
scenario in memory (tables once, embeddings memory-mapped).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from adsim.data.bundle import Scenario, load_scenario
from adsim.errors import AdSimDataError
from adsim.simulator.observation import ObservationBuilder
from adsim.simulator.requests import RequestBatch, RequestStream, as_batch, take
from adsim.simulator.simulator import ProcessRewardConfig, Scorer, Simulator

_CONTEXTS: dict[tuple, SimulatorContext] = {}


@dataclass
class SimulatorContext:
    scenario: Scenario
    simulator: Simulator
    observations: ObservationBuilder
    split: str
    seed: int = 0
    process_scale: float = 1.0

    @cached_property
    def requests(self) -> RequestStream:
        return RequestStream(self.scenario, self.split, self.seed)

    @cached_property
    def mean_logged_value(self) -> float:
        """Mean model final_value of the logged (request, ad) pairs of a sample: the default reward unit."""
        imp = self.scenario.table("impressions")
        sample = imp.iloc[np.linspace(0, len(imp) - 1, min(len(imp), 2000)).astype(np.int64)]
        req = self.scenario.table("requests")
        rows = np.searchsorted(req["request_id"].to_numpy(), sample["request_id"].to_numpy())
        scores = self.simulator.scorer("model").score(take(as_batch(req), rows), sample["ad_id"].to_numpy()[:, None])
        return float(np.mean(scores.final_value)) or 1.0

    def reward_scale(self, options: Any) -> float:
        return options.reward_scale if options.reward_scale is not None else 1.0 / self.mean_logged_value

    def draw_requests(self, rng: np.random.Generator, n: int, arr_ratio: float) -> RequestBatch:
        return self.requests.sample(n, rng, arr_ratio)


def _bundle_sids(scenario: Scenario):
    from adsim.sid.pipeline import SidArtifacts

    path = scenario.path / "sid"
    if not path.is_dir():
        raise AdSimDataError("the bundle has no semantic IDs: run `adsim build` (it fits them) on this scenario",
                             file=str(path))
    return SidArtifacts.load(path)


def _bundle_scorers(scenario: Scenario) -> tuple[Scorer, Scorer | None]:
    from reward_models.scorer import RewardScorer, TruthScorer

    path = scenario.path / "reward_models"
    if not path.is_dir():
        raise AdSimDataError("the bundle has no reward models: run `adsim build` (it trains them) on this scenario",
                             file=str(path))
    model = RewardScorer.load(path, scenario)
    truth = TruthScorer(scenario, model.value_config) if scenario.manifest.get("has_ground_truth") else None
    return model, truth


def open_context(options: Any, scorer: Scorer | None = None, truth: Scorer | None = None) -> SimulatorContext:
    """The (cached) context for env ``options``; ``scorer``/``truth`` override the bundle's (tests, fakes)."""
    key = (str(options.scenario), options.seed, options.split, tuple(options.process_alphas), id(scorer), id(truth))
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    scenario = load_scenario(options.scenario, seed=options.seed)
    sids = _bundle_sids(scenario)
    if scorer is None:
        scorer, truth = _bundle_scorers(scenario)
    simulator = Simulator(scenario, sids.ad_codes, tuple(sids.tokenizer.codebook_sizes), scorer, truth,
                          ProcessRewardConfig(alphas=tuple(options.process_alphas)))
    context = SimulatorContext(scenario, simulator, ObservationBuilder(scenario, sids.ad_codes, sids.organic_codes),
                               options.split, options.seed)
    context.mean_logged_value  # noqa: B018  (computed now, so its buffers are released below)
    _CONTEXTS[key] = context
    release_unused_memory()
    return context


def release_unused_memory() -> None:
    """Hand the memory freed while building a context back to the OS (glibc and Arrow keep it otherwise).

    Env processes are many and long-lived; without this each keeps ~100 MB of freed build-time buffers.
    """
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
