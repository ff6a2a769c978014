"""The ``adsim`` command line: build, describe and validate scenario bundles."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from adsim.errors import AdSimError, AdSimOptionError
from benchmarks import CATALOGUE


def _build(args: argparse.Namespace) -> None:
    from adsim.data.bundle import build_scenario
    from adsim.describe import render
    from reward_models.pipeline import default_steps

    started = time.perf_counter()
    out = args.out or f"scenarios/{args.preset}-seed{args.seed}"
    path = build_scenario(out, args.preset, args.seed, progress=not args.quiet, overwrite=args.overwrite,
                          steps=default_steps(args.allow_weak_models), **ray_build_options(args))
    print(f"built {path} in {time.perf_counter() - started:.1f}s")
    if not args.quiet:
        from adsim.data.bundle import Scenario

        print(render(Scenario(path, validate=False)))


def _describe(args: argparse.Namespace) -> None:
    from adsim.describe import render, summarize
    from reward_models.pipeline import ensure_scenario

    scenario = ensure_scenario(args.scenario, seed=args.seed)
    print(json.dumps(summarize(scenario), indent=2, default=str) if args.json else render(scenario))


def bundle_path(bundle: str | Path, seed: int = 0) -> Path:
    """A bundle directory as given, or, for a preset name that is no directory here, the preset's cached bundle
    (built on first use): presets are accepted wherever a bundle is."""
    from adsim.world.config import PRESETS

    if str(bundle) in PRESETS and not Path(bundle).exists():
        from reward_models.pipeline import ensure_scenario

        return ensure_scenario(str(bundle), seed=seed, validate=False).path
    return Path(bundle)


def _validate(args: argparse.Namespace) -> None:
    from adsim.data.bundle import Scenario
    from adsim.sid.pipeline import bundle_sids
    from reward_models.model_files import check_bundle_models

    scenario = Scenario(bundle_path(args.bundle, args.seed), validate=False)
    scenario.validate(deep=True)
    checked = "manifest, checksums, tables, arrays, caches"
    if "sid" in scenario.manifest or (scenario.path / "sid").exists():
        bundle_sids(scenario)
        checked += ", SIDs"
    if "reward_models" in scenario.manifest or (scenario.path / "reward_models").exists():
        check_bundle_models(scenario.path / "reward_models", scenario.manifest.get("reward_models"),
                            len(scenario.table("ads")), probe=True)
        checked += ", reward models"
    print(f"{args.bundle}: valid ({checked})")


def _evaluate_rewards(args: argparse.Namespace) -> None:
    from reward_models.evaluation import evaluate_rewards

    tables = evaluate_rewards(bundle_path(args.bundle, args.seed), out_dir=args.out)
    for name, table in tables.items():
        print(f"\n## {name}\n")
        print(table.to_markdown(index=False, floatfmt=".4g"))


def _bench(args: argparse.Namespace) -> None:
    import benchmarks

    if args.name is None:
        print(catalogue_text())
        return
    benchmarks.run(args.name, args.args)


def catalogue_text() -> str:
    """``adsim bench`` without a name: every benchmark, its typical duration and what it measures, one line each."""
    width = max(map(len, CATALOGUE))
    during = max(len(b.duration) for b in CATALOGUE.values())
    lines = ["benchmarks (adsim bench NAME [ARGS...]; NAME --help for its options; durations on 2 cores):"]
    lines += [f"  {name:<{width}}  {b.duration:<{during}}  {b.about}" for name, b in CATALOGUE.items()]
    return "\n".join(lines)


def _import(args: argparse.Namespace) -> None:
    from adsim.importers import import_logs
    from reward_models.pipeline import import_steps

    started = time.perf_counter()
    path = import_logs(args.format, args.src, args.out, mapping=args.mapping, max_rows=args.max_rows, seed=args.seed,
                       behavior=args.behavior, natural_ctr=args.natural_ctr,
                       steps=() if args.logs_only else import_steps(), progress=not args.quiet,
                       overwrite=args.overwrite)
    print(f"imported {path} in {time.perf_counter() - started:.1f}s")


def _schema(args: argparse.Namespace) -> None:
    from adsim.data.schema import markdown

    print(markdown())


def _add_import_parser(subparsers) -> argparse.ArgumentParser:
    """The ``import`` subcommand."""
    from adsim.importers import FORMATS
    from adsim.importers import __doc__ as importers_doc

    p = subparsers.add_parser("import", help="import real logs (obd, ipinyou, taobao, csv + mapping) as a bundle",
                              description=importers_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", nargs="?", type=Path, help="source file or directory (default for obd, ipinyou, taobao: "
                                                     "the shared sample)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, type=Path, help="bundle directory to create")
    p.add_argument("--mapping", type=Path, help="csv: the column mapping (YAML or JSON)")
    p.add_argument("--behavior", default="random", choices=("random", "bts"), help="obd: which behaviour log")
    p.add_argument("--natural-ctr", type=float, help="taobao: natural CTR to re-weight clicks to (default 0.05)")
    p.add_argument("--max-rows", type=int, help="read at most this many rows per file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logs-only", action="store_true", help="write the validated logs without SIDs or reward models")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_import)
    return p

def add_ray_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--ray``, ``--ray-address``, ``--shards`` and ``--workers`` for ``adsim build``."""
    group = parser.add_argument_group("scale-out (Ray)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--ray", action="store_true",
                       help="generate the logs' user shards as Ray tasks on a private Ray on this machine")
    where.add_argument("--ray-address", metavar="ADDR",
                       help="... on a running Ray cluster instead ('auto', 'HEAD:6379' or 'ray://HEAD:10001')")
    group.add_argument("--shards", type=int, metavar="N",
                       help="user shards (default: the preset's). Part of the data: another value is another "
                            "world, the same value gives identical bundles with or without Ray")
    group.add_argument("--workers", type=int, metavar="N",
                       help="shard-days generated at once with Ray (default: every CPU of the cluster)")
    return parser


def ray_build_options(args: argparse.Namespace) -> dict:
    """``build_scenario`` keyword arguments from the parsed ``--ray`` options."""
    from adsim.world.shards import LOCAL

    address = LOCAL if args.ray else args.ray_address
    if args.workers is not None and address is None:
        raise AdSimError("--workers needs --ray or --ray-address")
    return {"ray_address": address, "n_shards": args.shards, "num_workers": args.workers}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adsim", description=__doc__)
    from adsim import __version__

    parser.add_argument("--version", action="version", version=f"adsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from adsim.world.config import PRESETS

    p = sub.add_parser("build", help="generate a synthetic scenario bundle (logs, SIDs, reward models)")
    p.add_argument("--preset", default="small", metavar="PRESET",
                   help=f"{' | '.join(PRESETS)} (default: small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="bundle directory (default: scenarios/PRESET-seedSEED)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    p.add_argument("--allow-weak-models", action="store_true",
                   help="build even if a reward model fails its quality gate (constant, or AUC below the floor)")
    add_ray_build_arguments(p)
    p.set_defaults(func=_build)

    p = sub.add_parser("describe", help="summarise a bundle (a preset name is built and cached on first use)")
    p.add_argument("scenario", nargs="?", default="small", help="bundle directory or preset name (default: small)")
    p.add_argument("--seed", type=int, default=0, help="seed when SCENARIO is a preset name")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_describe)

    p = sub.add_parser("validate", help="check a bundle's checksums, schemas, values and references")
    p.add_argument("bundle", help="bundle directory or preset name (a preset is built and cached on first use)")
    p.add_argument("--seed", type=int, default=0, help="seed when BUNDLE is a preset name")
    p.set_defaults(func=_validate)

    p = sub.add_parser("evaluate-rewards", help="held-out AUC, calibration and error against the truth of the "
                       "bundle's reward models, on logged and never-shown ads")
    p.add_argument("bundle", help="bundle directory or preset name")
    p.add_argument("--seed", type=int, default=0, help="seed when BUNDLE is a preset name")
    p.add_argument("--out", type=Path, help="also write CSV/Markdown/PNG reports here")
    p.set_defaults(func=_evaluate_rewards)

    p = sub.add_parser("bench", help="run a benchmark (the main job: dpo-vs-hepo); extra arguments go to it; "
                       "no NAME lists them", description="Run `python -m benchmarks.NAME` with the arguments after "
                       "NAME, e.g. `adsim bench dpo-vs-hepo --preset quick`; without NAME, list the benchmarks.")
    p.add_argument("name", nargs="?", choices=sorted(CATALOGUE), metavar="NAME",
                   help=f"one of {', '.join(CATALOGUE)} (omit to list them with their typical durations)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark (see its --help)")
    p.set_defaults(func=_bench)

    _add_import_parser(sub)

    p = sub.add_parser("schema", help="print the logged tables' schemas as Markdown")
    p.set_defaults(func=_schema)
    return parser


CLI_OPTIONS = {"n_shards": "--shards", "num_workers": "--workers", "ray_address": "--ray-address"}
"""Library option names whose command-line spelling is not ``--`` + the name with dashes."""


TRACEBACK_ENV = "ADSIM_TRACEBACK"
"""Set to 1 to see the traceback of a refused input (``OSError``/``ValueError``) instead of the one-line error."""


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error a user can cause ends in one line on stderr naming the argument or file, and
    exit code 2: adsim's own errors, files that cannot be read or written, bad values. Output cut short by its
    reader (``adsim schema | head``) ends quietly."""
    args = make_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader stopped reading: point stdout at devnull so the interpreter's final flush cannot fail too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except AdSimOptionError as e:  # named as the user typed it
        option = CLI_OPTIONS.get(e.option, "--" + str(e.option).replace("_", "-"))
        return _fail(args, f"option {option}: {e.detail}")
    except AdSimError as e:
        return _fail(args, str(e))
    except OSError as e:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        where = e.filename if e.filename is not None else ""
        return _fail(args, f"{where}: {e.strerror or e}" if where else str(e))
    except ValueError as e:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        return _fail(args, f"{e} (set {TRACEBACK_ENV}=1 for the traceback)")
    return 0


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"adsim {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
