"""Logged tables: schemas, validation and scenario bundles on disk."""

from adsim.data.bundle import Scenario, build_scenario, load_scenario
from adsim.data.schema import TABLES
from adsim.data.validate import validate_table, validate_tables

__all__ = ["Scenario", "TABLES", "build_scenario", "load_scenario", "validate_table", "validate_tables"]
