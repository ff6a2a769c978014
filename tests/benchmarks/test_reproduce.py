"""benchmarks.reproduce: a rerun's mean inside / outside the committed interval, on hand numbers; clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.reproduce import compare, main, summary


def runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "seed": s, "model/ndcg": v, "truth/opr": v / 2, "train_seconds": 9.0}
                         for m, vs in values.items() for s, v in enumerate(vs)])


def test_a_rerun_mean_inside_the_committed_interval_counts_and_one_outside_is_named():
    # committed A: 0.5, 0.6, 0.7 -> mean 0.6, half-width t(0.975, 2) * 0.1 / sqrt(3) = 0.248
    committed = runs({"A": [0.5, 0.6, 0.7], "B": [0.30, 0.31, 0.32]})
    rerun = runs({"A": [0.7, 0.8, 0.9], "B": [0.5, 0.5, 0.5]})  # A's mean 0.8 is inside, B's 0.5 is not
    table = compare(rerun, committed).set_index("model")
    assert table.loc["A", "model/ndcg"].startswith("inside: 0.8 vs 0.6 ± 0.25")
    assert table.loc["B", "model/ndcg"].startswith("OUTSIDE: 0.5 vs 0.31")
    assert "train_seconds" not in table.columns
    assert summary(table.reset_index()) == (2, 4)


def test_a_model_missing_from_the_rerun_is_a_dash_and_unrelated_files_are_refused(tmp_path):
    committed = runs({"A": [0.5, 0.6, 0.7], "B": [0.3, 0.3, 0.4]})
    table = compare(runs({"A": [0.6, 0.6, 0.6]}), committed).set_index("model")
    assert table.loc["B", "model/ndcg"] == "-" and table.loc["B", "seeds (committed / rerun)"] == "3 / 0"
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    good = tmp_path / "good.csv"
    committed.to_csv(good, index=False)
    with pytest.raises(SystemExit, match="bad.csv: no 'model' column"):
        main([str(bad), str(good), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="missing.csv: no such runs file"):
        main([str(tmp_path / "missing.csv"), str(good), "--out", str(tmp_path)])
    main([str(good), str(good), "--out", str(tmp_path / "out"), "--label", "itself"])
    assert "4 of 4 rerun means lie inside" in (tmp_path / "out" / "reproduction.md").read_text()
