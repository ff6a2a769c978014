"""MarketSimulator: (B, K, L) candidates of a day's requests scored in time order against the ledger. Batched scoring
gives the numbers of serving the requests one by one; an exhausted ad is never resolved (nor paid) later in the day;
no ad is billed beyond its budget; the per-request rule (budgets="logged") is Simulator.evaluate's."""

from __future__ import annotations

import numpy as np
import pytest

from adsim.errors import AdSimStateError
from adsim.simulator.market import MarketConfig, requests_of_day
from adsim.simulator.market_simulator import MarketSimulator

DAY = 2


@pytest.fixture(scope="module")
def msim(env_fixture):
    return MarketSimulator(env_fixture.context.simulator, MarketConfig(budget_scale=0.02))


@pytest.fixture(scope="module")
def day_requests(env_fixture):
    return requests_of_day(env_fixture.context.requests.logged, DAY, 120)


def greedy_paths(msim, book, allowed, k: int = 3, seed: int = 0) -> np.ndarray:
    """(B, K, L): candidate 0 the path of the best-eCPM ad each request may see at the block's start (everyone
    chases the same few ads, so budgets run out inside the block); the others random legal-at-start ads' paths."""
    rng = np.random.default_rng(seed)
    codes = msim.simulator.ad_codes
    best = np.where(allowed, book.ecpm, -np.inf).argmax(axis=1)
    others = [[rng.choice(np.flatnonzero(row)) if row.any() else 0 for row in allowed] for _ in range(k - 1)]
    return np.stack([codes[best], *(codes[np.array(o)] for o in others)], axis=1)


def test_batched_is_request_by_request_and_spent_ads_leave(msim, day_requests):
    """One block of 120 requests vs the same paths served one request at a time: identical scores and ledger."""
    days = [msim.open_day(day_requests, np.random.default_rng(4)) for _ in range(2)]
    book, allowed = msim.next_block(days[0], 120)
    paths = greedy_paths(msim, book, allowed)
    keep = allowed.any(axis=1)
    serve = np.where(keep, 0, -1)
    block = msim.evaluate(days[0], paths, serve, book=book)
    single = [msim.evaluate(days[1], paths[r:r + 1], serve[r:r + 1]) for r in range(len(paths))]
    for name in ("ad_id", "valid", "final_value", "ecpm", "zscore"):
        np.testing.assert_array_equal(getattr(block.evaluation, name),
                                      np.concatenate([getattr(s.evaluation, name) for s in single]), err_msg=name)
    np.testing.assert_array_equal(block.allowed, np.concatenate([s.allowed for s in single]))
    np.testing.assert_array_equal(block.served.charge, np.concatenate([s.served.charge for s in single]))
    a, b = days[0].summary(), days[1].summary()
    for key in ("spend", "shown", "exhausted_at"):
        np.testing.assert_array_equal(a[key], b[key])
    # budgets ran out inside the block, and an exhausted ad is never resolved (so never rewarded) afterwards
    spent = np.flatnonzero(a["exhausted_at"] >= 0)
    assert len(spent) >= 2 and (a["spend"] <= a["budget"]).all()
    ad_id, row = block.evaluation.ad_id, np.arange(len(paths))[:, None]
    for ad in spent:
        later = row > a["exhausted_at"][ad]
        assert not (later & (ad_id == ad)).any() and not block.allowed[row[:, 0] > a["exhausted_at"][ad], ad].any()
    # the greedy path of a spent ad: blocked (no live ad on its leaf) or resolved to a live ad sharing the leaf
    after = row[:, 0] > a["exhausted_at"][spent].min()
    chased = after & keep & (paths[:, 0] == msim.simulator.ad_codes[spent[0]]).all(axis=1)
    assert chased.any()
    assert (block.blocked[chased, 0] | block.evaluation.valid[chased, 0]).all()
    assert block.blocked[chased, 0].any() and (block.evaluation.final_value[block.blocked] == 0).all()
    assert (block.served.ad[keep] == ad_id[keep, 0]).all() and (block.served.ad[~keep] == -1).all()
    assert block.served.charge.sum() == pytest.approx(a["revenue"])


def test_logged_budgets_score_as_the_simulator(msim, day_requests):
    day = msim.open_day(day_requests, np.random.default_rng(0), budgets="logged")
    book, allowed = msim.next_block(day, 60)
    paths = greedy_paths(msim, book, allowed)
    out = msim.evaluate(day, paths, book=book)
    ev = msim.simulator.evaluate(book.requests, paths)
    for name in ("ad_id", "valid", "final_value"):
        np.testing.assert_array_equal(getattr(out.evaluation, name), getattr(ev, name))
    assert day.position == 60 and (day.ledger.exhausted_at == -1).all()


def test_bad_calls_and_day_state_round_trip(msim, day_requests):
    day = msim.open_day(day_requests, np.random.default_rng(1))
    book, allowed = msim.next_block(day, 10)
    paths = greedy_paths(msim, book, allowed, k=2)
    with pytest.raises(ValueError, match="serve must be"):
        msim.evaluate(day, paths, serve=2, book=book)
    with pytest.raises(ValueError, match="next 3 requests"):
        msim.evaluate(day, paths[:3], book=book)
    state = day.get_state()
    first = msim.evaluate(day, paths, book=book)
    day.set_state(state)
    again = msim.evaluate(day, paths, book=book)
    np.testing.assert_array_equal(first.served.charge, again.served.charge)
    bad = {**state, "spend": state["budget"] * 2}
    with pytest.raises(AdSimStateError, match="beyond its budget"):
        day.set_state(bad)
    assert day.position == 10
