"""Market replay: a day of requests in time order, whose wins spend the advertisers' daily budgets.

Per request (``AdSim``) an ad's eligibility follows the budget exhaustion recorded in the logs, so whatever a policy
shows, no budget moves. Here a day's requests are replayed in time order against a ledger of every ad's spend:

* **Eligibility**: targeting and liveness as in ``Eligibility``, and budget from the ledger, which replaces the
  logged exhaustion: an ad whose budget is spent leaves the auction (and the personalised trie) for the rest of
  the day.
* **Pricing** (GSP, as the logging cascade prices, ``adsim.world.cascade``): the auction holds every eligible ad
  with budget left; the shown ad (the policy's choice) pays the highest eCPM among the others that does not exceed
  its own, at least the reserve and at most its own eCPM. The auction sees the reward models' eCPM (the served
  ranking stack's estimates), whatever the billing source.
* **Billing** by goal, as the cascade bills (``adsim.world.config.GOALS``): CPM per impression, price / 1000;
  every other goal (CPC, oCPC, oCPA, oCPI) per click, price / (1000 x model pCTR), which never exceeds the
  bid-implied eCPM. Clicks and conversions are drawn from the truth or from the models (``billing``), with uniforms
  drawn once per day from the caller's generator, so policies replayed on one seed share them.
* **Budgets**: a charge never takes an ad past its budget: the charge that reaches it is cut to what was left,
  and the ad is exhausted.
* **Advertiser value**: the bid is the advertiser's declared value of its goal's event: CPM bid / 1000 per
  impression, CPC bid per click, oCPC / oCPA / oCPI bid per conversion (their bid is a target cost per
  conversion), realised with the same draws.

``budgets="logged"`` replays the same day under AdSim-v0's per-request rule instead (the logged exhaustion decides
eligibility, nothing is capped), so a policy's spend can be set against the budgets it would have overrun.

Serving is sequential over requests; ``serve_reference`` is the numpy definition and ``market_kernels.serve_rows``
its compiled twin (``backend``), with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError, AdSimOptionError, AdSimStateError
from adsim.simulator import market_kernels
from adsim.simulator.eligibility import Eligibility
from adsim.simulator.kernels import BACKENDS, Backend
from adsim.simulator.market_kernels import CLICK, CONVERSION, IMPRESSION, MIN_PCTR
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import Simulator
from adsim.trie import SidTrie
from adsim.world.config import GOALS, WorldConfig
from adsim.world.traffic import SECONDS_PER_DAY

__all__ = ["Billing", "Book", "Budgets", "Ledger", "Market", "MarketConfig", "MarketDay", "Pacing", "Served",
           "budget_shares", "requests_of_day", "serve_reference"]

Billing = Literal["truth", "model"]
BILLINGS: tuple[Billing, ...] = ("truth", "model")
Budgets = Literal["market", "logged"]
BUDGETS: tuple[Budgets, ...] = ("market", "logged")
"""``market``: the ledger's budgets bind. ``logged``: AdSim-v0's per-request rule (the logs' exhaustion)."""

BILLED_ON = np.array([IMPRESSION, CLICK, CLICK, CLICK, CLICK], dtype=np.int64)
"""The event each goal of ``GOALS`` (CPM, CPC, oCPC, oCPA, oCPI) is billed on: the cascade's rule."""
VALUED_ON = np.array([IMPRESSION, CLICK, CONVERSION, CONVERSION, CONVERSION], dtype=np.int64)
"""The event each goal's bid values (what the advertiser pays for in intent)."""


@dataclass(frozen=True)
class MarketConfig:
    """How a market prices, bills and budgets. Every field is checked here, an ``AdSimOptionError`` naming it."""

    billing: Billing = "model"
    """Draw clicks and conversions from the world's ``truth`` or from the reward ``model``."""
    budget_scale: float = 1.0
    """Every daily budget times this (small values make budgets bind within a short window)."""
    reserve_ecpm: float | None = None
    """The auction's reserve eCPM; None: the world's (``WorldConfig.reserve_ecpm``, the cascade's)."""
    backend: Backend = "compiled"
    """``compiled``: the serve loop in ``market_kernels``; ``reference``: numpy (the same numbers)."""

    def __post_init__(self):
        if self.billing not in BILLINGS:
            raise AdSimOptionError(f"must be one of {list(BILLINGS)}, got {self.billing!r}", option="billing")
        if self.backend not in BACKENDS:
            raise AdSimOptionError(f"must be one of {list(BACKENDS)}, got {self.backend!r}", option="backend")
        if not _positive(self.budget_scale):
            raise AdSimOptionError(f"must be a finite number > 0, got {self.budget_scale!r}", option="budget_scale")
        if self.reserve_ecpm is not None and not (_positive(self.reserve_ecpm) or self.reserve_ecpm == 0):
            raise AdSimOptionError(f"must be a finite number >= 0 or None (the world's reserve), got "
                                   f"{self.reserve_ecpm!r}", option="reserve_ecpm")


@dataclass(frozen=True)
class Pacing:
    """The standard budget-pacing rule, probabilistic throttling: an ad spending ahead of the clock sits out a share
    of the auctions, so its budget lasts the day.

    An ad whose spent share of its budget is at most the elapsed share of the day enters every auction; ahead of the
    clock by s, it enters with probability 1 - s / slack, none at ``slack`` or more ahead.
    """

    slack: float = 0.1

    def __post_init__(self):
        if not _positive(self.slack):
            raise AdSimOptionError(f"must be a finite number > 0, got {self.slack!r}", option="slack")


class Book(NamedTuple):
    """Every ad's scores on a block of a day's requests: all that pricing, billing and rankers read. It does not
    depend on the ledger, so policies replayed on the same day share it."""

    first: int
    """The day's index of the block's first request."""
    requests: RequestBatch
    eligible: np.ndarray
    """(B, n_ads) bool: targeting and liveness (budgets are the day's business)."""
    ecpm: np.ndarray
    """(B, n_ads) the reward models' eCPM, which the auction ranks and prices by (0 where not eligible)."""
    pctr: np.ndarray
    """(B, n_ads) the models' pCTR, which a per-click price divides by."""
    bill_pctr: np.ndarray
    """(B, n_ads) the pCTR clicks are drawn with (the models' or the truth's, ``billing``)."""
    bill_pcvr: np.ndarray
    """(B, n_ads) P(conversion | click) conversions are drawn with."""
    elapsed: np.ndarray
    """(B,) share of the day gone at each request, in [0, 1)."""

    def rows(self, lo: int, hi: int) -> Book:
        """The book of this block's requests ``lo:hi`` (views, no scoring)."""
        return Book(self.first + lo, take(self.requests, np.arange(lo, hi)),
                    *(part[lo:hi] for part in self[2:]))


class Served(NamedTuple):
    """What each request of a block was shown and billed, each (B,)."""

    ad: np.ndarray
    """int64, -1 where nothing could be shown."""
    price: np.ndarray
    """The GSP price in eCPM units."""
    charge: np.ndarray
    """What the advertiser paid: the platform's revenue."""
    value: np.ndarray
    """The advertiser's realised value (its bid on its goal's event)."""
    click: np.ndarray
    conversion: np.ndarray
    capped: np.ndarray
    """The charge was cut at the budget."""
    exhausted: np.ndarray
    """This charge spent the ad's budget: it leaves the auction for the rest of the day."""
    constrained: np.ndarray
    """Budget-constrained: the policy's top-ranked ad among those the request may see was out of budget."""

    @classmethod
    def empty(cls, n: int) -> Served:
        return cls(np.full(n, -1, dtype=np.int64), *(np.zeros(n) for _ in range(3)),
                   *(np.zeros(n, dtype=bool) for _ in range(5)))


@dataclass
class Ledger:
    """Every ad's budget and spend today."""

    budget: np.ndarray
    spend: np.ndarray
    shown: np.ndarray
    """(n_ads,) int64 requests each ad was shown to."""
    exhausted_at: np.ndarray
    """(n_ads,) int64 the day's index of the request that spent the budget, -1 while some is left."""

    @classmethod
    def open(cls, budget: np.ndarray) -> Ledger:
        n = len(budget)
        return cls(budget.copy(), np.zeros(n), np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64))

    @property
    def live(self) -> np.ndarray:
        """(n_ads,) bool: some budget left."""
        return self.spend < self.budget


class Market:
    """The prices, goals and budgets of a simulator's ads, and the scorers an auction reads."""

    def __init__(self, simulator: Simulator, config: MarketConfig | None = None):
        self.simulator, self.config = simulator, config or MarketConfig()
        scenario, cfg = simulator.scenario, self.config
        ads = scenario.table("ads")
        goal = pd.Categorical(ads["goal"].astype(str), categories=list(GOALS)).codes.astype(np.int64)
        if (goal < 0).any():
            raise AdSimDataError(f"goal outside {list(GOALS)}", file="ads", column="goal",
                                 rows=np.flatnonzero(goal < 0))
        self.billed_on, self.valued_on = BILLED_ON[goal], VALUED_ON[goal]
        self.bid = ads["bid"].to_numpy().astype(np.float64)
        self.budget = ads["daily_budget"].to_numpy().astype(np.float64) * cfg.budget_scale
        self.reserve = float(cfg.reserve_ecpm if cfg.reserve_ecpm is not None
                             else (scenario.config or WorldConfig()).reserve_ecpm)
        self.ranker = simulator.scorer("model")
        self.biller = simulator.scorers.get(cfg.billing)
        if self.biller is None:
            raise AdSimOptionError(f"this scenario has no {cfg.billing!r} scorer (imported logs have no ground "
                                   "truth); use billing='model'", option="billing")
        self.eligibility = Eligibility(scenario, budgets="none")
        """Targeting and liveness only: the ledger, not the logs, decides budgets."""

    @property
    def n_ads(self) -> int:
        return len(self.bid)

    def eligible(self, requests: RequestBatch) -> np.ndarray:
        """(B, n_ads) bool: targeting and liveness, budgets aside."""
        return self.eligibility.allowed(np.asarray(requests["user_id"]), np.asarray(requests["day"]),
                                        np.asarray(requests["ts"]))

    def book(self, requests: RequestBatch, lo: int, hi: int) -> Book:
        """The book of requests ``lo:hi`` of a day. Only eligible pairs are scored."""
        block = take(requests, np.arange(lo, hi))
        eligible = self.eligible(block)
        rows, ads = np.nonzero(eligible)
        pairs = take(block, rows)
        model = self.ranker.score(pairs, ads[:, None])
        billed = model if self.biller is self.ranker else self.biller.score(pairs, ads[:, None])
        dense = []
        for part in (model.ecpm, model.pctr, billed.pctr, billed.pcvr):
            out = np.zeros(eligible.shape)
            out[rows, ads] = part[:, 0]
            dense.append(out)
        ts, day = np.asarray(block["ts"], dtype=np.int64), np.asarray(block["day"], dtype=np.int64)
        elapsed = np.clip((ts - day * SECONDS_PER_DAY) / SECONDS_PER_DAY, 0.0, np.nextafter(1.0, 0.0))
        return Book(lo, block, eligible, *dense, elapsed)

    def open_day(self, requests: RequestBatch, rng: np.random.Generator, budgets: Budgets = "market") -> MarketDay:
        """A day over ``requests`` (``requests_of_day``), its billing uniforms drawn now from ``rng``."""
        return MarketDay(self, requests, rng, budgets)


class MarketDay:
    """One day of a market: its requests in time order, served block by block, and the ledger they move."""

    def __init__(self, market: Market, requests: RequestBatch, rng: np.random.Generator, budgets: Budgets):
        if budgets not in BUDGETS:
            raise AdSimOptionError(f"must be one of {list(BUDGETS)}, got {budgets!r}", option="budgets")
        self.market, self.requests, self.rng, self.budgets = market, requests, rng, budgets
        self.uniforms = rng.random((len(self), 2))
        """(n, 2) per request: the click's and the conversion's uniform."""
        self.ledger = Ledger.open(market.budget)
        self.position = 0
        """The next request to serve."""
        self.counts = {"served": 0, "clicks": 0, "conversions": 0, "capped_charges": 0, "constrained_requests": 0}
        self.advertiser_value = 0.0

    def __len__(self) -> int:
        return len(self.requests["request_id"])

    @property
    def over(self) -> bool:
        return self.position >= len(self)

    def allowed(self, book: Book) -> np.ndarray:
        """(B, n_ads) bool: what a block's requests may be shown with the ledger as it stands (the personalised
        trie's view of the next request)."""
        if self.budgets == "logged":
            return self.market.simulator.allowed(book.requests)
        return book.eligible & self.ledger.live

    def skip(self) -> None:
        """The next request passes unserved: it may be shown nothing (no eligible ad has budget left)."""
        self._check_open(1)
        self.position += 1

    def serve(self, book: Book, rank: np.ndarray, pacing: Pacing | None = None) -> Served:
        """Serve the book's requests in order: each is shown the policy's best-ranked ad in its auction (the
        eligible ads with budget left and, under ``pacing``, not throttled), priced against the rest of the auction,
        billed and charged to the ledger.

        ``rank``: (B, n_ads) the policy's preference, -inf for ads it does not offer (a policy that has chosen one
        ad offers only that one). ``book`` must start at the next request to serve. ``pacing`` applies under market
        budgets only (the per-request rule has no ledger to pace against).
        """
        n = len(book.elapsed)
        if book.first != self.position:
            raise ValueError(f"a day is served in time order: the next request is {self.position}, the book starts "
                             f"at {book.first}")
        self._check_open(n)
        rank = np.asarray(rank, dtype=np.float64)
        if rank.shape != book.eligible.shape:
            raise ValueError(f"rank must be {book.eligible.shape} (requests x ads), got {rank.shape}")
        enforce = self.budgets == "market"
        use_pacing = pacing is not None and enforce
        m, led = self.market, self.ledger
        throttle = self.rng.random(rank.shape) if use_pacing else np.zeros((0, 0))
        served = Served.empty(n)
        kernel = market_kernels.serve_rows if m.config.backend == "compiled" else serve_reference
        kernel(np.ascontiguousarray(rank), np.ascontiguousarray(book.eligible if enforce else self.allowed(book)),
               book.ecpm, book.pctr, book.bill_pctr, book.bill_pcvr, self.uniforms[self.position:self.position + n],
               throttle, book.elapsed, use_pacing, pacing.slack if use_pacing else 1.0, m.billed_on, m.valued_on,
               m.bid, m.reserve, enforce, led.budget, led.spend, led.shown, led.exhausted_at, book.first, *served)
        self.position += n
        shown = served.ad >= 0
        for key, flags in (("served", shown), ("clicks", served.click), ("conversions", served.conversion),
                           ("capped_charges", served.capped), ("constrained_requests", served.constrained)):
            self.counts[key] += int(flags.sum())
        self.advertiser_value += float(served.value.sum())
        return served

    STATE_KEYS = ("budgets", "position", "uniforms", "budget", "spend", "shown", "exhausted_at", "counts",
                  "advertiser_value")

    def get_state(self) -> dict:
        """Where the day stands (copies): position, billing uniforms, the ledger and the counts. The requests and the
        caller's generator (pacing's throttles) are not in it."""
        led = self.ledger
        return {"budgets": self.budgets, "position": self.position, "uniforms": self.uniforms.copy(),
                "budget": led.budget.copy(), "spend": led.spend.copy(), "shown": led.shown.copy(),
                "exhausted_at": led.exhausted_at.copy(), "counts": dict(self.counts),
                "advertiser_value": self.advertiser_value}

    def set_state(self, state: dict) -> None:
        """Restore a ``get_state`` of a day over the same requests. A state of another shape is an
        ``AdSimStateError`` naming its part, and the day is left as it was."""
        if not isinstance(state, dict) or set(state) != set(self.STATE_KEYS):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise AdSimStateError(f"must be a dict with keys {sorted(self.STATE_KEYS)}, got {got}", key="day")
        if state["budgets"] != self.budgets:
            raise AdSimStateError(f"a {state['budgets']!r} day, this one is {self.budgets!r}", key="day.budgets")
        position = state["position"]
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position <= len(self):
            raise AdSimStateError(f"must be an integer in [0, {len(self)}], got {position!r}", key="day.position")
        led = self.ledger
        for key, like in (("uniforms", self.uniforms), ("budget", led.budget), ("spend", led.spend),
                          ("shown", led.shown), ("exhausted_at", led.exhausted_at)):
            value = state[key]
            if not isinstance(value, np.ndarray) or value.shape != like.shape or value.dtype != like.dtype:
                raise AdSimStateError(f"must be a {like.dtype} array of shape {like.shape}", key=f"day.{key}")
        if not isinstance(state["counts"], dict) or set(state["counts"]) != set(self.counts):
            raise AdSimStateError(f"must be a dict with keys {sorted(self.counts)}", key="day.counts")
        if self.budgets == "market" and (state["spend"] > state["budget"]).any():
            raise AdSimStateError("an ad spent beyond its budget", key="day.spend")
        self.position = int(position)
        self.uniforms = state["uniforms"].copy()
        self.ledger = Ledger(*(state[key].copy() for key in ("budget", "spend", "shown", "exhausted_at")))
        self.counts = {key: int(value) for key, value in state["counts"].items()}
        self.advertiser_value = float(state["advertiser_value"])

    def _check_open(self, n: int) -> None:
        if self.position + n > len(self):
            raise ValueError(f"the day has {len(self)} requests; {self.position} served, {n} more asked")

    @property
    def revenue(self) -> float:
        """The platform's revenue so far today: everything the ledger charged."""
        return float(self.ledger.spend.sum())

    def summary(self) -> dict:
        """The day so far: request counts, revenue, advertiser value, and the ledger (copies)."""
        led = self.ledger
        return {"requests": self.position, **self.counts, "revenue": self.revenue,
                "advertiser_value": self.advertiser_value,
                "exhausted_ads": int((led.spend >= led.budget).sum()),
                "overspend": float(np.maximum(led.spend - led.budget, 0.0).sum()),
                "spend": led.spend.copy(), "budget": led.budget.copy(), "shown": led.shown.copy(),
                "exhausted_at": led.exhausted_at.copy()}


def serve_reference(rank, eligible, ecpm, pctr, bill_pctr, bill_pcvr, uniforms, throttle, elapsed, use_pacing, slack,
                    billed_on, valued_on, bid, reserve, enforce, budget, spend, shown, exhausted_at, first,
                    ad_out, price_out, charge_out, value_out, click_out, conversion_out, capped_out, exhausted_out,
                    constrained_out) -> None:
    """The serve loop, the definition (``MarketDay.serve`` passes its arguments): writes the outputs row by row and
    updates ``spend``, ``shown`` and ``exhausted_at`` in place.

    Per request r: the auction holds the eligible ads with, when ``enforce``, budget left and, when ``use_pacing``,
    a throttle uniform below ``Pacing``'s probability; the shown ad is the policy's best-ranked of those it offers
    (rank > -inf; ties: lowest id). It pays the GSP price against the rest of the auction, is billed on its goal's
    event drawn with ``uniforms[r]`` and, when ``enforce``, never beyond its budget.
    """
    for r in range(len(rank)):
        offered = eligible[r] & (rank[r] > -np.inf)
        ranked = np.where(offered, rank[r], -np.inf)
        top = int(np.argmax(ranked))
        constrained_out[r] = enforce and bool(offered[top]) and not spend[top] < budget[top]
        cand = eligible[r] & (spend < budget) if enforce else eligible[r].copy()
        if use_pacing:
            cand &= throttle[r] < np.clip((elapsed[r] + slack - spend / budget) / slack, 0.0, 1.0)
        if not (cand & offered).any():
            ad_out[r] = -1
            continue
        a = int(np.argmax(np.where(cand & offered, rank[r], -np.inf)))
        own = float(ecpm[r, a])
        below = cand & (ecpm[r] <= own)
        below[a] = False
        best = float(ecpm[r][below].max()) if below.any() else -np.inf
        price = min(own, max(reserve, best))
        click = bool(uniforms[r, 0] < bill_pctr[r, a])
        conversion = click and bool(uniforms[r, 1] < bill_pcvr[r, a])
        if billed_on[a] == IMPRESSION:
            charge = price / 1000.0
        else:
            charge = price / (1000.0 * max(float(pctr[r, a]), MIN_PCTR)) if click else 0.0
        if valued_on[a] == IMPRESSION:
            value = float(bid[a]) / 1000.0
        elif (valued_on[a] == CLICK and click) or (valued_on[a] == CONVERSION and conversion):
            value = float(bid[a])
        else:
            value = 0.0
        left = budget[a] - spend[a]
        if enforce and charge >= left:
            capped_out[r], exhausted_out[r] = charge > left, True
            charge = float(left)
            spend[a] = budget[a]
            exhausted_at[a] = first + r
        else:
            spend[a] += charge
        shown[a] += 1
        ad_out[r], price_out[r], charge_out[r], value_out[r] = a, price, charge, value
        click_out[r], conversion_out[r] = click, conversion


def budget_shares(trie: SidTrie, prefixes: np.ndarray, remaining: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """(B, W) budget pacing below each next code: sum of ``remaining`` over sum of ``budget`` of the ads under
    prefix + code, for (B, d) ``prefixes`` and (B, n_ads) per-ad amounts (zero for ads that do not count); 0 where a
    code leads to no such ad. Fixed-size, whatever the number of ads below."""
    prefixes = np.asarray(prefixes, dtype=np.int64)
    d = prefixes.shape[-1]
    node = trie.walk(prefixes)
    kids = trie.child[d][np.maximum(node, 0)]  # (B, W)
    level, k = trie.levels[d + 1], np.maximum(kids, 0)

    def below(values: np.ndarray) -> np.ndarray:
        sums = np.zeros((len(values), trie.n_items + 1))
        np.cumsum(values[:, trie.order], axis=1, out=sums[:, 1:])
        return np.take_along_axis(sums, level.end[k], axis=1) - np.take_along_axis(sums, level.start[k], axis=1)

    total = below(np.asarray(budget, dtype=np.float64))
    ok = (kids >= 0) & (node[:, None] >= 0) & (total > 0)
    share = below(np.asarray(remaining, dtype=np.float64)) / np.where(ok, total, 1.0)
    return np.where(ok, np.clip(share, 0.0, 1.0), 0.0)


def requests_of_day(requests: RequestBatch, day: int, max_requests: int | None = None) -> RequestBatch:
    """The requests of ``day`` in time order (ties by request id), the first ``max_requests`` when given."""
    rows = np.flatnonzero(np.asarray(requests["day"]) == day)
    rows = rows[np.lexsort((np.asarray(requests["request_id"])[rows], np.asarray(requests["ts"])[rows]))]
    return take(requests, rows[:max_requests])


def _positive(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and bool(np.isfinite(value)) and value > 0
