"""Copy committed results into the README: ``python -m benchmarks.readme`` (``--check`` only compares).

A README block ``<!-- results: results/NAME/FILE.md -->`` ... ``<!-- /results -->`` holds that file's body (its
provenance line and table, without the title) verbatim, so a README number is always the committed file's number.
``tests/benchmarks/test_readme_results.py`` fails when a block and its file differ, or when a results file was made by
an older generator version than the code's.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)
GENERATOR = re.compile(r"generator v(\d+)")
SIMULATOR = re.compile(r"simulator v(\d+)")
REWARD_FREE = ("results/scale_medium/",)
"""Results that never score a reward (build memory and time), so a new simulator version leaves them current."""


def body(path: Path) -> str:
    """A results Markdown file without its ``# title`` line."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip("\n") + "\n"


def blocks(readme: str) -> list[tuple[str, str]]:
    """(results path, README body) of every results block."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(readme)]


def generator_version(path: Path) -> int | None:
    found = GENERATOR.search(path.read_text())
    return int(found.group(1)) if found else None


def simulator_version(path: Path) -> int:
    """The simulator version a results file records (1: made before results recorded it)."""
    found = SIMULATOR.search(path.read_text())
    return int(found.group(1)) if found else 1


def sync(readme: Path = ROOT / "README.md", root: Path = ROOT) -> str:
    """The README text with every block replaced by its file's body."""
    text = readme.read_text()

    def replace(m: re.Match) -> str:
        path = root / m["path"]
        if not path.is_file():
            raise FileNotFoundError(f"{readme.name} quotes {m['path']}, which does not exist: run the benchmark")
        return m.group(1) + body(path) + m.group(4)

    return BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs from the results files")
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    new = sync(readme)
    if args.check:
        if new != readme.read_text():
            print("README.md differs from the results files: run python -m benchmarks.readme", file=sys.stderr)
            return 1
        return 0
    tmp = readme.with_name(".README.md.tmp")
    tmp.write_text(new)
    tmp.replace(readme)
    print(f"README.md: {len(blocks(new))} results blocks synced")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
