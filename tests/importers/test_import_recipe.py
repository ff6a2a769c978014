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
