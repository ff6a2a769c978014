"""Which ads a request may legally receive: targeting, liveness and budget, as one boolean row per request."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from adsim.data.bundle import Scenario
from adsim.errors import AdSimOptionError
from adsim.simulator import kernels
from adsim.simulator.kernels import Backend, EligibilityTables

BudgetRule = Literal["logged", "none"]
BUDGET_RULES: tuple[BudgetRule, ...] = ("logged", "none")
"""``logged``: an ad leaves at the request that spent its budget in the logs (AdSim-v0, the default). ``none``:
budgets never remove an ad (targeting and liveness only), for callers that keep their own ledger (market mode)."""


def budget_exhaustion(scenario: Scenario) -> np.ndarray:
    """(n_days, n_ads) time of the request that spent each ad's daily budget in the logs; inf if never.

    An ad stays eligible up to and including that request.

    Replayed requests respect the budgets as they ran out in the logs; anticipatory requests, placed after the
    logs' last request of a day, see the end-of-day state.
    """
    ads, imp, req = scenario.table("ads"), scenario.table("impressions"), scenario.table("requests")
    n_days = int(req["day"].max()) + 1 if len(req) else 1
    out = np.full((n_days, len(ads)), np.inf)
    if len(imp) == 0:
        return out
    pos = np.searchsorted(req["request_id"].to_numpy(), imp["request_id"].to_numpy())
    frame = pd.DataFrame({
        "day": req["day"].to_numpy()[pos].astype(np.int64),
        "ts": req["ts"].to_numpy()[pos],
        "ad": imp["ad_id"].to_numpy(),
        "cost": imp["cost"].to_numpy(),
    })
    frame["spent"] = frame.groupby(["day", "ad"], sort=False)["cost"].cumsum()
    over = frame[frame["spent"].to_numpy() >= ads["daily_budget"].to_numpy()[frame["ad"].to_numpy()]]
    first = over.groupby(["day", "ad"], sort=False)["ts"].min()
    out[first.index.get_level_values(0), first.index.get_level_values(1)] = first.to_numpy()
    return out


class Eligibility:
    """Vectorised eligibility of every ad for a batch of requests.

    ``budgets`` (``BUDGET_RULES``): whether the budget exhaustion recorded in the logs removes ads (``"logged"``,
    the default) or budgets are left to the caller (``"none"``: ``exhausted_at`` is all inf, so ``allowed`` and the
    compiled ``tables`` read targeting and liveness only).
    """

    def __init__(self, scenario: Scenario, budgets: BudgetRule = "logged"):
        if budgets not in BUDGET_RULES:
            raise AdSimOptionError(f"must be one of {list(BUDGET_RULES)}, got {budgets!r}", option="budgets")
        self.budgets = budgets
        ads, users = scenario.table("ads"), scenario.table("users")
        self.age_mask = ads["target_age_mask"].to_numpy().astype(np.int64)
        self.gender_mask = ads["target_gender_mask"].to_numpy().astype(np.int64)
        self.region_mask = ads["target_region_mask"].to_numpy().astype(np.int64)
        self.created_day = ads["created_day"].to_numpy().astype(np.int64)
        self.user_age = users["age_bucket"].to_numpy().astype(np.int64)
        self.user_gender = users["gender"].to_numpy().astype(np.int64)
        self.user_region = users["region"].to_numpy().astype(np.int64)
        if budgets == "logged":
            self.exhausted_at = budget_exhaustion(scenario)
        else:
            req = scenario.table("requests")
            self.exhausted_at = np.full((int(req["day"].max()) + 1 if len(req) else 1, len(ads)), np.inf)

    @property
    def n_ads(self) -> int:
        return len(self.created_day)

    def tables(self, order: np.ndarray) -> EligibilityTables:
        """The arrays the compiled kernels read, ads in ``order`` (sorted position -> ad id: the trie's).

        Besides the per-ad arrays, targeting per (age, gender, region) combination and liveness per day as
        bitsets, so a mask reads a few words instead of five arrays per ad; computed here by ``allowed``'s formula.
        """
        order = np.asarray(order, dtype=np.int64)
        users = np.stack([self.user_age, self.user_gender, self.user_region], axis=1)
        ads = np.stack([self.age_mask, self.gender_mask, self.region_mask, self.created_day])[:, order]
        combos, combo = np.unique(users, axis=0, return_inverse=True)
        targeting = np.stack([((ads[0] >> a) & 1).astype(bool) & ((ads[1] >> g) & 1).astype(bool)
                              & ((ads[2] >> r) & 1).astype(bool) for a, g, r in combos])
        lo = min(0, int(ads[3].min()))
        days = np.arange(lo, max(int(ads[3].max()), lo) + 1)
        exhausted = np.ascontiguousarray(self.exhausted_at[:, order])
        return EligibilityTables(users, np.ascontiguousarray(ads), exhausted, order, combo.reshape(-1).astype(np.int64),
                                 _bitsets(targeting), _bitsets(ads[3][None, :] <= days[:, None]), lo,
                                 _bitsets(exhausted != np.inf))

    def allowed(self, user_ids: np.ndarray, day: np.ndarray, ts: np.ndarray, backend: Backend = "reference",
                tables: EligibilityTables | None = None) -> np.ndarray:
        """(B, n_ads) bool: targeting matches the user, the ad is live that day and has budget at ``ts``.

        ``backend="compiled"`` reads ``tables`` (``tables(order)``; built here, in ad order, when None).
        """
        kernels.check_backend(backend)
        if backend == "compiled":
            args = [np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in (user_ids, day, ts)]
            out = np.empty((len(args[0]), self.n_ads), dtype=bool)
            kernels.eligibility_rows(*args, kernels.plain(tables or self.tables(np.arange(self.n_ads))), out)
            return out
        user_ids, day, ts = (np.asarray(a, dtype=np.int64)[:, None] for a in (user_ids, day, ts))
        day_row = np.minimum(day[:, 0], len(self.exhausted_at) - 1)
        return (
            ((self.age_mask >> self.user_age[user_ids]) & 1).astype(bool)
            & ((self.gender_mask >> self.user_gender[user_ids]) & 1).astype(bool)
            & ((self.region_mask >> self.user_region[user_ids]) & 1).astype(bool)
            & (self.created_day <= day)
            & (self.exhausted_at[day_row] >= ts)
        )


def _bitsets(flags: np.ndarray) -> np.ndarray:
    """(R, n) bool -> (R, ceil(n / 64)) int64 words, bit p of a row at bit p % 64 of word p // 64."""
    words = -(-flags.shape[1] // 64)
    padded = np.zeros((flags.shape[0], words * 64), dtype=bool)
    padded[:, : flags.shape[1]] = flags
    return np.packbits(padded, axis=1, bitorder="little").view("<i8").astype(np.int64)
