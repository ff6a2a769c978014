"""Every README table is its committed results file, made by the current generator version."""

from __future__ import annotations

from adsim.data.bundle import GENERATOR_VERSION
from adsim.simulator.simulator import SIMULATOR_VERSION
from benchmarks.readme import REWARD_FREE, ROOT, blocks, body, generator_version, simulator_version, sync


def test_readme_tables_are_their_results_files():
    readme = (ROOT / "README.md").read_text()
    quoted = blocks(readme)
    assert quoted, "the README quotes no results file"
    for path, text in quoted:
        assert (ROOT / path).is_file(), f"README quotes {path}, which is not committed"
        assert text == body(ROOT / path), f"README block of {path} is stale: run python -m benchmarks.readme"
    assert sync() == readme


def test_quoted_results_come_from_the_current_generator():
    for path, _ in blocks((ROOT / "README.md").read_text()):
        made = generator_version(ROOT / path)
        assert made == GENERATOR_VERSION, f"{path} was made by generator v{made}; the code is v{GENERATOR_VERSION}"


def test_quoted_rewards_come_from_the_current_simulator():
    for path, _ in blocks((ROOT / "README.md").read_text()):
        if path.startswith(REWARD_FREE):
            continue
        made = simulator_version(ROOT / path)
        assert made == SIMULATOR_VERSION, (f"{path} was made by simulator v{made}; the code is v{SIMULATOR_VERSION}: "
                                           "rerun its benchmark")


def test_a_stale_block_is_detected(tmp_path):
    (tmp_path / "r.md").write_text("# Title\n\nCommand: `x` generator v1\n\n| a |\n|---|\n| 1 |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results: r.md -->\n| a |\n|---|\n| 2 |\n<!-- /results -->\nend\n")
    fixed = sync(readme, tmp_path)
    assert "| 1 |" in fixed and "| 2 |" not in fixed and fixed.startswith("intro\n") and fixed.endswith("end\n")
