"""Does a rerun reproduce a committed table? Compares a rerun's per-seed runs with the committed ones.

    python -m benchmarks.reproduce RERUN/runs.csv results/dpo_vs_hepo/quick/runs.csv --out results/dpo_vs_hepo/quick \\
        --name reproduction --label "fresh clone, fresh cache"

For every model and metric: the committed mean and 95 % t-interval over seeds (``benchmarks.stats``), the rerun's
mean, and whether that mean lies inside the committed interval (what "reproduces within its stated intervals"
means); the notes count the cells inside. A rerun on the committed machine type matches digit for digit; on another
CPU type torch's float kernels differ, so only the intervals can be asked to hold (README, "Development").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.report import write_report
from benchmarks.stats import t_interval

METRICS = ("ndcg", "opr", "avg_over_oracle", "max_over_oracle", "normalised_score")


def compare(rerun: pd.DataFrame, committed: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per model: per metric column 'inside'/'OUTSIDE' with the rerun mean and the committed interval."""
    columns = [c for c in committed.columns if "/" in c and c.split("/", 1)[1] in metrics and c in rerun.columns]
    if not columns:
        raise ValueError(f"no metric columns ({', '.join(metrics)}) common to both runs files")
    rows = []
    for model, group in committed.groupby("model", sort=False):
        again = rerun[rerun["model"] == model]
        row: dict[str, object] = {"model": model, "seeds (committed / rerun)": f"{len(group)} / {len(again)}"}
        for col in columns:
            if again.empty:
                row[col] = "-"
                continue
            interval, mean = t_interval(group[col].to_numpy(dtype=float)), float(again[col].mean())
            inside = abs(mean - interval.mean) <= interval.half_width
            row[col] = f"{'inside' if inside else 'OUTSIDE'}: {mean:.4g} vs {str(interval).lstrip('+')}"
        rows.append(row)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> tuple[int, int]:
    """(cells inside, cells compared)."""
    cells = [str(v) for col in table.columns[2:] for v in table[col] if v != "-"]
    return sum(c.startswith("inside") for c in cells), len(cells)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SystemExit(f"{path}: no such runs file (a benchmark writes runs.csv beside its tables)")
    frame = pd.read_csv(path)
    if "model" not in frame.columns:
        raise SystemExit(f"{path}: no 'model' column; is this a benchmark's runs.csv?")
    return frame


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rerun", type=Path, help="the rerun's per-seed runs.csv")
    parser.add_argument("committed", type=Path, help="the committed per-seed runs.csv")
    parser.add_argument("--out", type=Path, required=True, help="folder for NAME.md/.csv/.json")
    parser.add_argument("--name", default="reproduction")
    parser.add_argument("--label", default="rerun", help="what the rerun was (shown in the title)")
    args = parser.parse_args(argv)
    rerun, committed = _read(args.rerun), _read(args.committed)
    try:
        table = compare(rerun, committed)
    except ValueError as err:
        raise SystemExit(f"{args.rerun} vs {args.committed}: {err}") from None
    inside, total = summary(table)
    write_report(args.out, args.name, table, title=f"Reproduction ({args.label}) of {args.committed}",
                 notes=f"{inside} of {total} rerun means lie inside the committed 95% t-intervals. Each cell: the "
                 "rerun's mean over its seeds vs the committed mean ± half-width (benchmarks.stats). A rerun with "
                 "fresh float noise is not expected inside on every cell: its mean moves as much as the committed "
                 "one's did.")
    return table


if __name__ == "__main__":
    main()
