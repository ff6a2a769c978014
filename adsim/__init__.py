"""adsim: an offline RL simulator and Gymnasium environment for generative advertising recommendation."""

__version__ = "0.1.0"

from adsim.data import Scenario, build_scenario, load_scenario  # noqa: E402
from adsim.errors import AdSimDataError, AdSimError  # noqa: E402
from adsim.world import PRESETS, World, WorldConfig  # noqa: E402

__all__ = ["AdSimDataError", "AdSimError", "PRESETS", "Scenario", "World", "WorldConfig", "build_scenario",
           "load_scenario", "__version__"]


def _register_envs() -> None:
    """``import adsim`` makes ``gym.make("AdSim-v0")`` (and RLlib's ``"adsim:AdSim-v0"``) work."""
    try:
        from envs.registration import register_envs
    except ImportError:  # adsim's core used without the envs package
        return
    register_envs()


_register_envs()
