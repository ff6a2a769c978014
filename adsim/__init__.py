"""adsim: an offline RL simulator and Gymnasium environment for generative advertising recommendation."""

__version__ = "0.1.0"

from adsim.data import Scenario, build_scenario, load_scenario  # noqa: E402
from adsim.errors import AdSimDataError, AdSimError  # noqa: E402
from adsim.registration import register_envs  # noqa: E402
from adsim.world import PRESETS, World, WorldConfig  # noqa: E402

__all__ = ["AdSimDataError", "AdSimError", "PRESETS", "Scenario", "World", "WorldConfig", "build_scenario",
           "load_scenario", "__version__"]


register_envs()
