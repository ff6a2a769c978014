"""The build pipeline after the logs: which stages ``adsim build`` and preset caching run, in order."""

from __future__ import annotations

from adsim.data.bundle import BuildStep


def default_steps() -> list[tuple[str, BuildStep]]:
    """Stages that turn logs into a simulator-ready bundle. Empty until SIDs and reward models land."""
    return []
