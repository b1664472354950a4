"""Helpers shared by the unit tests (imported as a plain module: tests/unit is on sys.path)."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from opsconsole.cluster import Cluster
from opsconsole.model import Snapshot
from opsconsole.ops import registry
from opsconsole.ops.actions import Actions
from opsconsole.ops.engine import Engine
from opsconsole.ops.records import Audit, Journal
from opsconsole.ops.roles import ADMIN, MONITOR, Access, Identity, Role
from opsconsole.providers.sim import ManualClock, SimCluster


def comparable(snap: Snapshot) -> Snapshot:
    """The snapshot without its wall-clock read time."""
    return dataclasses.replace(snap, taken_at=0.0)


def sim_snapshot(sim: SimCluster) -> Snapshot:
    """A snapshot of the sim through Cluster, for synchronous tests."""
    return asyncio.run(Cluster(sim.providers()).snapshot())


def step(sim: SimCluster, clock: ManualClock, seconds: float) -> None:
    """Move simulated time forward and let the world catch up."""
    clock.advance(seconds)
    sim.advance()


async def until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)


@dataclasses.dataclass
class Rig:
    sim: SimCluster
    cluster: Cluster
    actions: Actions
    engine: Engine
    journal: Journal
    audit: Audit

    async def snapshot(self) -> Snapshot:
        return await self.cluster.snapshot()


def access(role: Role = ADMIN) -> Access:
    """The registry's permissions for `role`, as the local account."""
    return Access(role, Identity.local(), registry.PERMISSIONS)


def make_rig(tmp_path: Path, sim: SimCluster, read_only: bool = False,
             role: Role = ADMIN) -> Rig:
    providers = sim.providers()
    cluster = Cluster(providers)
    audit = Audit(tmp_path / "audit.jsonl")
    journal = Journal(tmp_path / "journal.jsonl")
    actions = Actions(providers, audit, access(MONITOR if read_only else role))
    return Rig(sim, cluster, actions, Engine(cluster, actions, journal), journal, audit)




async def nudge(sim: SimCluster, seconds: float = 0.2) -> None:
    """Keep signalling a cluster event for a while, as a UI refreshing the view would.

    The sim only moves when something reads it, so without this the engine's
    waits always sleep their full poll interval.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sim.changed.set()
        await asyncio.sleep(0.01)


async def finish(sim: SimCluster, task: asyncio.Task, timeout: float = 5.0) -> None:
    """Wait for an operation's task, nudging the sim so its waits wake promptly."""
    deadline = time.monotonic() + timeout
    while not task.done():
        if time.monotonic() > deadline:
            raise AssertionError("operation did not finish in time")
        sim.changed.set()
        await asyncio.sleep(0.01)
    await task
