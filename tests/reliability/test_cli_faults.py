"""The command line on bad input: exit status 2 and one ``adsim COMMAND: error: ...`` line naming the file or the
option as typed, never a traceback; nothing on disk changed. (``main`` runs in this process: the same code path as
the ``adsim`` script, without a subprocess per case.)"""

from __future__ import annotations

import shutil

import pytest
from reliability_support import (  # noqa: F401  (fixtures)
    _bundle_copy,
    _full_bundle,
    _logs_copy,
    resign,
    tree_digest,
)

from adsim.cli import main


def _run(capsys, tree, *argv) -> str:
    before = tree_digest(tree)
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"adsim {argv[0]}: error: ") and "Traceback" not in err, err
    assert tree_digest(tree) == before, "files changed on disk"
    return err


def _truncate_model(bundle):
    path = bundle / "reward_models" / "pcvr" / "model.txt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    resign(bundle)


def _list_manifest(bundle):
    (bundle / "manifest.json").write_text("[]")


def _pcvr_over_pctr(bundle):
    shutil.rmtree(bundle / "reward_models" / "pctr")
    shutil.copytree(bundle / "reward_models" / "pcvr", bundle / "reward_models" / "pctr")
    resign(bundle)


def _truncate_sid(bundle):
    path = bundle / "sid" / "ad_index.npz"
    path.write_bytes(path.read_bytes()[:100])
    resign(bundle)


VALIDATE_CASES = {
    "truncated model.txt": (_truncate_model, ["pcvr/model.txt", "truncated"]),
    "manifest a JSON list": (_list_manifest, ["manifest.json", "JSON object"]),
    "pcvr copied over pctr": (_pcvr_over_pctr, ["pctr/meta.json", "wrong model"]),
    "truncated SID index": (_truncate_sid, ["ad_index.npz", "not a readable .npz"]),
}


@pytest.mark.parametrize("case", list(VALIDATE_CASES))
def test_validate_names_the_broken_file(capsys, bundle_copy, case):
    corrupt, needles = VALIDATE_CASES[case]
    corrupt(bundle_copy)
    err = _run(capsys, bundle_copy, "validate", str(bundle_copy))
    for needle in needles:
        assert needle in err, err


def test_validate_accepts_the_intact_bundle(capsys, full_bundle):
    assert main(["validate", str(full_bundle)]) == 0
    assert "valid (manifest, checksums, tables, arrays, caches, SIDs, reward models)" in capsys.readouterr().out


OPTION_CASES = {  # argv after the command, the option as the user typed it
    "build --preset nope": (["build", "--preset", "nope", "--quiet"], "option --preset: unknown preset 'nope'"),
    "build --seed -3": (["build", "--preset", "tiny", "--seed", "-3", "--quiet"], "option --seed:"),
    "build --shards 0": (["build", "--preset", "tiny", "--shards", "0", "--quiet"], "option --shards:"),
    "build --workers without --ray": (["build", "--preset", "tiny", "--workers", "2", "--quiet"],
                                      "--workers needs --ray"),
    "import --natural-ctr 2": (["import", "--format", "taobao", "--natural-ctr", "2"], "option --natural-ctr:"),
    "import --max-rows -5": (["import", "--format", "obd", "--max-rows", "-5"], "option --max-rows:"),
    "import --seed -1": (["import", "--format", "obd", "--seed", "-1"], "option --seed:"),
    "import csv without --mapping": (["import", "--format", "csv", "x.csv"], "option --mapping:"),
    "import --behavior for ipinyou": (["import", "--format", "ipinyou", "--behavior", "bts"], "option --behavior:"),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_out_of_range_option_is_named_as_typed(capsys, tmp_path, case):
    argv, needle = OPTION_CASES[case]
    out = ["--out", str(tmp_path / "out")]
    err = _run(capsys, tmp_path, argv[0], *argv[1:], *out)
    assert needle in err, err
    assert not (tmp_path / "out").exists()
