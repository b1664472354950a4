"""Fixtures for the unit tier: a simulated cluster on a manual clock, and an
engine wired to it with journal/audit files under tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
from unitkit import Rig, make_rig

from opsconsole.providers.sim import ManualClock, SimCluster


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> SimCluster:
    return SimCluster(seed=7, clock=clock)


@pytest.fixture
def rig_factory(tmp_path: Path):
    def make(sim: SimCluster | None = None, read_only: bool = False, **sim_kw) -> Rig:
        if sim is None:
            sim_kw.setdefault("speed", 100)
            sim = SimCluster(seed=sim_kw.pop("seed", 3), **sim_kw)
        return make_rig(tmp_path, sim, read_only)
    return make
