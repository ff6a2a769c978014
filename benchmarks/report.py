"""Benchmark output: every table as CSV and Markdown, headed by the exact command that made it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pandas as pd


def command_line() -> str:
    module = Path(sys.argv[0]).stem if sys.argv and sys.argv[0].endswith(".py") else "?"
    return "python -m benchmarks." + module + " " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def write_report(out: Path, name: str, rows: list[dict] | pd.DataFrame, title: str, notes: str = "") -> Path:
    """Write ``name.csv`` and ``name.md`` into ``out``; print the Markdown table; return the .md path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    df.to_csv(out / f"{name}.csv", index=False)
    table = df.to_markdown(index=False, floatfmt=".4g")
    text = f"# {title}\n\nCommand: `{command_line().strip()}`\n\n{table}\n"
    if notes:
        text += f"\n{notes}\n"
    (out / f"{name}.md").write_text(text)
    print(text)
    return out / f"{name}.md"
