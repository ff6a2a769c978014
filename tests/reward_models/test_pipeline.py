"""The build pipeline: presets built once on first use, and the bytes of a default build pinned."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adsim.data.bundle import GENERATOR_VERSION, MANIFEST
from adsim.data.manifest import SIGNATURE
from adsim.errors import AdSimWarning
from reward_models.pipeline import default_steps, ensure_scenario

TINY_FILES = Path(__file__).with_name("tiny_seed0_files.json")
"""sha256 of every file of the default ``tiny`` seed-0 build. Regenerate after a change that is meant to alter
bundles (and bump GENERATOR_VERSION when the logs change): ``python tests/reward_models/test_pipeline.py``."""


def test_preset_is_built_once_then_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(tmp_path / "cache"))
    first = ensure_scenario("tiny", seed=5, progress=False)
    stamp = os.stat(first.path / MANIFEST).st_mtime_ns
    second = ensure_scenario("tiny", seed=5, progress=False)
    assert second.path == first.path and str(first.path).startswith(str(tmp_path / "cache"))
    assert os.stat(second.path / MANIFEST).st_mtime_ns == stamp
    assert {"sid", "reward_models"} <= set(first.manifest)
    # a cached preset without a manifest signature was built by a development version: rebuilt, not trusted
    manifest = json.loads((first.path / MANIFEST).read_text())
    manifest.pop(SIGNATURE)
    manifest.pop("manifest_version")
    (first.path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(AdSimWarning, match="older than manifest signatures"):
        third = ensure_scenario("tiny", seed=5, progress=False)
    assert SIGNATURE in third.manifest and third.files == first.files


CPU_DEPENDENT = "sid/tokenizer/"
"""The SID tokenizer's own torch-trained weights (and loss history) differ in the last float bits between CPU
instruction sets (an AVX-512 machine's matmul kernels against an AVX2 one's); the codes it assigns (sid/arrays.npz)
and everything built from them may not."""


def test_default_tiny_build_is_byte_identical_to_the_recorded_one():
    recorded = json.loads(TINY_FILES.read_text())
    assert recorded["generator_version"] == GENERATOR_VERSION, (
        "the recorded tiny build predates this generator version: regenerate it (see TINY_FILES)")
    scenario = ensure_scenario("tiny", seed=0, progress=False)
    assert [name for name, _ in default_steps()] == recorded["steps"]
    files, pinned = ({k: v for k, v in f.items() if not k.startswith(CPU_DEPENDENT)}
                     for f in (scenario.manifest["files"], recorded["files"]))
    assert files == pinned
    assert set(scenario.manifest["files"]) == set(recorded["files"]), "the same files, tokenizer ones included"


if __name__ == "__main__":
    built = ensure_scenario("tiny", seed=0, progress=False)
    TINY_FILES.write_text(json.dumps({"generator_version": GENERATOR_VERSION,
                                      "steps": [name for name, _ in default_steps()],
                                      "files": built.manifest["files"]}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TINY_FILES}")
