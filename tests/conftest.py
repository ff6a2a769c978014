"""Shared fixtures. Every test session gets its own scenario cache, so nothing touches the user's cache.

The env fixtures pair a tiny bundle with SIDs and a scorer built from the world's truth, a stand-in for the reward
models, so env and agent tests exercise the simulator without training LightGBM.

Real data: tests that read the real data sets (``adsim.paths.shared_data_dir()``: ``$ADSIM_SHARED_DATA``, default
``../shared/data`` beside the project) are marked ``real_data`` and skip, with the reason, where the folder is
absent; ``require_real_data`` is the one rule, and ``ADSIM_REQUIRE_REAL_DATA=1`` (set by ``.ci/run``) turns such a
skip into a failure. The same tests also run on ``generated_data``, small files in each real format
(``tests/fixtures/real_formats.py``), through the ``data_root`` fixture, so a fresh clone covers every reader.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fixtures.real_formats import DATA_SETS, write_shared_data

from adsim.paths import SHARED_DATA_ENV, shared_data_dir

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="adsim-tests-"))
os.environ.setdefault("ADSIM_CACHE_DIR", str(_SESSION_TMP / "cache"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_SESSION_TMP / "torchinductor"))

REQUIRE_REAL_DATA_ENV = "ADSIM_REQUIRE_REAL_DATA"


# ------------------------------------------------------------------------------------------ real data
def require_real_data(*names: str) -> Path:
    """The real data folder, when it holds ``names`` (default: every data set adsim reads); else skip, or fail
    under ``ADSIM_REQUIRE_REAL_DATA=1`` (CI, where a skipped real-data test would silently lose coverage)."""
    unknown = sorted(set(names) - set(DATA_SETS))
    if unknown:
        raise ValueError(f"real_data names unknown data set(s) {unknown}; known: {list(DATA_SETS)}")
    root = shared_data_dir()
    missing = [name for name in names or DATA_SETS if not (root / name).is_dir()]
    if missing:
        where = f"no real data folder {root}" if not root.is_dir() else f"{', '.join(missing)} not in {root}"
        reason = f"{where} (set {SHARED_DATA_ENV} to the folder of the real data sets)"
        if os.environ.get(REQUIRE_REAL_DATA_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_REAL_DATA_ENV}=1 forbids skipping it", pytrace=False)
        pytest.skip(reason)
    return root


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    marker = item.get_closest_marker("real_data")
    if marker is not None:
        require_real_data(*marker.args)


@pytest.fixture(scope="session")
def generated_data(tmp_path_factory) -> Path:
    """Generated stand-ins for every real data set, laid out like ``../shared/data`` (written once per session)."""
    return write_shared_data(tmp_path_factory.mktemp("generated_data"))


@pytest.fixture(scope="module", params=["generated", pytest.param("real", marks=pytest.mark.real_data)])
def data_root(request, generated_data) -> Path:
    """Where the data sets are, once per source: the generated stand-ins (always), then the real folder (skipped,
    or failed under ``ADSIM_REQUIRE_REAL_DATA=1``, when absent)."""
    return require_real_data() if request.param == "real" else generated_data


@pytest.fixture
def data_env(data_root) -> dict[str, str]:
    """The environment for a subprocess (a benchmark) that should read its data sets from ``data_root``."""
    return {**os.environ, SHARED_DATA_ENV: str(data_root)}


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory) -> Path:
    """A tiny synthetic bundle with logs only (seed 7), built once per session."""
    from adsim import build_scenario

    return build_scenario(tmp_path_factory.mktemp("tiny") / "bundle", "tiny", seed=7, progress=False)


@pytest.fixture(scope="session")
def small_logs(tmp_path_factory) -> Path:
    """The default ``small`` world's logs (seed 0), built once per session (about 15 s)."""
    from adsim import build_scenario

    return build_scenario(tmp_path_factory.mktemp("small") / "bundle", "small", seed=0, progress=False)


class TruthLikeScorer:
    """pCTR/pCVR from the world's truth at the top slot; final_value = eCPM. Enough to exercise the env."""

    def __init__(self, scenario):
        ads = scenario.table("ads")
        self.world = scenario.world
        self.goal = ads["goal"].cat.codes.to_numpy().astype(np.int64)
        self.bid = ads["bid"].to_numpy()

    def score(self, requests, ad_ids):
        from adsim.world.cascade import estimated_ecpm

        col = {c: np.asarray(requests[c])[:, None] for c in ("user_id", "day", "hour", "device", "placement")}
        pctr = self.world.true_pctr(col["user_id"], ad_ids, col["day"], col["hour"], col["device"],
                                    col["placement"], 0)
        pcvr = self.world.true_pcvr(col["user_id"], ad_ids, col["day"], col["device"])
        ecpm = estimated_ecpm(self.goal[ad_ids], self.bid[ad_ids], pctr, pcvr)
        from reward_models.value import Scores

        return Scores(pctr, pcvr, ecpm, ecpm)


@dataclass
class EnvFixture:
    path: str
    context: object

    def kwargs(self, **overrides):
        return {"scenario": self.path, "context": self.context, **overrides}


@pytest.fixture(scope="session")
def tiny_sid_bundle(tmp_path_factory) -> Path:
    from adsim import build_scenario
    from adsim.sid.pipeline import sid_step

    return build_scenario(tmp_path_factory.mktemp("tiny_sid") / "bundle", "tiny", seed=11, progress=False,
                          steps=[("sid", sid_step)])


@pytest.fixture(scope="session")
def env_fixture(tiny_sid_bundle) -> EnvFixture:
    from adsim import Scenario
    from envs.context import open_context

    scenario = Scenario(tiny_sid_bundle)
    scorer = TruthLikeScorer(scenario)
    return EnvFixture(str(tiny_sid_bundle), open_context(str(tiny_sid_bundle), scorer=scorer, truth=scorer))


@pytest.fixture
def checked_env():
    """``checked_env(bundle)``: AdSim-v0 on ``bundle``, after Gymnasium's check_env passed without a warning."""
    import warnings

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import envs  # noqa: F401  (registers AdSim-v0)

    def make(bundle):
        env = gym.make("AdSim-v0", scenario=str(bundle))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=True)
        assert [str(w.message) for w in caught] == []
        return env

    return make


@contextmanager
def private_ray(tmp: Path) -> Iterator[None]:
    """One local 2-CPU Ray with every file under ``tmp``; no Ray process may outlive it (10 s to exit)."""
    from agents.rllib.session import leftover_ray_processes, ray_session

    with ray_session(num_cpus=2, temp_dir=tmp / "r"):
        yield
    deadline = time.monotonic() + 10
    while leftover_ray_processes(tmp / "r") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftover_ray_processes(tmp / "r") == []
