"""Rehearsal on a simulated twin: built from a snapshot, decided by the real planner and
engine, never touching the cluster it copies."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from unitkit import comparable, sim_snapshot

from opsconsole.config import WindowOptions
from opsconsole.model import RUNNING
from opsconsole.ops import catalog, resilience
from opsconsole.ops.guards import FAIL
from opsconsole.providers.sim import SimCluster
from opsconsole.rehearsal import MARK, rehearse, rehearse_loss

UPDATE = WindowOptions(update_command="apt-get -y upgrade docker.io", reboot=True)


def running(snap):
    return sorted((t.service_name, t.node_id) for t in snap.tasks
                  if t.wanted and t.state == RUNNING)


@pytest.mark.parametrize("seed", [1, 3])
def test_the_twin_has_the_same_topology_and_the_planner_decides_the_same(seed):
    live = sim_snapshot(SimCluster(seed=seed))
    twin = sim_snapshot(SimCluster(world=live))
    for kind in ("hosts", "vms", "nodes", "services", "backends"):
        assert getattr(twin, kind) == getattr(live, kind), kind
    assert running(twin) == running(live)
    assert {(s.backend, s.name, s.status, s.admin) for s in twin.servers} == {
        (s.backend, s.name, s.status, s.admin) for s in live.servers}
    for kind, target in (("drain", "vm-02"), ("maintenance", "hv-01"),
                         ("maintenance", "hv-02"), ("rolling-update", "cluster")):
        mine, its = (catalog.build(kind, s, target, options=UPDATE) for s in (live, twin))
        assert [st.title for st in its.steps] == [st.title for st in mine.steps], (kind, target)
        assert [(c.name, c.level) for c in its.checks] == [(c.name, c.level)
                                                          for c in mine.checks]


def test_a_maintenance_window_rehearsed_to_its_end_touches_nothing_real(tmp_path):
    real = SimCluster(seed=1)
    live = sim_snapshot(real)
    before = comparable(sim_snapshot(real))
    played = asyncio.run(rehearse(live, "maintenance", "hv-01", options=UPDATE))
    assert played.passed, (played.op.error, played.op.log[-10:])
    assert played.report.startswith(f"# {MARK} on a simulated twin")
    assert "| restart hv-01 | done |" in played.report
    after = comparable(sim_snapshot(real))
    assert [(n.hostname, n.availability, n.role) for n in after.nodes] == [
        (n.hostname, n.availability, n.role) for n in before.nodes]
    assert real.lock is None and all(v.state == "running" for v in after.vms)
    assert after.hosts == before.hosts


def test_a_rehearsal_shows_a_step_that_would_fail():
    """An update command that does not touch docker leaves the twin's engines as they are:
    a rolling update that expects the engine to change fails on its first VM, and says so,
    before it runs for real."""
    live = sim_snapshot(SimCluster(seed=1))
    played = asyncio.run(rehearse(live, "rolling-update", "cluster", options=dataclasses.replace(
        UPDATE, update_command="apt-get -y upgrade", expect_engine_change=True)))
    assert not played.passed and played.op is not None
    assert "engine" in played.op.error and "result: **failed**" in played.report


@pytest.mark.parametrize("seed", [1, 3])
def test_a_played_failure_agrees_with_the_n_minus_1_table(seed):
    live = sim_snapshot(SimCluster(seed=seed))
    for outcome in resilience.assess(live).outcomes:
        played = asyncio.run(rehearse_loss(live, outcome.domain.name))
        failing = {(f.what, f.subject) for f in outcome.findings if f.level == FAIL}
        quorum_lost = any(what == resilience.QUORUM for what, _ in failing)
        assert (played.quorum_after < 0) == quorum_lost, outcome.domain
        stopped = {s for what, s in failing if what in (resilience.OUTAGE, resilience.STRANDED)}
        assert set(played.down) == stopped, (outcome.domain, played.down, outcome.findings)


def test_a_played_failure_says_where_swarm_restarted_the_tasks():
    live = sim_snapshot(SimCluster(seed=1))
    played = asyncio.run(rehearse_loss(live, "vm-06"))
    reports = next(s for s in played.services if s.name == "reports")
    # reports needs an ssd node: vm-03 is the other one
    assert (reports.running_before, reports.running_after, reports.moved_to) == (1, 1, ("vm-03",))
    assert played.quorum_after == 0 and played.down == []
    with pytest.raises(ValueError, match="no host or VM named 'hv-09'"):
        asyncio.run(rehearse_loss(live, "hv-09"))
