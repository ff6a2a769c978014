"""A batch of AdSim episodes as arrays: the one implementation behind the single env and the vector env.

Two backends give the same episodes: ``EpisodeBatch`` is the numpy reference (the definition), and
``CompiledEpisodeBatch`` runs each reset and each step as one kernel call (``adsim.simulator.kernels``), scoring
the last level through the same scorer. ``episode_batch`` picks one by ``options.backend``;
``tests/envs/test_fast_path_parity.py`` checks that observations, rewards and info are identical.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from adsim.simulator import kernels
from adsim.simulator.kernels import EpisodeArrays
from adsim.simulator.requests import REQUEST_COLUMNS, RequestBatch, take
from envs.context import SimulatorContext
from envs.state import check_compiled_state, check_episodes, check_mapping
from reward_models.scorer import RewardScorer, TruthScorer

INFO_KEYS = ("ad_id", "pctr", "pcvr", "ecpm", "final_value")
_ROW = np.zeros(1, dtype=np.int64)
_STATE_ARRAYS = ("allowed", "sums", "prefix", "mask", "done")


class EpisodeBatch:
    """N episodes in flight: their requests, eligibility, chosen prefixes and legal masks."""

    def __init__(self, ctx: SimulatorContext, options: Any, n: int):
        self.ctx, self.options, self.n = ctx, options, n
        sim = ctx.simulator
        self.depth, self.width, self.n_ads = sim.depth, sim.trie.width, sim.trie.n_items
        self.requests = take(ctx.requests.logged, np.zeros(n, dtype=np.int64))
        self.allowed = np.zeros((n, self.n_ads), dtype=bool)
        self.sums = np.zeros((n, self.n_ads + 1), dtype=np.int32)
        self.prefix = np.full((n, self.depth), -1, dtype=np.int64)
        self.mask = np.zeros((n, self.width), dtype=bool)
        self.done = np.ones(n, dtype=bool)
        self.features = ctx.observations.build(self.requests)
        self.scale = ctx.reward_scale(options.reward_scale)

    @property
    def level(self) -> np.ndarray:
        return (self.prefix >= 0).sum(axis=1)

    def column(self, name: str) -> np.ndarray:
        """One request column of every episode (a copy)."""
        return self.requests[name].copy()

    def request_info(self) -> tuple[int, bool]:
        """request_id and is_synthetic of episode 0."""
        return int(self.requests["request_id"][0]), bool(self.requests["is_synthetic"][0])

    def restart(self, rows: np.ndarray, rng: np.random.Generator) -> None:
        """Begin new episodes in ``rows`` on requests drawn with ``rng``."""
        self.start(rows, self.ctx.draw_requests(rng, len(rows), self.options.arr_ratio))

    def start(self, rows: np.ndarray, requests: RequestBatch) -> None:
        """Begin new episodes in ``rows`` with ``requests`` (one each)."""
        rows = np.asarray(rows)
        if len(rows) == 0:
            return
        for col in REQUEST_COLUMNS:
            self.requests[col][rows] = requests[col]
        sim = self.ctx.simulator
        self.allowed[rows] = sim.allowed(requests)
        self.sums[rows] = sim.trie.allowed_prefix_sums(self.allowed[rows])
        for key, value in self.ctx.observations.build(requests).items():
            self.features[key][rows] = value
        self.prefix[rows] = -1
        self.done[rows] = False
        self._refresh_masks(rows)

    def _refresh_masks(self, rows: np.ndarray) -> None:
        trie, level = self.ctx.simulator.trie, self.level
        for d in np.unique(level[rows]):
            sel = rows[level[rows] == d]
            if d < self.depth:
                self.mask[sel] = trie.legal_mask(self.prefix[sel, :d], self.sums[sel])
            else:
                self.mask[sel] = False

    def step(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Apply ``actions`` to episodes ``rows``; returns rewards, terminated and info arrays (all length n)."""
        rows, actions = np.asarray(rows), np.asarray(actions, dtype=np.int64)
        reward = np.zeros(self.n)
        terminated = np.zeros(self.n, dtype=bool)
        info = {key: np.zeros(self.n) for key in INFO_KEYS}
        info["ad_id"] = np.full(self.n, -1, dtype=np.int64)
        info["illegal_action"] = np.zeros(self.n, dtype=bool)
        if len(rows) == 0:
            return reward, terminated, info
        level = self.level[rows]
        legal = self.mask[rows, actions]
        bad = rows[~legal]
        reward[bad], terminated[bad], info["illegal_action"][bad] = self.options.illegal_penalty, True, True
        rows, actions, level = rows[legal], actions[legal], level[legal]
        self.prefix[rows, level] = actions

        last = rows[level == self.depth - 1]
        if len(last):
            requests = take(self.requests, last)
            ev = self.ctx.simulator.evaluate(requests, self.prefix[last][:, None, :], self.options.reward_source,
                                             allowed=self.allowed[last])
            for key in INFO_KEYS:
                info[key][last] = getattr(ev, key)[:, 0]
            reward[last] = info[self.options.reward][last] * self.scale
            terminated[last] = True
        middle = rows[level < self.depth - 1]
        if len(middle) and self.options.process_rewards:
            requests = take(self.requests, middle)
            pr = self.ctx.simulator.process_rewards(requests, self.prefix[middle][:, None, :],
                                                    allowed=self.allowed[middle])
            reward[middle] = pr[np.arange(len(middle)), 0, level[level < self.depth - 1]] * self.ctx.process_scale
        self.done[terminated] = True
        self._refresh_masks(middle)
        self.mask[terminated] = False
        return reward, terminated, info

    def step_one(self, action: int) -> tuple[float, bool, bool, dict[str, Any] | None]:
        """``step`` of episode 0 alone, for the single env: reward, terminated, illegal and, when the episode
        ended on an ad, that ad's info."""
        reward, terminated, parts = self.step(_ROW, np.array([action]))
        illegal = bool(parts["illegal_action"][0])
        info = {key: parts[key][0].item() for key in INFO_KEYS} if terminated[0] and not illegal else None
        return float(reward[0]), bool(terminated[0]), illegal, info

    def observation_one(self) -> dict[str, np.ndarray]:
        """Episode 0's observation."""
        return {key: value[0] for key, value in self.observation().items()}

    def observation(self) -> dict[str, np.ndarray]:
        return {
            "user": self.features["user"].copy(),
            "context": self.features["context"].copy(),
            "history_codes": self.features["history_codes"].copy(),
            "history_type": self.features["history_type"].copy(),
            "prefix": self.prefix.copy(),
            "level": np.minimum(self.level, self.depth - 1)[:, None].astype(np.int64),
            "action_mask": self.mask.astype(np.int8),
        }

    def get_state(self) -> dict:
        """A deep copy of every array (planners branch from it)."""
        state = {key: getattr(self, key).copy() for key in _STATE_ARRAYS}
        state["requests"] = {k: v.copy() for k, v in self.requests.items()}
        state["features"] = {k: v.copy() for k, v in self.features.items()}
        return state

    def set_state(self, state: dict) -> None:
        """Restore a ``get_state`` snapshot once ``envs.state`` found it consistent (else nothing changes)."""
        check_mapping(state, self.get_state(), "episodes")
        check_episodes(self.ctx, state["requests"], state["prefix"], state["mask"], state["done"], state["features"],
                       "episodes", state["allowed"], state["sums"])
        for key in _STATE_ARRAYS:
            setattr(self, key, state[key].copy())
        self.requests = {k: v.copy() for k, v in state["requests"].items()}
        self.features = {k: v.copy() for k, v in state["features"].items()}


class CompiledEpisodeBatch:
    """``EpisodeBatch``'s episodes, each reset and step one kernel call over flat tables.

    Eligibility is read per ad while building masks (no (n_ads,) allowed vector per episode), so ``allowed`` and
    ``sums`` are not kept; everything else (prefix, masks, features) is the same arrays as the reference's.
    """

    def __init__(self, ctx: SimulatorContext, options: Any, n: int):
        self.ctx, self.options, self.n = ctx, options, n
        sim = ctx.simulator
        self.depth, self.width, self.n_ads = sim.depth, sim.trie.width, sim.trie.n_items
        self.synthetic = False
        """Whether the request table includes the ARR pool (built on the first synthetic draw)."""
        h = ctx.observations.history.length
        self.arrays = EpisodeArrays(
            table_row=np.zeros(n, dtype=np.int64), prefix=np.full((n, self.depth), -1, dtype=np.int64),
            level=np.zeros(n, dtype=np.int64), obs_level=np.zeros((n, 1), dtype=np.int64),
            node=np.zeros(n, dtype=np.int64), mask=np.zeros((n, self.width), dtype=bool),
            done=np.ones(n, dtype=bool), user=np.zeros((n, 5), dtype=np.float32),
            context=np.zeros((n, 6), dtype=np.float32), history_codes=np.full((n, h, self.depth), -1, dtype=np.int64),
            history_type=np.zeros((n, h), dtype=np.int64))
        self._use_tables(ctx.episode_tables(self.synthetic))
        a = self.arrays
        self._row0 = (("user", a.user[0]), ("context", a.context[0]), ("history_codes", a.history_codes[0]),
                      ("history_type", a.history_type[0]), ("prefix", a.prefix[0]), ("level", a.obs_level[0]),
                      ("action_mask", a.mask[0].view(np.int8)))
        """Episode 0's observation as views of the arrays, made once (``observation_one`` copies them)."""
        self._buffers = (np.zeros(1), *(np.zeros(1, dtype=bool) for _ in range(3)))
        """step_one's outputs (row 0), reused."""
        leaf = sim.trie.levels[-1]
        self._pairs = np.zeros((2, n * int((leaf.end - leaf.start).max())), dtype=np.int64)
        """The step kernel's (terminal episode, eligible ad) pairs: room for every ad of every episode's leaf."""
        self.scale = float(ctx.reward_scale(options.reward_scale))
        scorers = (sim.scorers.get(options.reward_source), sim.ranker(sim.scorers.get(options.reward_source)))
        self._by_id = all(isinstance(s, RewardScorer | TruthScorer) for s in scorers)
        """Whether terminal pairs are scored by request id (both scorers take ids): no request rows gathered."""
        self._step_args = (bool(options.process_rewards), float(ctx.process_scale), float(options.illegal_penalty))
        _warm_up(self)

    # ------------------------------------------------------------------------------------------ views
    @property
    def prefix(self) -> np.ndarray:
        return self.arrays.prefix

    @property
    def mask(self) -> np.ndarray:
        return self.arrays.mask

    @property
    def done(self) -> np.ndarray:
        return self.arrays.done

    @property
    def level(self) -> np.ndarray:
        return self.arrays.level.copy()

    @property
    def requests(self) -> RequestBatch:
        return self.requests_of(self.arrays.table_row)

    def requests_of(self, table_rows: np.ndarray) -> RequestBatch:
        return take(self.ctx.request_table(self.synthetic), table_rows)

    # ------------------------------------------------------------------------------------------ episodes
    def restart(self, rows: np.ndarray, rng: np.random.Generator) -> None:
        """Begin new episodes in ``rows`` on requests drawn with ``rng`` (as ``EpisodeBatch.restart`` draws)."""
        table_rows = self.ctx.requests.sample_rows(len(rows), rng, self.options.arr_ratio)
        if not self.synthetic and self.options.arr_ratio > 0 and (table_rows >= len(self.ctx.requests)).any():
            self._use_pool()
        kernels.start_rows(np.asarray(rows, dtype=np.int64), table_rows, self._kernel)

    def step(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``EpisodeBatch.step``: rewards, terminated and info arrays (all length n)."""
        rows, actions = np.asarray(rows, dtype=np.int64), np.asarray(actions, dtype=np.int64)
        reward = np.zeros(self.n)
        terminated, terminal = np.zeros(self.n, dtype=bool), np.zeros(self.n, dtype=bool)
        info = {key: np.zeros(self.n) for key in INFO_KEYS}
        info["ad_id"] = np.full(self.n, -1, dtype=np.int64)
        info["illegal_action"] = np.zeros(self.n, dtype=bool)
        n_pairs = kernels.step_rows(rows, actions, self._kernel, *self._step_args, reward, terminated,
                                    info["illegal_action"], terminal, self._pairs)
        last = rows[terminal[rows]]
        if len(last):
            ev = self._score(last, n_pairs)
            for key in INFO_KEYS:
                info[key][last] = getattr(ev, key)[:, 0]
            reward[last] = info[self.options.reward][last] * self.scale
        return reward, terminated, info

    def step_one(self, action: int) -> tuple[float, bool, bool, dict[str, Any] | None]:
        """``step`` of episode 0 alone, for the single env: reward, terminated, illegal and, when the episode
        ended on an ad, that ad's info."""
        reward, terminated, illegal, terminal = self._buffers
        n_pairs = kernels.step_rows(_ROW, np.array([action], dtype=np.int64), self._kernel, *self._step_args, reward,
                                    terminated, illegal, terminal, self._pairs)
        if not terminal[0]:
            return float(reward[0]), bool(terminated[0]), bool(illegal[0]), None
        ev = self._score(_ROW, n_pairs)
        info = {key: getattr(ev, key).item(0) for key in INFO_KEYS}
        return info[self.options.reward] * self.scale, True, False, info

    def _score(self, rows: np.ndarray, n_pairs: int):
        """``evaluate`` of the terminal episodes ``rows`` from the pairs the step kernel found."""
        cand, ads = self._pairs[0, :n_pairs].copy(), self._pairs[1, :n_pairs].copy()
        table_rows = self.arrays.table_row[rows]
        table = self.ctx.request_table(self.synthetic)
        request_ids = table["request_id"][table_rows]
        pair_requests = request_ids[cand]
        if not self._by_id or (self.synthetic and (pair_requests < 0).any()):  # ARR requests have no id
            pair_requests = take(table, table_rows[cand])
        return self.ctx.simulator.evaluate_pairs(pair_requests, cand, ads, len(rows), 1, self.options.reward_source,
                                                 request_ids)

    def column(self, name: str) -> np.ndarray:
        """One request column of every episode (a copy)."""
        return self.ctx.request_table(self.synthetic)[name][self.arrays.table_row]

    def request_info(self) -> tuple[int, bool]:
        """request_id and is_synthetic of episode 0."""
        table, row = self.ctx.request_table(self.synthetic), self.arrays.table_row[0]
        return int(table["request_id"][row]), bool(table["is_synthetic"][row])

    def observation(self) -> dict[str, np.ndarray]:
        a = self.arrays
        return {"user": a.user.copy(), "context": a.context.copy(), "history_codes": a.history_codes.copy(),
                "history_type": a.history_type.copy(), "prefix": a.prefix.copy(), "level": a.obs_level.copy(),
                "action_mask": a.mask.view(np.int8).copy()}

    def _use_pool(self) -> None:
        self.synthetic = True
        self._use_tables(self.ctx.episode_tables(True))

    def _use_tables(self, tables: kernels.EpisodeTables) -> None:
        self.tables = tables
        self._kernel = kernels.episode_kernel(tables, self.arrays)

    def observation_one(self) -> dict[str, np.ndarray]:
        """Episode 0's observation."""
        return {key: view.copy() for key, view in self._row0}

    def get_state(self) -> dict:
        """A deep copy of every array (planners branch from it)."""
        return {"arrays": {k: v.copy() for k, v in self.arrays._asdict().items()}, "synthetic": self.synthetic}

    def set_state(self, state: dict) -> None:
        """Restore a ``get_state`` snapshot once ``envs.state`` found it consistent (else nothing changes)."""
        check_compiled_state(self.ctx, state, self.get_state()["arrays"])
        if state["synthetic"] and not self.synthetic:
            self._use_pool()
        for key, value in state["arrays"].items():
            getattr(self.arrays, key)[...] = value


def episode_batch(ctx: SimulatorContext, options: Any, n: int) -> EpisodeBatch | CompiledEpisodeBatch:
    """The episodes of ``options.backend``: the numpy reference or the compiled kernels."""
    kernels.check_backend(options.backend)
    return CompiledEpisodeBatch(ctx, options, n) if options.backend == "compiled" else EpisodeBatch(ctx, options, n)


_warmed: set[int] = set()


def _warm_up(batch: CompiledEpisodeBatch) -> None:
    """Run every kernel once on no rows, so a process compiles (or loads from cache) up front and says so."""
    if id(batch.ctx) in _warmed:
        return
    _warmed.add(id(batch.ctx))
    started = time.perf_counter()
    none = np.zeros(0, dtype=np.int64)
    kernels.start_rows(none, none, batch._kernel)
    kernels.step_rows(none, none, batch._kernel, *batch._step_args, np.zeros(batch.n),
                      *(np.zeros(batch.n, dtype=bool) for _ in range(3)), batch._pairs)
    sim = batch.ctx.simulator
    sources = [s for s in (batch.options.reward_source, "model", "truth") if sim.scorers.get(s) is not None]
    if sources:
        sim.evaluate(batch.requests_of(none), np.zeros((0, 1, batch.depth), dtype=np.int64), sources[0],
                     backend="compiled")
        if sources[0] == batch.options.reward_source:
            batch._score(none, 0)
    kernels.announce_compiled(started)
