"""Dataclass -> command line -> dataclass: every field type a config uses, presets, excluded fields, help text."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from adsim.arguments import add_dataclass_arguments, dataclass_from_arguments, field_docs


@dataclass(frozen=True)
class Inner:
    width: int = 8
    """Units per layer (100 % dense)."""
    sizes: tuple[int, ...] = (4, 4)
    from_data: int = 0
    """Set by the data, never on the command line."""


@dataclass
class Settings:
    name: str = "tiny"
    """Which world."""
    steps: int = 10
    lr: float = 1e-3
    out: Path = Path("runs/x")
    threads: int | None = None
    """torch threads (None: torch's default)."""
    verbose: bool = True
    mode: Literal["fast", "exact"] = "fast"
    seeds: tuple[int, ...] = (0, 1, 2)
    budgets: list[float] = field(default_factory=lambda: [1.0, 2.0])
    stages: tuple[Literal["build", "evaluate"], ...] = ("build", "evaluate")
    inner: Inner = field(default_factory=Inner)


def parse(argv: list[str], base: Settings | None = None, exclude=("inner.from_data",)) -> Settings:
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Settings, exclude=exclude)
    parser.add_argument("--quick", action="store_true")
    return dataclass_from_arguments(Settings, parser.parse_args(argv), base)


def test_no_options_give_the_defaults_and_unset_options_stay_out_of_the_namespace():
    assert parse([]) == Settings()
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Settings)
    assert vars(parser.parse_args(["--steps", "3"])) == {"steps": 3}


def test_every_field_type_parses_back():
    got = parse(["--name", "small", "--steps", "3", "--lr", "0.5", "--out", "/tmp/o", "--threads", "2",
                 "--no-verbose", "--mode", "exact", "--seeds", "5", "6", "--budgets", "0.5", "--stages", "build",
                 "--inner.width", "16", "--inner.sizes", "2", "3", "4", "--quick"])
    assert got == Settings(name="small", steps=3, lr=0.5, out=Path("/tmp/o"), threads=2, verbose=False, mode="exact",
                           seeds=(5, 6), budgets=[0.5], stages=("build",), inner=Inner(width=16, sizes=(2, 3, 4)))
    assert isinstance(got.seeds, tuple) and isinstance(got.inner.sizes, tuple) and isinstance(got.budgets, list)


def test_given_options_override_a_preset_and_the_rest_keep_it():
    preset = Settings(name="quick-world", steps=1, inner=Inner(width=2))
    got = parse(["--steps", "7"], base=preset)
    assert got == Settings(name="quick-world", steps=7, inner=Inner(width=2))
    assert parse([], base=preset) is preset


def test_literals_are_choices_and_excluded_fields_have_no_option(capsys):
    with pytest.raises(SystemExit):
        parse(["--mode", "sloppy"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--stages", "deploy"])
    with pytest.raises(SystemExit):
        parse(["--inner.from-data", "3"])
    with pytest.raises(SystemExit):
        parse(["--name", "x"], exclude=("name",))
    assert parse(["--steps", "2"], exclude=("name",)) == Settings(steps=2)


def test_help_shows_each_field_docstring_and_default():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Settings)
    text = " ".join(parser.format_help().split())
    assert "--threads THREADS torch threads (None: torch's default). (default: None)" in text
    assert "--inner.width INNER.WIDTH Units per layer (100 % dense). (default: 8)" in text
    assert "--seeds SEEDS [SEEDS ...] (default: 0 1 2)" in text
    assert "--verbose, --no-verbose" in text and "{fast,exact}" in text
    assert field_docs(Inner) == {"width": "Units per layer (100 % dense).",
                                 "from_data": "Set by the data, never on the command line."}


def test_a_field_without_a_command_line_form_must_be_excluded():
    @dataclass
    class WithDict:
        extra: dict = field(default_factory=dict)
        steps: int = 1

    with pytest.raises(TypeError, match="'extra'.*exclude it"):
        add_dataclass_arguments(argparse.ArgumentParser(), WithDict)
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, WithDict, exclude=("extra",))
    assert dataclass_from_arguments(WithDict, parser.parse_args(["--steps", "2"])) == WithDict(steps=2)
