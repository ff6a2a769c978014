"""Market mode of the batched simulator: (B, K, L) candidate paths of a day's next B requests, scored in time order
against the day's ledger, each request's served candidate charged to it.

``Simulator.evaluate`` scores a batch of requests each on its own, eligibility as the logs' budgets ran out.
``MarketSimulator.evaluate`` scores the same candidates under the market's rule (``adsim.simulator.market``):

* the requests are the day's next B (``MarketDay.position`` on), served in time order;
* request r's candidates are resolved and scored by ``Simulator.evaluate`` under the eligibility r meets: targeting
  and liveness, minus every ad whose budget ran out earlier in the replayed day, including by the block's own
  earlier requests. A path whose ads have all run out is invalid (``blocked``) and scores nothing; a path that
  carries a spent ad and a live one resolves to the live one;
* request r's served candidate (``serve[r]``, the first by default: a policy's own sample) is shown, priced,
  billed and charged to the ledger (``MarketDay.serve``), which the next requests read.

It composes ``Simulator`` and ``Market`` (neither changes). Scoring is batched: the whole block is evaluated under
the eligibility at its start, served up to the first request whose charge spends a budget, and only the later
requests whose eligibility that changed are evaluated again; so the numbers are those of serving the requests one
by one (``tests/market/test_market_simulator.py``), at one ``Simulator.evaluate`` call per budget that runs out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from adsim.simulator.kernels import Backend
from adsim.simulator.market import Book, Budgets, Market, MarketConfig, MarketDay, Served
from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.scoring import RewardSource
from adsim.simulator.simulator import Evaluation, Simulator

__all__ = ["MarketEvaluation", "MarketSimulator"]


class MarketEvaluation(NamedTuple):
    """What ``MarketSimulator.evaluate`` returns for the (B, K) candidates of a day's next B requests."""

    evaluation: Evaluation
    """(B, K) as ``Simulator.evaluate``, each request scored under the eligibility it met."""
    allowed: np.ndarray
    """(B, n_ads) bool: the eligibility each request met (targeting, liveness, budget left at its turn)."""
    blocked: np.ndarray
    """(B, K) bool: the path leads to ads the request may see by targeting and liveness, all out of budget."""
    serve: np.ndarray
    """(B,) int64: the candidate each request was served, -1 for none."""
    served: Served
    """What each request was shown and billed (``ad`` -1 where its served candidate was invalid or none)."""
    book: Book


class MarketSimulator:
    """A ``Simulator`` whose scoring reads and moves a day's budget ledger (see the module docstring)."""

    def __init__(self, simulator: Simulator, config: MarketConfig | None = None, market: Market | None = None):
        self.simulator = simulator
        self.market = market if market is not None else Market(simulator, config)
        if self.market.simulator is not simulator:
            raise ValueError("market must be built on this simulator")

    @property
    def depth(self) -> int:
        return self.simulator.depth

    def open_day(self, requests: RequestBatch, rng: np.random.Generator, budgets: Budgets = "market") -> MarketDay:
        """``Market.open_day``: a day over ``requests`` (``requests_of_day``), billing uniforms drawn from ``rng``."""
        return self.market.open_day(requests, rng, budgets)

    def next_block(self, day: MarketDay, n: int) -> tuple[Book, np.ndarray]:
        """The book of the day's next ``n`` requests (fewer at the day's end) and the eligibility they meet with
        the ledger as it stands, (B, n_ads): what a policy samples under before the block is served (a request
        later in the block may find fewer ads, which ``evaluate`` accounts for)."""
        lo = day.position
        book = self.market.book(day.requests, lo, min(lo + n, len(day)))
        return book, day.allowed(book)

    def evaluate(self, day: MarketDay, paths: np.ndarray, serve: int | np.ndarray = 0,
                 reward_source: RewardSource = "model", book: Book | None = None,
                 backend: Backend = "reference") -> MarketEvaluation:
        """Score (B, K, L) ``paths`` of the day's next B requests in time order and serve each request's
        ``serve`` candidate (an int for all, or (B,) ints; -1: serve nothing), which moves ``day``'s ledger.

        ``book``: the block's book from ``next_block`` (scored here when None). ``backend`` is
        ``Simulator.evaluate``'s; the serve loop runs in the market's (``MarketConfig.backend``).
        """
        paths = np.asarray(paths)
        if paths.ndim != 3 or paths.shape[2] != self.depth:
            raise ValueError(f"paths must be (B, K, L={self.depth}), got {paths.shape}")
        b, k, _ = paths.shape
        if book is None:
            book = self.market.book(day.requests, day.position, min(day.position + b, len(day)))
        if book.first != day.position or len(book.elapsed) != b:
            raise ValueError(f"paths are for the day's next {b} requests from {day.position}; the book has "
                             f"{len(book.elapsed)} from {book.first}")
        serve = np.broadcast_to(np.asarray(serve, dtype=np.int64), (b,)).copy()
        if ((serve < -1) | (serve >= k)).any():
            raise ValueError(f"serve must be a candidate index in [0, {k}) or -1, got {serve.tolist()}")
        sim, enforce = self.simulator, day.budgets == "market"

        allowed = day.allowed(book)
        ev = sim.evaluate(book.requests, paths, reward_source, allowed=allowed, backend=backend)
        parts = {name: (None if value is None else np.array(value)) for name, value in ev._asdict().items()}
        rows_served: list[Served] = []
        at = 0
        while at < b:
            rank = self._rank(parts["ad_id"][at:], serve[at:])
            before = day.get_state() if enforce else None
            served = day.serve(book.rows(at, b), rank)
            spent = np.flatnonzero(served.exhausted[:-1])
            if not len(spent):
                rows_served.append(served)
                break
            # a budget ran out at request at + e: the requests after it meet a smaller eligibility
            e = int(spent[0])
            day.set_state(before)
            rows_served.append(day.serve(book.rows(at, at + e + 1), rank[: e + 1]))
            at += e + 1
            now = day.allowed(book.rows(at, b))
            changed = at + np.flatnonzero((now != allowed[at:]).any(axis=1))
            allowed[at:] = now
            if len(changed):
                again = sim.evaluate(take(book.requests, changed), paths[changed], reward_source,
                                     allowed=allowed[changed], backend=backend)
                for name, value in again._asdict().items():
                    if value is not None:
                        parts[name][changed] = value
        served = (Served(*(np.concatenate(part) for part in zip(*rows_served, strict=True))) if rows_served
                  else Served.empty(0))
        expected = np.where(serve >= 0, parts["ad_id"][np.arange(b), np.maximum(serve, 0)], -1) if b else serve
        if not (served.ad == expected).all():
            raise RuntimeError("a served candidate's ad had no budget left at its turn (market simulator bug)")
        return MarketEvaluation(Evaluation(**parts), allowed, self._blocked(paths, book.eligible, parts["valid"]),
                                serve, served, book)

    def _rank(self, ad_id: np.ndarray, serve: np.ndarray) -> np.ndarray:
        """(B, n_ads) the serve loop's ranking: each request offers only its served candidate's resolved ad."""
        rank = np.full((len(serve), self.market.n_ads), -np.inf)
        rows = np.flatnonzero(serve >= 0)
        ads = ad_id[rows, serve[rows]]
        rank[rows[ads >= 0], ads[ads >= 0]] = 0.0
        return rank

    def _blocked(self, paths: np.ndarray, eligible: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(B, K): invalid, though the path's leaf holds an ad the request may see by targeting and liveness."""
        b, k, _ = paths.shape
        trie = self.simulator.trie
        node, start, end = trie.leaf_ranges(paths.reshape(b * k, -1))
        counts = np.where(node >= 0, end - start, 0)
        cand = np.repeat(np.arange(b * k), counts)
        offset = np.arange(len(cand)) - np.repeat(np.cumsum(counts) - counts, counts)
        seen = eligible[cand // k, trie.order[start[cand] + offset]]
        any_seen = np.zeros(b * k, dtype=bool)
        any_seen[cand[seen]] = True
        return any_seen.reshape(b, k) & ~valid
