"""The market_replay benchmark runs end to end with tiny settings and writes its three reports."""

from __future__ import annotations

import pandas as pd

from agents.market import CASCADE, GREEDY, PACED, PER_REQUEST
from benchmarks.market_replay import main


def test_quick_run_writes_every_table(env_fixture, tmp_path):
    main(["--quick", "--scenario", env_fixture.path, "--scorer-factory", "conftest:TruthLikeScorer",
          "--days", "2", "--budget-scale", "0.05", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{name}{suffix}" for name in ("market_replay", "overspend", "market_replay_days")
        for suffix in (".csv", ".json", ".md"))
    table = pd.read_csv(tmp_path / "market_replay.csv")
    assert set(table["policy"]) == {CASCADE, GREEDY, PACED, PER_REQUEST}
    assert set(table["billing"]) == {"model", "truth"} and (table["days"] == 2).all()
    market = table[table["policy"] != PER_REQUEST]
    assert (market["overspend"] == 0).all() and (market["utilisation"] <= 1).all()
    greedy = table.set_index(["billing", "policy"]).loc[("model", GREEDY)]
    assert greedy["exhausted_ads"] > 0 and 0 < greedy["constrained"] < 1
    overspend = pd.read_csv(tmp_path / "overspend.csv")
    assert (overspend["market_overspend"] == 0).all() and (overspend["overspend"] > 0).all()
    assert (overspend["paid_per_request"] > overspend["paid_in_market"]).all()
