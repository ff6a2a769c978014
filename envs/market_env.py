"""AdSimMarket-v0: a day of requests replayed in time order, the policy's own wins spending the advertisers' budgets."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from adsim.errors import AdSimOptionError, AdSimStateError
from adsim.simulator.kernels import Backend
from adsim.simulator.market import Billing, Book, Market, MarketConfig, MarketDay, budget_shares, requests_of_day
from adsim.simulator.requests import REQUEST_COLUMNS, RequestBatch
from envs.adsim_env import AdSimEnv
from envs.context import SimulatorContext
from envs.episodes import EpisodeBatch
from envs.options import EnvOptions, UnknownOptionError, env_options
from envs.state import check_mapping, check_prefix, check_rng

__all__ = ["AdSimMarketEnv", "MarketOptions"]

_ROW = np.array([0])


@dataclass(frozen=True)
class MarketOptions:
    """What ``AdSimMarket-v0`` accepts besides AdSim-v0's options (see AdSimMarketEnv's Arguments)."""

    billing: Billing = "model"
    budget_scale: float = 1.0
    reserve_ecpm: float | None = None
    day: int | None = None
    """The day every episode replays; None: drawn uniformly from the split's days at each reset."""
    max_requests: int | None = None
    """The episode is the day's first ``max_requests`` requests (None: the whole day)."""

    def __post_init__(self):
        for name in ("day", "max_requests"):
            value = getattr(self, name)
            low = 1 if name == "max_requests" else 0
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < low):
                raise AdSimOptionError(f"must be an integer >= {low} or None, got {value!r}", option=name)

    def market(self, backend: Backend) -> MarketConfig:
        """The market's config (checked there, each option named)."""
        return MarketConfig(self.billing, self.budget_scale, self.reserve_ecpm, backend)


def market_env_options(kwargs: dict[str, Any]) -> tuple[EnvOptions, MarketOptions]:
    """AdSim-v0's options and the market's, each checked (an ``AdSimOptionError`` naming the option)."""
    known = set(EnvOptions.__dataclass_fields__) | set(MarketOptions.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known - {"seed"})
    if unknown:
        raise UnknownOptionError(f"unexpected keyword argument {unknown[0]!r}; AdSimMarket-v0 accepts "
                                 f"{sorted(known)} (and render_mode, context)", option=unknown[0])
    market = {k: v for k, v in kwargs.items() if k in MarketOptions.__dataclass_fields__}
    options = env_options({k: v for k, v in kwargs.items() if k not in market})
    if options.arr_ratio != 0:
        raise AdSimOptionError(f"must be 0: market mode replays the logged requests of a day in time order, got "
                               f"{options.arr_ratio!r}", option="arr_ratio")
    settings = MarketOptions(**market)
    settings.market(options.backend)
    return options, settings


class _RequestEpisode(EpisodeBatch):
    """AdSim's one-request episode (observation, trie masks, resolution, rewards) under the market's eligibility
    instead of the budget exhaustion in the logs."""

    def begin(self, request: RequestBatch, allowed: np.ndarray) -> None:
        self.start(_ROW, request)
        self.allowed[0] = allowed
        self.sums[0] = self.ctx.simulator.trie.allowed_prefix_sums(allowed)
        self._refresh_masks(_ROW)

    def restore(self, state: dict, request: RequestBatch, allowed: np.ndarray | None) -> None:
        """``set_state`` for a request of the market's day: ``state`` must be this request's episode under
        ``allowed`` (the market's eligibility when it began; None: not checked, the day is over), else an
        ``AdSimStateError`` naming the part, and nothing changes."""
        check_mapping(state, self.get_state(), "episodes")
        for name, values in state["requests"].items():
            if name in REQUEST_COLUMNS and not np.array_equal(values, np.asarray(request[name])):
                raise AdSimStateError("not the episode of the day's current request", key=f"episodes.requests.{name}")
        trie = self.ctx.simulator.trie
        if allowed is not None:
            if not np.array_equal(state["allowed"][0], allowed):
                raise AdSimStateError("not the market's eligibility for this request", key="episodes.allowed")
            if not np.array_equal(state["sums"], trie.allowed_prefix_sums(state["allowed"])):
                raise AdSimStateError("not the prefix sums of the eligibility", key="episodes.sums")
        level = int(check_prefix(state["prefix"], trie.width, "episodes.prefix")[0])
        prefix, sums = state["prefix"], state["sums"]
        for d in range(min(level, trie.depth) + 1):
            legal = trie.legal_mask(prefix[:, :d], sums)[0] if d < trie.depth else np.zeros(trie.width, bool)
            if d < level and not legal[prefix[0, d]]:
                raise AdSimStateError(f"code {int(prefix[0, d])} at level {d} is not legal", key="episodes.prefix")
        expected = np.zeros_like(state["mask"][0]) if state["done"][0] else legal
        if not np.array_equal(state["mask"][0].astype(bool), np.asarray(expected, dtype=bool)):
            raise AdSimStateError("the legal mask is not the prefix's", key="episodes.mask")
        for name, value in self.ctx.observations.build(request).items():
            if name in state["features"] and not np.array_equal(state["features"][name][:1], value):
                raise AdSimStateError(f"not the request's features ({name})", key=f"episodes.{name}")
        for key in ("allowed", "sums", "prefix", "mask", "done"):
            setattr(self, key, state[key].copy())
        self.requests = {k: v.copy() for k, v in state["requests"].items()}
        self.features = {k: v.copy() for k, v in state["features"].items()}


class AdSimMarketEnv(AdSimEnv):
    """
    ## Description
    Market mode of AdSim-v0: an episode is one day (or its first ``max_requests`` requests) of a split's logged
    requests, replayed in time order. Each request is decoded level by level as in AdSim-v0, under the personalised
    trie, and its resolved ad is priced (GSP against the other eligible ads' eCPM) and billed by its goal's event
    (impression for CPM, click for every other goal), the event drawn from the truth or the models (``billing``).
    Every ad's spend is kept in a ledger; an ad whose daily budget is spent leaves the trie for the rest of the day
    (this replaces AdSim-v0's budgets as they ran out in the logs), and no charge takes an ad past its budget
    (``adsim.simulator.market``). Showing the best ad to everyone early spends the best budgets by mid-morning:
    allocation over the day is the problem.

    ## Action Space
    `Discrete(W)`, as AdSim-v0: the code chosen at the current level. Use `obs["action_mask"]`.

    ## Observation Space
    AdSim-v0's (`user`, `context`, `history_codes`, `history_type`, `prefix`, `level`, `action_mask`), plus:

    | key | space | meaning |
    |---|---|---|
    | `budget_share` | Box(W,) float32 | per next code: the remaining share of the budgets of the ads below it |
    | `time_of_day` | Box(1,) float32 | share of the day gone at the request, in [0, 1] |

    `budget_share` sums remaining budget over daily budget across the ads below each next code that the user may
    see by targeting and liveness, spent ones included (0 where the code leads to none): fixed-size pacing.

    ## Rewards
    AdSim-v0's, per request: 0 (or HEPO's process rewards) at the coarse levels, the resolved ad's final_value (or
    eCPM) times `reward_scale` at the last. An illegal action ends the request unserved with `illegal_penalty`; the
    day goes on.

    ## Starting State
    The first request of the day with an eligible ad, every budget unspent; the day drawn with `self.np_random`
    unless `day` is given, then the day's billing draws.

    ## Episode End
    Terminates after the day's last request. Requests with no eligible ad pass unserved, without a step. Never
    truncates.

    ## Arguments
    Every AdSim-v0 argument (`arr_ratio` must stay 0: a market replays logged requests), and:
    * `billing`: "model" (default) or "truth": what clicks and conversions, hence charges, are drawn from.
    * `budget_scale` (> 0): every daily budget times this. `reserve_ecpm` (>= 0; None: the world's reserve).
    * `day`: the day every episode replays (None: drawn per reset). `max_requests`: the day's first requests only.
    * `backend`: "compiled" runs the market's serve loop in numba (`adsim.simulator.market_kernels`), "reference"
      in numpy: the same ledgers. Decoding is AdSim-v0's numpy episode under the market's eligibility.

    `info` carries AdSim-v0's keys and, when a request ends on an ad, `price_ecpm` (GSP price), `charge` (what the
    advertiser paid: the platform's revenue on the request), `advertiser_value`, `click`, `conversion`, `capped`
    (the charge was cut at the budget), `exhausted` (it spent the budget), `ad_spend` and `ad_budget` (the ad's
    spend today and daily budget); `revenue_today` and `advertiser_value_today` whenever a request ends; and, at the
    end of the day, `market_summary` (request counts, revenue, advertiser value, and the ledger: every ad's
    `spend`, `budget`, `shown` and `exhausted_at`). `get_state` / `set_state` snapshot the request's episode, the
    RNG and the day (which day, the request being decoded, the ledger and billing draws), so planners can branch
    within a day.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, context: SimulatorContext | None = None, **kwargs: Any):
        options, self.settings = market_env_options(kwargs)
        adsim_kwargs = {k: v for k, v in kwargs.items() if k in EnvOptions.__dataclass_fields__}
        super().__init__(render_mode, context, **{**adsim_kwargs, "backend": "reference"})
        self.options = options
        self.market = Market(self.ctx.simulator, self.settings.market(options.backend))
        self.days = np.unique(self.ctx.requests.logged["day"]).astype(np.int64)
        if self.settings.day is not None and self.settings.day not in self.days:
            raise AdSimOptionError(f"split {options.split!r} has days {self.days.tolist()}, got {self.settings.day}",
                                   option="day")
        self.observation_space = spaces.Dict({
            **self.observation_space.spaces,
            "budget_share": spaces.Box(0.0, 1.0, (self.width,), np.float32),
            "time_of_day": spaces.Box(0.0, 1.0, (1,), np.float32),
        })
        self.episodes = _RequestEpisode(self.ctx, options, 1)
        self.day: MarketDay | None = None
        self.book: Book | None = None
        """The current request's book (``adsim.simulator.market.Book``): every eligible ad's scores, which the
        auction and the budget shares read; planners and baselines may read it too (``day.ledger`` is the rest)."""

    # ------------------------------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        day = self.settings.day if self.settings.day is not None else int(self.np_random.choice(self.days))
        requests = requests_of_day(self.ctx.requests.logged, day, self.settings.max_requests)
        self.day = self.market.open_day(requests, self.np_random)
        if not self._next_request():
            raise RuntimeError(f"day {day} of split {self.options.split!r} has no request with an eligible ad")
        info = self._request_info()
        self._trail = {"legal": [self.episodes.mask[0].astype(np.int8)], "info": info}
        return self._obs(), info

    def step(self, action):
        _, reward, request_over, _, info = super().step(action)
        day_over = False
        if request_over:
            if info["illegal_action"]:
                self.day.skip()  # the request passes unserved; the day goes on with the next one
            else:
                info.update(self._settle(info["ad_id"]))
            day_over = not self._next_request()
            info["revenue_today"], info["advertiser_value_today"] = self.day.revenue, self.day.advertiser_value
            if day_over:
                info["market_summary"] = self.day.summary()
            else:
                self._trail = {"legal": [self.episodes.mask[0].astype(np.int8)], "info": info}
        return self._obs(), reward, day_over, False, info

    def get_state(self) -> dict:
        """AdSim-v0's snapshot (the request's episode, the RNG) plus the day: which day, the request being decoded
        and ``MarketDay.get_state`` (position, billing draws, ledger, counts). Planners branch from it."""
        if self.day is None:
            raise RuntimeError("get_state() before reset(): no day yet")
        return {"episodes": self.episodes.get_state(), "rng": self.np_random.bit_generator.state,
                "market": {"day": int(self.book.requests["day"][0]), "request": int(self.book.first),
                           "ledger": self.day.get_state()}}

    def set_state(self, state: dict) -> dict[str, np.ndarray]:
        """Restore a ``get_state`` snapshot of this env's market (same split, ``max_requests`` and budgets);
        returns the observation at that point. A malformed or inconsistent snapshot is an ``AdSimStateError``
        naming its part, and the env is left as it was."""
        keys = {"episodes", "rng", "market"}
        if not isinstance(state, dict) or set(state) != keys:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise AdSimStateError(f"must be a dict with keys {sorted(keys)} (as get_state returns it), got {got}")
        check_rng(self.np_random.bit_generator, state["rng"])
        market = state["market"]
        if not isinstance(market, dict) or set(market) != {"day", "request", "ledger"}:
            raise AdSimStateError("must be a dict with keys ['day', 'ledger', 'request']", key="market")
        if market["day"] not in self.days:
            raise AdSimStateError(f"split {self.options.split!r} has days {self.days.tolist()}, got "
                                  f"{market['day']!r}", key="market.day")
        requests = requests_of_day(self.ctx.requests.logged, int(market["day"]), self.settings.max_requests)
        day = self.market.open_day(requests, np.random.default_rng(0))
        day.set_state(market["ledger"])
        request = market["request"]
        if not isinstance(request, (int, np.integer)) or not (request == day.position < len(day)
                                                               or (day.over and 0 <= request < len(day))):
            raise AdSimStateError(f"the current request must be the day's next ({day.position}) or, once the day is "
                                  f"over, one of its requests; got {request!r}", key="market.request")
        book = self.market.book(day.requests, int(request), int(request) + 1)
        self.episodes.restore(state["episodes"], book.requests, None if day.over else day.allowed(book)[0])
        self.day, self.book = day, book
        self.np_random.bit_generator.state = state["rng"]
        self._trail = {"legal": [self.episodes.mask[0].astype(np.int8)], "info": self._request_info()}
        return self._obs()

    # ------------------------------------------------------------------------------------------ the day
    def _next_request(self) -> bool:
        """Begin the day's next request that may be shown an ad (the others pass unserved); False at the day's end."""
        day = self.day
        while not day.over:
            book = self.market.book(day.requests, day.position, day.position + 1)
            allowed = day.allowed(book)
            if allowed.any():
                self.book = book
                self.episodes.begin(book.requests, allowed[0])
                return True
            day.skip()
        return False

    def _settle(self, ad: int) -> dict[str, Any]:
        """Price, bill and charge the resolved ad of the current request; its market info."""
        rank = np.full(self.book.eligible.shape, -np.inf)
        rank[0, ad] = 0.0
        served = self.day.serve(self.book, rank)
        ledger = self.day.ledger
        return {"price_ecpm": float(served.price[0]), "charge": float(served.charge[0]),
                "advertiser_value": float(served.value[0]), "click": bool(served.click[0]),
                "conversion": bool(served.conversion[0]), "capped": bool(served.capped[0]),
                "exhausted": bool(served.exhausted[0]), "ad_spend": float(ledger.spend[ad]),
                "ad_budget": float(ledger.budget[ad])}

    def _obs(self) -> dict[str, np.ndarray]:
        obs = self.episodes.observation_one()
        shares = np.zeros(self.width, dtype=np.float32)
        book = self.book
        if not self.episodes.done[0]:
            level = int(self.episodes.level[0])
            ledger, seen = self.day.ledger, book.eligible.astype(np.float64)
            shares = budget_shares(self.ctx.simulator.trie, self.episodes.prefix[:, :level],
                                   seen * (ledger.budget - ledger.spend), seen * ledger.budget)[0].astype(np.float32)
        obs["budget_share"] = shares
        obs["time_of_day"] = book.elapsed[:1].astype(np.float32)
        return obs
