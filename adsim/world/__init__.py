"""The seeded synthetic ad world with known ground truth, and its cascade logging policy."""

from adsim.world.config import GOALS, PRESETS, WorldConfig, preset
from adsim.world.world import World

__all__ = ["GOALS", "PRESETS", "World", "WorldConfig", "preset"]
