"""Bundles are reproducible, atomic, cached by preset and validated on load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adsim import AdSimDataError, AdSimError, Scenario, build_scenario, load_scenario
from adsim.data.bundle import MANIFEST


def _content_files(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
            and p.name != MANIFEST}


def test_same_seed_gives_byte_identical_tables_and_other_seeds_differ(tmp_path, tiny_logs):
    again = build_scenario(tmp_path / "again", "tiny", seed=7, progress=False)
    first, second = _content_files(tiny_logs), _content_files(again)
    assert first.keys() == second.keys() and any(k.startswith("tables/") for k in first)
    assert first == second
    other = build_scenario(tmp_path / "other", "tiny", seed=8, progress=False)
    third = _content_files(other)
    assert third["tables/requests.parquet"] != first["tables/requests.parquet"]
    assert third["tables/impressions.parquet"] != first["tables/impressions.parquet"]


def test_manifest_describes_the_bundle(tiny_logs):
    manifest = json.loads((tiny_logs / MANIFEST).read_text())
    assert manifest["preset"] == "tiny" and manifest["seed"] == 7
    assert manifest["config"]["n_users"] == 300
    scenario = Scenario(tiny_logs)
    for name, count in manifest["rows"].items():
        assert len(scenario.table(name)) == count
    assert set(manifest["files"]) >= {"tables/impressions.parquet", "arrays/ad_embeddings.npy"}


def test_interrupted_build_leaves_nothing_and_keeps_the_old_bundle(tmp_path, tiny_logs):
    out = tmp_path / "bundle"
    build_scenario(out, "tiny", seed=1, progress=False)
    before = _content_files(out)

    def crash(root, scenario, progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_scenario(out, "tiny", seed=2, progress=False, overwrite=True, steps=[("crash", crash)])
    assert _content_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"], "no temporary directories left behind"
    with pytest.raises(KeyboardInterrupt):
        build_scenario(tmp_path / "fresh", "tiny", seed=2, progress=False, steps=[("crash", crash)])
    assert not (tmp_path / "fresh").exists()


def test_existing_bundle_is_not_overwritten_by_default(tmp_path):
    out = build_scenario(tmp_path / "b", "tiny", seed=1, progress=False)
    with pytest.raises(AdSimError, match="already exists"):
        build_scenario(out, "tiny", seed=1, progress=False)


def test_build_steps_add_artifacts_to_the_manifest(tmp_path):
    def step(root, scenario, progress):
        (root / "extra").mkdir()
        np.save(root / "extra" / "n.npy", np.arange(len(scenario.table("ads"))))
        return {"n_ads": len(scenario.table("ads"))}

    out = build_scenario(tmp_path / "b", "tiny", seed=1, progress=False, steps=[("extra", step)])
    scenario = load_scenario(out)
    assert scenario.manifest["extra"] == {"n_ads": 400}
    assert "extra/n.npy" in scenario.manifest["files"]


def test_opening_an_unbuilt_preset_names_how_to_build_it_and_builds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("ADSIM_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(AdSimDataError, match=r"not built yet.*adsim build --preset tiny.*ensure_scenario"):
        load_scenario("tiny", seed=5)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_unknown_preset_or_path_is_a_clear_error(tmp_path):
    with pytest.raises(AdSimDataError, match="presets are"):
        load_scenario(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdSimDataError, match="manifest.json is missing"):
        load_scenario(tmp_path / "empty")


def test_ground_truth_matches_the_bundle(tiny_logs):
    scenario = Scenario(tiny_logs)
    np.testing.assert_array_equal(scenario.world.ads.embeddings, scenario.ad_embeddings)
    assert scenario.world.users.table.equals(scenario.table("users"))


def test_write_bundle_from_tables_validates_first_and_marks_no_truth(tmp_path, tiny_logs):
    from adsim.data.bundle import write_bundle

    source = Scenario(tiny_logs)
    tables = {name: source.table(name) for name in ("users", "ads", "organic_items", "organic_events", "requests",
                                                    "impressions")}
    arrays = {"ad_embeddings": source.ad_embeddings, "organic_embeddings": source.organic_embeddings}
    bad = dict(tables, ads=tables["ads"].assign(bid=-tables["ads"]["bid"]))
    with pytest.raises(AdSimDataError, match="negative values"):
        write_bundle(tmp_path / "bad", bad, arrays, source="test")
    assert not any(tmp_path.iterdir()), "nothing written for bad input"
    out = write_bundle(tmp_path / "ok", tables, arrays, source="test", extra={"note": "copied"}, progress=False)
    scenario = load_scenario(out)
    assert scenario.manifest["has_ground_truth"] is False and scenario.manifest["note"] == "copied"
    with pytest.raises(AdSimError, match="no ground truth"):
        _ = scenario.world
