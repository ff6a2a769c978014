"""The market's serve loop on hand-made books: GSP prices, billing by goal, budget caps, exhaustion, pacing, and
the compiled kernel giving the reference's numbers exactly (hypothesis over random books)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.errors import AdSimOptionError
from adsim.simulator.market import BILLED_ON, VALUED_ON, MarketConfig, Pacing, Served, serve_reference
from adsim.simulator.market_kernels import serve_rows

BACKENDS = {"reference": serve_reference, "compiled": serve_rows}
CPM, CPC, OCPA = 0, 1, 3


def serve(backend, rank, eligible, ecpm, pctr, goal, bid, budget, spend=None, uniforms=None, bill_pctr=None,
          bill_pcvr=None, reserve=0.5, enforce=True, pacing=None, elapsed=None, throttle=None):
    """One call of a serve kernel; returns Served and the ledger (spend, shown, exhausted_at)."""
    rank, eligible, ecpm, pctr = (np.asarray(a, dtype=dtype) for a, dtype in
                                  ((rank, float), (eligible, bool), (ecpm, float), (pctr, float)))
    n, n_ads = rank.shape
    goal = np.asarray(goal)
    spend = np.zeros(n_ads) if spend is None else np.asarray(spend, dtype=float).copy()
    shown, exhausted_at = np.zeros(n_ads, dtype=np.int64), np.full(n_ads, -1, dtype=np.int64)
    uniforms = np.zeros((n, 2)) if uniforms is None else np.asarray(uniforms, dtype=float)
    served = Served.empty(n)
    BACKENDS[backend](rank, eligible, ecpm, pctr, pctr if bill_pctr is None else np.asarray(bill_pctr, dtype=float),
                      np.ones((n, n_ads)) if bill_pcvr is None else np.asarray(bill_pcvr, dtype=float), uniforms,
                      np.zeros((0, 0)) if throttle is None else np.asarray(throttle, dtype=float),
                      np.zeros(n) if elapsed is None else np.asarray(elapsed, dtype=float), pacing is not None,
                      1.0 if pacing is None else pacing.slack, BILLED_ON[goal], VALUED_ON[goal],
                      np.asarray(bid, dtype=float), reserve, enforce, np.asarray(budget, dtype=float), spend, shown,
                      exhausted_at, 0, *served)
    return served, spend, shown, exhausted_at


@pytest.mark.parametrize("backend", BACKENDS)
def test_gsp_pays_the_next_ecpm_below_within_reserve_and_own(backend):
    ecpm = [[10.0, 8.0, 3.0, 0.1], [10.0, 8.0, 3.0, 0.1], [10.0, 8.0, 3.0, 0.1], [0.2, 0.1, 0.1, 0.1]]
    rank = [[10.0, 8.0, 3.0, 0.1],  # greedy: the top ad pays the second eCPM
            [-np.inf, 1.0, 2.0, -np.inf],  # the policy picks ad 2: the best other eCPM below its own, 0.1 -> 0.5
            [0.0, 0.0, 1.0, 0.0],  # ad 2 over ads 0, 1: 0.1 below it, floored at the reserve
            [5.0, -np.inf, -np.inf, -np.inf]]  # its eCPM under the reserve: it pays its own eCPM
    served, spend, shown, _ = serve(backend, rank, np.ones((4, 4)), ecpm, np.full((4, 4), 0.1), [CPM] * 4,
                                    [1.0] * 4, [100.0] * 4)
    assert served.ad.tolist() == [0, 2, 2, 0]
    assert served.price.tolist() == [8.0, 0.5, 0.5, 0.2]
    assert served.charge.tolist() == [8.0 / 1000, 0.5 / 1000, 0.5 / 1000, 0.2 / 1000]
    assert shown.tolist() == [2, 0, 2, 0] and spend[0] == 8.0 / 1000 + 0.2 / 1000


@pytest.mark.parametrize("backend", BACKENDS)
def test_billing_follows_the_goal(backend):
    # CPM: per impression, valued bid / 1000; CPC: per click at price / (1000 pCTR), valued bid per click;
    # oCPA: billed per click too (the cascade's rule), valued bid per conversion
    ecpm = np.array([[40.0, 30.0, 20.0, 1.0]] * 4)
    pctr = np.full((4, 4), 0.05)
    only = np.full((4, 4), -np.inf)
    for r, ad in enumerate([0, 1, 2, 2]):
        only[r, ad] = 1.0
    uniforms = [[0.9, 0.9], [0.01, 0.9], [0.01, 0.01], [0.9, 0.01]]  # no click; click; click + conversion; none
    served, *_ = serve(backend, only, np.ones((4, 4)), ecpm, pctr, [CPM, CPC, OCPA, CPM], [7.0, 2.0, 50.0, 1.0],
                       [1e6] * 4, uniforms=uniforms, bill_pcvr=np.full((4, 4), 0.5))
    assert served.click.tolist() == [False, True, True, False]
    assert served.conversion.tolist() == [False, False, True, False]
    assert served.charge.tolist() == [30.0 / 1000, 20.0 / (1000 * 0.05), 1.0 / (1000 * 0.05), 0.0]
    assert served.value.tolist() == [7.0 / 1000, 2.0, 50.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_charge_that_reaches_the_budget_is_cut_and_the_ad_leaves(backend):
    n = 5
    ecpm = np.tile([100.0, 50.0], (n, 1))
    served, spend, _, exhausted_at = serve(backend, ecpm, np.ones((n, 2)), ecpm, np.full((n, 2), 0.1), [CPM, CPM],
                                           [1.0, 1.0], [0.12, 10.0])
    # ad 0 pays 0.05 a request: 0.05, 0.05, then 0.02 (cut), then ad 1 takes over at the reserve
    assert served.ad.tolist() == [0, 0, 0, 1, 1]
    assert served.charge[:3].tolist() == [0.05, 0.05, pytest.approx(0.02)]
    assert served.capped.tolist() == [False, False, True, False, False]
    assert served.exhausted.tolist() == [False, False, True, False, False]
    assert served.constrained.tolist() == [False, False, False, True, True]
    assert spend[0] == 0.12 and exhausted_at.tolist() == [2, -1]
    assert served.price[3:].tolist() == [0.5, 0.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_logged_budgets_charge_in_full_and_never_exhaust(backend):
    ecpm = np.tile([100.0, 50.0], (5, 1))
    served, spend, _, exhausted_at = serve(backend, ecpm, np.ones((5, 2)), ecpm, np.full((5, 2), 0.1), [CPM, CPM],
                                           [1.0, 1.0], [0.12, 10.0], enforce=False)
    assert served.ad.tolist() == [0] * 5 and spend[0] == pytest.approx(0.25) and exhausted_at[0] == -1
    assert not served.constrained.any() and not served.capped.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pacing_throttles_an_ad_ahead_of_the_clock(backend):
    ecpm = np.array([[100.0, 50.0]] * 3)
    throttle = np.full((3, 2), 0.5)
    # spent 60% of ad 0's budget at 50% of the day: probability 1 - 0.1 / 0.2 = 0.5, so u = 0.5 sits out;
    # at 45% spent it bids (probability 1); at 75% spent, none
    for spent, shown in ((0.6, 1), (0.45, 0), (0.75, 1)):
        served, *_ = serve(backend, ecpm[:1], np.ones((1, 2)), ecpm[:1], np.full((1, 2), 0.1), [CPM, CPM],
                           [1.0, 1.0], [1.0, 1.0], spend=[spent, 0.0], pacing=Pacing(slack=0.2), elapsed=[0.5],
                           throttle=throttle[:1])
        assert served.ad.tolist() == [shown]


def test_bad_market_options_name_the_option():
    for option, value in (("billing", "oracle"), ("budget_scale", 0.0), ("budget_scale", float("inf")),
                          ("reserve_ecpm", -1.0), ("backend", "gpu")):
        with pytest.raises(AdSimOptionError, match=f"option {option}:") as caught:
            MarketConfig(**{option: value})
        assert caught.value.option == option
    with pytest.raises(AdSimOptionError, match="option slack:"):
        Pacing(slack=-0.1)


@st.composite
def books(draw):
    n, n_ads = draw(st.integers(1, 12)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ecpm = np.round(rng.lognormal(1.0, 1.5, (n, n_ads)), draw(st.sampled_from([0, 1, 6])))  # ties too
    rank = np.where(rng.random((n, n_ads)) < 0.2, -np.inf, draw(st.sampled_from([ecpm, rng.random((n, n_ads))])))
    return dict(rank=rank, eligible=rng.random((n, n_ads)) < 0.8, ecpm=ecpm, pctr=rng.uniform(0, 0.2, (n, n_ads)),
                goal=rng.integers(0, 5, n_ads), bid=rng.lognormal(0, 1, n_ads),
                budget=rng.lognormal(-3, 1.5, n_ads), uniforms=rng.random((n, 2)),
                bill_pctr=rng.uniform(0, 0.5, (n, n_ads)), bill_pcvr=rng.uniform(0, 1, (n, n_ads)),
                reserve=draw(st.sampled_from([0.0, 0.5, 3.0])), enforce=draw(st.booleans()),
                pacing=draw(st.sampled_from([None, Pacing(0.05), Pacing(0.5)])), elapsed=np.sort(rng.random(n)),
                throttle=rng.random((n, n_ads)))


@settings(max_examples=150, deadline=None)
@given(books())
def test_compiled_serve_is_the_reference_exactly_and_never_bills_past_a_budget(book):
    ref = serve("reference", **book)
    fast = serve("compiled", **book)
    for a, b in zip(ref, fast, strict=True):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            np.testing.assert_array_equal(x, y)
    served, spend, shown, _ = ref
    if book["enforce"]:
        assert (spend <= book["budget"]).all()
        charged = np.zeros(len(spend))
        np.add.at(charged, served.ad[served.ad >= 0], served.charge[served.ad >= 0])
        np.testing.assert_allclose(charged, spend, rtol=1e-12, atol=1e-15)
    rows = np.flatnonzero(served.ad >= 0)
    assert (served.charge >= 0).all() and (served.price[rows] <= book["ecpm"][rows, served.ad[rows]]).all()
    assert shown.sum() == len(rows)
