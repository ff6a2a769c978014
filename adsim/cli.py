"""The ``adsim`` command line: build, describe and validate scenario bundles."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from adsim.errors import AdSimError


def _build(args: argparse.Namespace) -> None:
    from adsim.data.bundle import build_scenario
    from adsim.describe import render
    from adsim.pipeline import default_steps
    from adsim.world.shards import ray_build_options

    started = time.perf_counter()
    out = args.out or f"scenarios/{args.preset}-seed{args.seed}"
    path = build_scenario(out, args.preset, args.seed, progress=not args.quiet, overwrite=args.overwrite,
                          steps=default_steps(), **ray_build_options(args))
    print(f"built {path} in {time.perf_counter() - started:.1f}s")
    if not args.quiet:
        from adsim.data.bundle import Scenario

        print(render(Scenario(path, validate=False)))


def _describe(args: argparse.Namespace) -> None:
    from adsim.data.bundle import load_scenario
    from adsim.describe import render, summarize

    scenario = load_scenario(args.scenario, seed=args.seed)
    print(json.dumps(summarize(scenario), indent=2, default=str) if args.json else render(scenario))


def _validate(args: argparse.Namespace) -> None:
    from adsim.data.bundle import Scenario

    Scenario(args.bundle, validate=True)
    print(f"{args.bundle}: valid")


def _evaluate_rewards(args: argparse.Namespace) -> None:
    from reward_models.evaluation import evaluate_rewards

    tables = evaluate_rewards(args.bundle, out_dir=args.out)
    for name, table in tables.items():
        print(f"\n## {name}\n")
        print(table.to_markdown(index=False, floatfmt=".4g"))


BENCHMARKS = ("dpo-vs-hepo", "build-world", "tokenizers", "reward-models", "reward-scoring", "env-throughput",
              "sequence-models", "decoding", "baselines", "rllib-tune", "ope-obd", "scale")


def _bench(args: argparse.Namespace) -> None:
    import importlib

    module = importlib.import_module(f"benchmarks.{args.name.replace('-', '_')}")
    module.main(args.args)


def _schema(args: argparse.Namespace) -> None:
    from adsim.data.schema import markdown

    print(markdown())


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adsim", description=__doc__)
    from adsim import __version__

    parser.add_argument("--version", action="version", version=f"adsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="generate a synthetic scenario bundle (logs, SIDs, reward models)")
    p.add_argument("--preset", default="small", help="tiny | small | medium | large (default: small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="bundle directory (default: scenarios/PRESET-seedSEED)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    from adsim.world.shards import add_ray_build_arguments

    add_ray_build_arguments(p)
    p.set_defaults(func=_build)

    p = sub.add_parser("describe", help="summarise a bundle (a preset name is built and cached on first use)")
    p.add_argument("scenario", nargs="?", default="small", help="bundle directory or preset name (default: small)")
    p.add_argument("--seed", type=int, default=0, help="seed when SCENARIO is a preset name")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_describe)

    p = sub.add_parser("validate", help="check a bundle's checksums, schemas, values and references")
    p.add_argument("bundle", type=Path)
    p.set_defaults(func=_validate)

    p = sub.add_parser("evaluate-rewards", help="held-out AUC, calibration and error against the truth of the "
                       "bundle's reward models, on logged and never-shown ads")
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, help="also write CSV/Markdown/PNG reports here")
    p.set_defaults(func=_evaluate_rewards)

    p = sub.add_parser("bench", help="run a benchmark (the main job: dpo-vs-hepo); extra arguments go to it",
                       description="Run `python -m benchmarks.NAME` with the arguments after NAME, e.g. "
                       "`adsim bench dpo-vs-hepo --preset quick`.")
    p.add_argument("name", choices=BENCHMARKS)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark (see its --help)")
    p.set_defaults(func=_bench)

    from adsim.importers import add_import_parser

    add_import_parser(sub)

    p = sub.add_parser("schema", help="print the logged tables' schemas as Markdown")
    p.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        args.func(args)
    except AdSimError as e:
        print(f"adsim {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
