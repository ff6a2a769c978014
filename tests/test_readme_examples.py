"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> str:
    found = re.search(rf"## {re.escape(heading)}\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no python block under '## {heading}'"
    return found.group(1)


def test_first_episode_example_runs(capsys):
    namespace: dict = {}
    exec(compile(_block("A first episode"), "README.md", "exec"), namespace)
    ad_id, final_value, reward = capsys.readouterr().out.split()[:3]
    assert int(ad_id) >= 0 and float(final_value) > 0 and float(reward) > 0
    assert namespace["vec"].num_envs == 64
    namespace["vec"].close()
