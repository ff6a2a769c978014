"""Open a scenario bundle as a simulator context: SIDs, scorers, observation builder and request pools.

This is where the layers meet: the core's ``Simulator`` gets the bundle's SIDs (``adsim.sid``) and the reward models
that implement its ``Scorer`` contract (``reward_models``). Contexts are cached per process, so the many env copies
an RLlib runner or a vector env creates share one scenario in memory (tables once, embeddings memory-mapped).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from adsim.data.bundle import Scenario
from adsim.sid.pipeline import bundle_sids
from adsim.simulator.kernels import EpisodeTables, RequestTables
from adsim.simulator.requests import RequestBatch, RequestStream, as_batch, concat, take
from adsim.simulator.simulator import Popularity, ProcessRewardConfig, Scorer, Simulator
from envs.observation import CONTEXT_FEATURES, ObservationBuilder
from reward_models.pipeline import ensure_scenario
from reward_models.scorer import bundle_scorers

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

    def reward_scale(self, override: float | None = None) -> float:
        """The reward unit: ``override`` when given, else 1 / mean logged final_value (returns are then O(1))."""
        return override if override is not None else 1.0 / self.mean_logged_value

    def draw_requests(self, rng: np.random.Generator, n: int, arr_ratio: float) -> RequestBatch:
        return self.requests.sample(n, rng, arr_ratio)

    # ------------------------------------------------------------------------------------------ compiled episodes
    def request_table(self, synthetic: bool) -> RequestBatch:
        """The requests ``RequestStream.sample_rows`` indexes: the logged ones, then (``synthetic``) the ARR pool."""
        return self._with_pool if synthetic else self.requests.logged

    @cached_property
    def _with_pool(self) -> RequestBatch:
        return concat([self.requests.logged, self.requests.synthetic])

    def episode_tables(self, synthetic: bool) -> EpisodeTables:
        """What the episode kernels read, over ``request_table(synthetic)``."""
        return self._tables_with_pool if synthetic else self._tables_logged

    @cached_property
    def _tables_logged(self) -> EpisodeTables:
        return self._episode_tables(self.requests.logged)

    @cached_property
    def _tables_with_pool(self) -> EpisodeTables:
        return self._episode_tables(self._with_pool)

    def _episode_tables(self, table: RequestBatch) -> EpisodeTables:
        sim, obs = self.simulator, self.observations
        keys = (np.ascontiguousarray(table[c]) for c in ("user_id", "day", "ts"))
        columns = [np.asarray(table[c]) for c in CONTEXT_FEATURES]
        context = np.stack(columns).astype(np.result_type(*columns))
        tables = EpisodeTables(sim.trie.tables, sim.eligibility_tables, obs.tables, sim.process_tables,
                               np.ascontiguousarray(obs.user_features), RequestTables(*keys, context))
        release_unused_memory()
        return tables


def open_simulator(scenario: Scenario, process_alphas: tuple[float, ...] = ProcessRewardConfig().alphas,
                   scorer: Scorer | None = None, truth: Scorer | None = None,
                   process_popularity: Popularity = "prefix") -> Simulator:
    """The bundle's simulator: its SID trie and, unless ``scorer``/``truth`` are given, its reward models."""
    sids = bundle_sids(scenario)
    if scorer is None:
        scorer, truth = bundle_scorers(scenario)
    return Simulator(scenario, sids.ad_codes, tuple(sids.tokenizer.codebook_sizes), scorer, truth,
                     ProcessRewardConfig(alphas=tuple(process_alphas), popularity=process_popularity), sids.ad_index)


def open_context(scenario: str | Path = "small", seed: int = 0, split: str = "train",
                 process_alphas: tuple[float, ...] = ProcessRewardConfig().alphas, scorer: Scorer | None = None,
                 truth: Scorer | None = None, process_popularity: Popularity = "prefix") -> SimulatorContext:
    """The (cached) context of a bundle path or preset (built on first use); ``scorer``/``truth`` override the
    bundle's reward models (tests, fakes)."""
    key = (str(scenario), seed, split, tuple(process_alphas), process_popularity, id(scorer), id(truth))
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    opened = ensure_scenario(scenario, seed=seed)
    simulator = open_simulator(opened, process_alphas, scorer, truth, process_popularity)
    sids = bundle_sids(opened)
    context = SimulatorContext(opened, simulator, ObservationBuilder(opened, sids.ad_codes, sids.organic_codes),
                               split, seed)
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
