"""Which ads a request may legally receive: targeting, liveness and budget, as one boolean row per request."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adsim.data.bundle import Scenario


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
    """Vectorised eligibility of every ad for a batch of requests."""

    def __init__(self, scenario: Scenario):
        ads, users = scenario.table("ads"), scenario.table("users")
        self.age_mask = ads["target_age_mask"].to_numpy().astype(np.int64)
        self.gender_mask = ads["target_gender_mask"].to_numpy().astype(np.int64)
        self.region_mask = ads["target_region_mask"].to_numpy().astype(np.int64)
        self.created_day = ads["created_day"].to_numpy().astype(np.int64)
        self.user_age = users["age_bucket"].to_numpy().astype(np.int64)
        self.user_gender = users["gender"].to_numpy().astype(np.int64)
        self.user_region = users["region"].to_numpy().astype(np.int64)
        self.exhausted_at = budget_exhaustion(scenario)

    @property
    def n_ads(self) -> int:
        return len(self.created_day)

    def allowed(self, user_ids: np.ndarray, day: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """(B, n_ads) bool: targeting matches the user, the ad is live that day and has budget at ``ts``."""
        user_ids, day, ts = (np.asarray(a, dtype=np.int64)[:, None] for a in (user_ids, day, ts))
        day_row = np.minimum(day[:, 0], len(self.exhausted_at) - 1)
        return (
            ((self.age_mask >> self.user_age[user_ids]) & 1).astype(bool)
            & ((self.gender_mask >> self.user_gender[user_ids]) & 1).astype(bool)
            & ((self.region_mask >> self.user_region[user_ids]) & 1).astype(bool)
            & (self.created_day <= day)
            & (self.exhausted_at[day_row] >= ts)
        )
