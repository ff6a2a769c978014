"""The market's sequential serve loop as one numba kernel (``backend="compiled"``).

Why: a day is replayed request by request, since every win moves the ledger the next request reads (an ad out of
budget leaves the auction), so the numpy reference pays a Python iteration and a dozen small array operations per
request. This kernel runs a block of requests in one call. ``adsim.simulator.market.serve_reference`` is the
definition; the kernel must give its numbers exactly (the same operations on the same float64 values, ads visited
in id order so ties go to the lowest id, as ``np.argmax``), which ``tests/market/test_market_parity.py`` checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

IMPRESSION, CLICK, CONVERSION = 0, 1, 2
"""The events an ad is billed or valued on (``adsim.simulator.market.BILLED_ON`` / ``VALUED_ON``)."""
MIN_PCTR = 1e-12
"""Floor of the model pCTR a per-click price divides by."""


@njit(cache=True)
def serve_rows(rank, eligible, ecpm, pctr, bill_pctr, bill_pcvr, uniforms, throttle, elapsed, use_pacing, slack,
               billed_on, valued_on, bid, reserve, enforce, budget, spend, shown, exhausted_at, first,
               ad_out, price_out, charge_out, value_out, click_out, conversion_out, capped_out, exhausted_out,
               constrained_out):
    """``serve_reference``, compiled: the same arguments, the same outputs and ledger updates."""
    n, n_ads = rank.shape
    cand = np.zeros(n_ads, dtype=np.bool_)
    for r in range(n):
        # the policy's favourite among the ads the request may see, budgets aside (budget-constrained if spent)
        top, top_rank = -1, -np.inf
        for j in range(n_ads):
            if eligible[r, j] and rank[r, j] > -np.inf and rank[r, j] > top_rank:
                top, top_rank = j, rank[r, j]
        constrained_out[r] = enforce and top >= 0 and not spend[top] < budget[top]
        # the auction: eligible, with budget left and not throttled; the policy's best offered one is shown
        a, a_rank = -1, -np.inf
        for j in range(n_ads):
            ok = eligible[r, j]
            if ok and enforce:
                ok = spend[j] < budget[j]
            if ok and use_pacing:
                p = min(max((elapsed[r] + slack - spend[j] / budget[j]) / slack, 0.0), 1.0)
                ok = throttle[r, j] < p
            cand[j] = ok
            if ok and rank[r, j] > -np.inf and rank[r, j] > a_rank:
                a, a_rank = j, rank[r, j]
        ad_out[r] = a
        if a < 0:
            price_out[r] = charge_out[r] = value_out[r] = 0.0
            click_out[r] = conversion_out[r] = capped_out[r] = exhausted_out[r] = False
            continue
        # GSP: the highest other eCPM that ranks at or below the shown ad's, at least the reserve, at most its own
        own, best = ecpm[r, a], -np.inf
        for j in range(n_ads):
            if cand[j] and j != a and ecpm[r, j] <= own and ecpm[r, j] > best:
                best = ecpm[r, j]
        price = min(own, max(reserve, best))
        click = uniforms[r, 0] < bill_pctr[r, a]
        conversion = click and uniforms[r, 1] < bill_pcvr[r, a]
        if billed_on[a] == IMPRESSION:
            charge = price / 1000.0
        elif click:
            charge = price / (1000.0 * max(pctr[r, a], MIN_PCTR))
        else:
            charge = 0.0
        if valued_on[a] == IMPRESSION:
            value = bid[a] / 1000.0
        elif (valued_on[a] == CLICK and click) or (valued_on[a] == CONVERSION and conversion):
            value = bid[a]
        else:
            value = 0.0
        capped = exhausted = False
        left = budget[a] - spend[a]
        if enforce and charge >= left:
            capped, exhausted = charge > left, True
            charge = left
            spend[a] = budget[a]
            exhausted_at[a] = first + r
        else:
            spend[a] += charge
        shown[a] += 1
        price_out[r], charge_out[r], value_out[r] = price, charge, value
        click_out[r], conversion_out[r], capped_out[r], exhausted_out[r] = click, conversion, capped, exhausted
