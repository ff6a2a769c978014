"""Baselines in market mode: the logging cascade, greedy eCPM and greedy eCPM with budget pacing, each replayed
through a day's market (``adsim.simulator.market``), where its own wins spend the budgets.

Each baseline is a ranking of every ad per request (what ``MarketDay.serve`` reads: the best-ranked ad in the
auction is shown), so a day is served in blocks and every baseline of a day reads the same scored book:

* logging cascade: the ads the cascade showed in the logs, in its slot order; the first that still has budget
  (the market shows one ad per request, as the generative policy writes one SID).
* greedy eCPM: every eligible ad by the reward models' eCPM (a one-stage ranker over the whole inventory).
* greedy eCPM + pacing: the same ranking, ads throttled by ``Pacing`` (spend share against the elapsed day).
* greedy eCPM, per-request budgets: the same ranking under AdSim-v0's rule (``budgets="logged"``: eligibility as
  the logs' budgets ran out, nothing capped), which measures what per-request training would overspend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from adsim.data.bundle import Scenario
from adsim.simulator.market import Book, Budgets, Market, MarketDay, Pacing
from adsim.simulator.requests import RequestBatch

Ranking = Callable[[Book], np.ndarray]
"""A book -> (B, n_ads) preference, -inf for ads not offered."""

CASCADE, GREEDY, PACED, PER_REQUEST = ("logging cascade", "greedy eCPM", "greedy eCPM + pacing",
                                       "greedy eCPM, per-request budgets")


@dataclass(frozen=True)
class MarketBaseline:
    """A policy as the market replays it: its ranking, its pacing and the budget rule it is replayed under."""

    name: str
    rank: Ranking
    pacing: Pacing | None = None
    budgets: Budgets = "market"


def greedy_ecpm(book: Book) -> np.ndarray:
    """Rank by the models' eCPM (the auction's own order)."""
    return book.ecpm


class CascadeRanking:
    """The logged cascade's choices: each request's logged ads, top slot first; -inf for every other ad."""

    def __init__(self, scenario: Scenario):
        imp = scenario.table("impressions")
        order = np.lexsort((imp["position"].to_numpy(), imp["request_id"].to_numpy()))
        self.request_id = imp["request_id"].to_numpy()[order]
        self.ad_id = imp["ad_id"].to_numpy().astype(np.int64)[order]
        self.position = imp["position"].to_numpy().astype(np.float64)[order]

    def __call__(self, book: Book) -> np.ndarray:
        rid = np.asarray(book.requests["request_id"])
        lo, hi = np.searchsorted(self.request_id, rid, "left"), np.searchsorted(self.request_id, rid, "right")
        counts = hi - lo
        rows = np.repeat(np.arange(len(rid)), counts)
        logged = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
        rank = np.full(book.eligible.shape, -np.inf)
        rank[rows, self.ad_id[logged]] = -self.position[logged]
        return rank


def market_baselines(scenario: Scenario, pacing: Pacing | None = None) -> list[MarketBaseline]:
    """The four baselines of the module docstring, ``pacing`` (default ``Pacing()``) for the paced one."""
    return [MarketBaseline(CASCADE, CascadeRanking(scenario)), MarketBaseline(GREEDY, greedy_ecpm),
            MarketBaseline(PACED, greedy_ecpm, pacing or Pacing()),
            MarketBaseline(PER_REQUEST, greedy_ecpm, budgets="logged")]


def replay_day(market: Market, requests: RequestBatch, baselines: Sequence[MarketBaseline],
               seed: int | Sequence[int], pairs_per_book: int = 100_000) -> dict[str, MarketDay]:
    """Every baseline over one day's ``requests`` (``requests_of_day``), each on its own ledger and all on the same
    billing draws (numpy ``seed``), reading one book per block of about ``pairs_per_book`` request x ad pairs."""
    days = {b.name: market.open_day(requests, np.random.default_rng(seed), b.budgets) for b in baselines}
    n = len(requests["request_id"])
    block = max(1, pairs_per_book // max(market.n_ads, 1))
    for lo in range(0, n, block):
        book = market.book(requests, lo, min(lo + block, n))
        for b in baselines:
            days[b.name].serve(book, b.rank(book), b.pacing)
    return days
