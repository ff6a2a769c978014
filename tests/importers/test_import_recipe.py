"""The README's bring-your-own-logs recipe, as written: a folder of CSVs and the example mapping from docs/,
``adsim import --format csv my_logs/ --mapping docs/csv_mapping_example.yaml --out scenarios/mine``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixtures.real_formats import OBD
from test_import_csv import write_own_logs

from adsim import Scenario
from adsim.errors import AdSimDataError
from adsim.importers.mapping import read_raw
from adsim.paths import PROJECT_ROOT

MAPPING = "docs/csv_mapping_example.yaml"


@pytest.fixture(scope="module")
def my_logs(generated_data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("recipe") / "my_logs"
    directory.mkdir()
    write_own_logs(directory, generated_data / OBD, rows=600)
    return directory


def test_readme_recipe_imports_a_folder_with_the_mapping_from_docs(my_logs, tmp_path):
    out = tmp_path / "scenarios" / "mine"
    done = subprocess.run([sys.executable, "-m", "adsim.cli", "import", "--format", "csv", f"{my_logs}/", "--mapping",
                           MAPPING, "--out", str(out), "--quiet"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    scenario = Scenario(out)
    assert len(scenario.table("impressions")) == 600 and len(scenario.table("organic_events")) > 0
    assert "sid" in scenario.manifest and "reward_models" in scenario.manifest


def test_a_folder_with_several_candidate_files_names_them(my_logs, tmp_path):
    (tmp_path / "a.csv").write_text((my_logs / "impressions.csv").read_text())
    (tmp_path / "b.csv").write_text((my_logs / "impressions.csv").read_text())
    with pytest.raises(AdSimDataError, match=r"one impressions file.*'a.csv', 'b.csv'.*'file:'"):
        read_raw(tmp_path, PROJECT_ROOT / MAPPING)


def test_an_import_without_organic_views_works_and_says_what_stands_in(my_logs, tmp_path):
    import gymnasium as gym
    import numpy as np
    import yaml

    import adsim  # noqa: F401  (registers AdSim-v0)
    from reward_models.pipeline import import_scenario

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "impressions.csv").write_text((my_logs / "impressions.csv").read_text())
    mapping = yaml.safe_load((PROJECT_ROOT / MAPPING).read_text())
    mapping.pop("organic")
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    path = import_scenario("csv", logs, tmp_path / "bundle", mapping=tmp_path / "mapping.yaml", progress=False)
    scenario = Scenario(path)
    assert len(scenario.table("organic_events")) == 0 and "reward_models" in scenario.manifest
    assert "NaN" in scenario.manifest["organic_fallback"] and "organic history is empty" in \
        scenario.manifest["organic_fallback"]
    for backend in ("reference", "compiled"):
        env = gym.make("AdSim-v0", scenario=str(path), backend=backend)
        obs, _ = env.reset(seed=0)
        assert not (obs["history_type"] == 2).any()  # no organic tokens
        done = False
        while not done:
            obs, reward, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        assert np.isfinite(reward) and info["final_value"] >= 0
