"""The Swarm provider, the engine and the console against the real lab: no mocks.

Every test opens the console's own session on the lab's inventory
(`open_session(load(lab.inventory_path))`, with every real provider: Swarm,
HAProxy, WinRM, SSH) and changes the swarm only through the engine, as the
console does; what it then asserts is read straight from a lab manager with
the docker SDK or CLI. Waits poll a real condition with a deadline: generous,
because CI is a loaded 2-core machine, and finite. After each test every node
is active and ready again, every proxy server ready and UP, and the services
have converged, whatever the test did or where it failed (the `lab` fixture).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from opsconsole.model import Problem
from opsconsole.ops.catalog import build, rollback
from opsconsole.ops.engine import DONE, FAILED, StepFailed
from opsconsole.ops.plans import Timing
from opsconsole.session import Session, open_session
from opsconsole.ui.app import OpsConsole
from opsconsole.ui.screens import ConfirmScreen
from opsconsole.ui.tree import ClusterTree

from .labkit import WAIT, running_on, swarm_picture, until

DRAIN = Timing(drain_timeout=90.0)
CLI = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


# ---------------------------------------------------------------- helpers
def availability(lab, hostname: str) -> str:
    return lab.node_states()[hostname][1]


def update_node(lab, hostname: str, change: Callable[[dict], None]) -> None:
    """A change behind the console's back: the SDK on a manager, whole spec at its version."""
    with lab.manager_client() as c:
        node = c.nodes.get(hostname)
        spec = dict(node.attrs["Spec"])
        change(spec)
        node.update(spec)


def web_on(lab, hostname: str) -> None:
    """Make sure a `web` task runs on `hostname` (web has one slot fewer than there are nodes).

    If it does not, the free slot is there: drain a node whose web task may move
    nowhere else but there, then make it active again.
    """
    if hostname in running_on(lab, "web"):
        return
    donor = next(vm.name for vm in lab.managers if vm.name in running_on(lab, "web"))
    update_node(lab, donor, lambda spec: spec.update(Availability="drain"))
    try:
        lab._wait(f"web on {hostname}", lambda: (hostname in running_on(lab, "web"), ""), 60)
    finally:
        update_node(lab, donor, lambda spec: spec.update(Availability="active"))
    lab.wait_converged()


def endpoint_vm(lab, endpoint: str) -> str:
    return next(vm.name for vm in lab.vms if vm.socket == endpoint)


# ---------------------------------------------------------------- reading
async def test_snapshot_matches_what_the_swarm_reports(lab, console: Session):
    for _ in range(5):  # the picture from both sides must be of the same moment
        before = swarm_picture(lab)
        snap = await console.cluster.snapshot()
        if swarm_picture(lab) == before:
            break
    else:
        pytest.fail("the swarm kept changing while the lab should be at rest")
    raw_nodes, raw_services, raw_tasks = before
    assert not snap.problems
    assert snap.endpoint == lab.vm("vm-01").socket          # the inventory's first manager

    assert {n.swarm_id: (n.hostname, n.role, n.availability, n.state, n.leader, n.address)
            for n in snap.nodes} == {
        n["ID"]: (n["Description"]["Hostname"], n["Spec"]["Role"], n["Spec"]["Availability"],
                  n["Status"]["State"], bool((n.get("ManagerStatus") or {}).get("Leader")),
                  n["Status"]["Addr"]) for n in raw_nodes}
    assert {n.hostname: (n.role, n.address) for n in snap.nodes} == {
        vm.name: (vm.role, vm.address) for vm in lab.vms}
    assert sum(n.leader for n in snap.nodes) == 1

    # what an operator sees with `docker node ls` on the same manager
    ls = subprocess.run([CLI, "node", "ls", "--format", "{{json .}}"], capture_output=True,
                        text=True, timeout=60, check=True,
                        env={**{k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"},
                             "DOCKER_HOST": snap.endpoint})
    rows = [json.loads(line) for line in ls.stdout.splitlines()]
    assert {r["Hostname"]: (r["ID"], r["Status"].lower(), r["Availability"].lower(),
                            r["ManagerStatus"]) for r in rows} == {
        n.hostname: (n.swarm_id, n.state, n.availability,
                     "Leader" if n.leader else n.reachability.capitalize()) for n in snap.nodes}

    svc = {s.name: s for s in snap.services}
    assert {s.swarm_id for s in snap.services} == {s["ID"] for s in raw_services}
    assert (svc["web"].mode, svc["web"].replicas, svc["web"].max_per_node,
            svc["web"].constraints) == ("replicated", len(lab.vms) - 1, 1, ())
    assert (svc["pinned"].mode, svc["pinned"].replicas,
            svc["pinned"].constraints) == ("replicated", 1, ("node.hostname==vm-05",))
    assert svc["agent"].mode == "global"
    for s in snap.services:
        assert snap.converged(s), s.name

    def per_node(tasks) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for node_id, task_id in tasks:
            out.setdefault(node_id, set()).add(task_id)
        return out
    running = per_node((t["NodeID"], t["ID"]) for t in raw_tasks
                       if t["Status"]["State"] == "running")
    assert per_node((n.swarm_id, t.swarm_id) for n in snap.nodes
                    for t in snap.tasks_on_node(n.swarm_id) if t.state == "running") == running
    pinned_node = snap.node_named("vm-05")
    assert [t.service_name for t in snap.tasks_on_node(pinned_node.swarm_id)
            if t.service_name == "pinned"] == ["pinned"]


async def test_swarm_read_costs_three_requests_whatever_the_number_of_nodes(lab, console):
    """nodes, services, tasks: one request each, never one per node.

    A console refresh also reads the operation lock (a label on the swarm object,
    GET /swarm): one more request, just as constant.
    """
    cluster, swarm = console.cluster, console.providers.swarm
    await cluster.snapshot()
    assert swarm.requests_sent == 1 + 3 + 1     # GET /version once (API negotiation) first

    async def cost(read) -> tuple[int, object]:
        before = swarm.requests_sent
        got = await read()
        return swarm.requests_sent - before, got

    async def costs() -> tuple[list[int], list[int], list[int]]:
        reads = [(await cost(swarm.read))[0] for _ in range(3)]
        locks = [(await cost(swarm.read_lock))[0] for _ in range(3)]
        refreshes = [(await cost(cluster.snapshot))[0] for _ in range(3)]
        return reads, locks, refreshes
    assert await costs() == ([3] * 3, [1] * 3, [4] * 3)

    five = (await cost(cluster.snapshot))[1]
    await asyncio.to_thread(lab.add_worker, "vm-06")      # one more real node joins
    try:
        async def six_ready():
            snap = await cluster.snapshot()
            ready = [n for n in snap.nodes if n.state == "ready"]
            return snap if len(ready) == 6 and all(snap.converged(s) for s in snap.services) \
                else None
        six = await until(six_ready, "vm-06 ready in the console, with its agent task")
        assert len(six.nodes) == len(five.nodes) + 1 and len(six.tasks) > len(five.tasks)
        assert await costs() == ([3] * 3, [1] * 3, [4] * 3)
    finally:
        await asyncio.to_thread(lab.remove_vm, "vm-06")
    assert len((await cluster.snapshot()).nodes) == 5
    assert await costs() == ([3] * 3, [1] * 3, [4] * 3)


# ---------------------------------------------------------------- operations
async def test_cordon_drain_activate_a_worker_through_the_engine(lab, console: Session):
    await asyncio.to_thread(web_on, lab, "vm-04")
    web_before = running_on(lab, "web")
    cluster, engine = console.cluster, console.engine

    op = await engine.run(build("cordon", await cluster.snapshot(), "vm-04"))
    assert op.state == DONE, op.error
    assert availability(lab, "vm-04") == "pause"
    assert running_on(lab, "web") == web_before           # cordon moves nothing

    op = await engine.run(build("drain", await cluster.snapshot(), "vm-04", DRAIN))
    assert op.state == DONE, op.error
    # done means converged: at this moment nothing is left on vm-04 and web runs in full
    # on the other nodes, the task that was on vm-04 replaced by one elsewhere
    assert availability(lab, "vm-04") == "drain"
    nodes, _, tasks = swarm_picture(lab)
    vm04 = next(n["ID"] for n in nodes if n["Description"]["Hostname"] == "vm-04")
    assert [t["ID"] for t in tasks if t["NodeID"] == vm04] == []
    web_after = running_on(lab, "web")
    assert "vm-04" not in web_after and len(web_after) == len(web_before)
    assert web_before["vm-04"] not in web_after.values()
    status = lab.service_status()
    assert status["web"][:2] == (len(lab.vms) - 1,) * 2 and status["pinned"][:2] == (1, 1)
    assert any("✔ wait until vm-04 runs no tasks" in line for line in op.log)

    op = await engine.run(build("activate", await cluster.snapshot(), "vm-04"))
    assert op.state == DONE, op.error
    assert availability(lab, "vm-04") == "active"
    await asyncio.to_thread(lab._wait, "agent back on vm-04",
                            lambda: ("vm-04" in running_on(lab, "agent"), ""), 60)


async def test_drain_of_the_pinned_node_is_refused_and_forced_it_fails_naming_the_task(
        lab, console: Session):
    cluster, engine = console.cluster, console.engine
    short = Timing(drain_timeout=15.0)

    plan = build("drain", await cluster.snapshot(), "vm-05", short)
    assert [c.name for c in plan.refused] == ["capacity"]
    assert "pinned" in plan.refused[0].message
    with pytest.raises(StepFailed, match="refused by guards.*pinned"):
        engine.start(plan)
    assert availability(lab, "vm-05") == "active"         # refused means untouched

    plan = build("drain", await cluster.snapshot(), "vm-05", short, force=True)
    assert not plan.refused
    try:
        t0 = time.monotonic()
        op = await engine.run(plan)
        took = time.monotonic() - t0
        assert op.state == FAILED, f"claimed {op.state}: {op.log}"
        assert "timed out after 15s waiting for vm-05 to drain" in op.error
        assert "pinned" in op.error and "pending" in op.error
        # Swarm's own reason, word for word, as the scheduler wrote it on the task
        _, services, tasks = swarm_picture(lab)
        pinned = next(s["ID"] for s in services if s["Spec"]["Name"] == "pinned")
        reason = next(t["Status"]["Err"] for t in tasks if t["ServiceID"] == pinned
                      and t["Status"]["State"] == "pending")
        assert reason.startswith("no suitable node") and reason in op.error
        assert 15 <= took < 15 + 60
        assert availability(lab, "vm-05") == "drain"       # failing undoes nothing, and
        [record] = console.journal.unfinished()             # it stays on record, the lock
        assert (record.op, record.state) == (op.id, FAILED)  # held, for resume or rollback
        held = await console.providers.swarm.read_lock()
        assert op.error in record.error and held is not None and held.op == op.id
    finally:
        for record in console.journal.unfinished():         # the way out: roll it back
            back = await engine.run(rollback(record, await cluster.snapshot()))
            assert back.state == DONE, back.error
    assert await console.providers.swarm.read_lock() is None
    await asyncio.to_thread(lab._wait, "pinned running on vm-05 again",
                            lambda: ("vm-05" in running_on(lab, "pinned"), ""), 60)


# ---------------------------------------------------------------- events and failover
async def test_a_change_behind_the_consoles_back_wakes_it(lab, console: Session):
    swarm = console.providers.swarm
    await console.cluster.snapshot()                    # opens the event stream
    await until(lambda: swarm.events_endpoint == swarm.endpoint, "the event stream")
    await asyncio.sleep(1.5)                            # replayed events are in
    await console.cluster.snapshot()                    # ... and read

    t0 = time.monotonic()
    await swarm.wait_for_change(1.0)                    # a quiet swarm: the wait runs out
    assert time.monotonic() - t0 >= 0.9

    waiting = asyncio.ensure_future(swarm.wait_for_change(10.0))
    await asyncio.sleep(0.1)
    try:
        await asyncio.to_thread(update_node, lab, "vm-04",
                                lambda spec: spec.update(Labels={"opsconsole.test": "1"}))
        changed = time.monotonic()
        await asyncio.wait_for(waiting, 15)
        woke = time.monotonic() - changed
        print(f"woken {woke:.3f}s after the change")
        assert woke < 2.0, f"woke {woke:.2f}s after the change (timeout 10s)"
        snap = await console.cluster.snapshot()
        assert ("opsconsole.test", "1") in snap.node_named("vm-04").labels
    finally:
        await asyncio.to_thread(update_node, lab, "vm-04", lambda spec: spec.update(Labels={}))


async def test_failover_when_the_manager_in_use_stops(lab, console: Session):
    cluster, swarm = console.cluster, console.providers.swarm
    first = (await cluster.snapshot()).endpoint
    thread = swarm._events_thread
    vm = endpoint_vm(lab, first)
    assert vm == "vm-01"                                  # the inventory's first manager
    await asyncio.to_thread(lab.stop_vm, vm, False)       # power off, don't wait for Swarm
    problems: list[Problem] = []
    try:
        # while the managers elect a new leader reads may fail or hang up to the timeout:
        # the console keeps its last picture, says why, and tries again on the next refresh
        async def answered():
            snap = await cluster.snapshot()
            problems.extend(snap.problems)
            return snap if snap.endpoint != first and not snap.problems else None
        snap = await until(answered, "a snapshot from another manager", step=0.5)
        assert endpoint_vm(lab, snap.endpoint) in ("vm-02", "vm-03")
        assert swarm.failover.startswith(f"switched from {first} to {snap.endpoint}: {first}: ")
        assert "daemon down" in swarm.failover
        assert {n.hostname for n in snap.nodes} == {v.name for v in lab.vms}
        for p in problems:                                # no stack traces: words
            assert p.source == "swarm" and re.search(
                r"no manager answers: unix://|no leader|not the Raft leader|no manager is the "
                r"Raft leader", p.message), p

        async def vm_down():
            s = await cluster.snapshot()
            return s if s.node_named(vm).state == "down" and not s.problems else None
        down = await until(vm_down, f"{vm} shown down", step=0.5)
        assert sum(n.leader for n in down.nodes) == 1 and not down.node_named(vm).leader
        assert down.endpoint == snap.endpoint

        # the event stream followed the console to the new manager
        await until(lambda: swarm.events_endpoint == swarm.endpoint,
                    "the event stream on the new manager", timeout=30)
        await cluster.snapshot()
        waiting = asyncio.ensure_future(swarm.wait_for_change(10.0))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(update_node, lab, "vm-04",
                                lambda spec: spec.update(Labels={"opsconsole.test": "2"}))
        changed = time.monotonic()
        await asyncio.wait_for(waiting, 15)
        assert time.monotonic() - changed < 2.0
        await asyncio.to_thread(update_node, lab, "vm-04", lambda spec: spec.update(Labels={}))
    finally:
        await asyncio.to_thread(lab.start_vm, vm)       # rejoins; the `lab` fixture re-converges
    assert swarm._events_thread is thread and thread.is_alive()   # one stream thread, moved


# ---------------------------------------------------------------- the console itself
async def test_console_drains_and_activates_a_node_from_the_tree(lab, inventory):
    await asyncio.to_thread(web_on, lab, "vm-04")
    session = open_session(inventory)
    app = OpsConsole(session, poll_interval=2.0)       # the default: events must do the work
    thread = None
    async with app.run_test(size=(160, 50)) as pilot:
        tree = app.query_one(ClusterTree)

        async def ui(cond, what, timeout=WAIT):
            deadline = time.monotonic() + timeout
            while not cond():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
                await pilot.pause(0.02)

        def label(node_id: str) -> str:
            node = tree.index.get(node_id)
            return node.label.plain if node is not None else ""

        await ui(lambda: app.snapshot.node_named("vm-04") is not None, "the first snapshot")
        thread = session.providers.swarm._events_thread
        node_id = app.snapshot.node_named("vm-04").id
        await ui(lambda: "active" in label(node_id), "vm-04 in the tree")
        assert tree.select_id(node_id)
        await pilot.press("d")
        await ui(lambda: isinstance(app.screen, ConfirmScreen), "the drain confirmation")
        assert str(app.screen.query_one("#confirm-title").content) == "drain vm-04"
        await pilot.press(*"vm-04", "enter")           # type the name, confirm
        await ui(lambda: not isinstance(app.screen, ConfirmScreen), "the confirmation to close")

        deadline = time.monotonic() + WAIT
        while True:                                     # the moment Swarm shows it ...
            asked = time.monotonic()
            if await asyncio.to_thread(availability, lab, "vm-04") == "drain":
                break
            assert asked < deadline, "Swarm never showed vm-04 drained"
            await pilot.pause(0.02)
        await ui(lambda: "drain" in label(node_id), "drain in the tree", timeout=10)
        shown = time.monotonic() - asked                # ... to the moment the tree does
        print(f"tree showed drain {shown:.3f}s after Swarm did")
        assert shown < 1.0, f"the tree showed drain {shown:.2f}s after Swarm did"

        op = session.engine.operations[-1]
        await ui(lambda: op.state in (DONE, FAILED), "the drain to finish")
        assert op.state == DONE, op.error
        assert "vm-04" not in await asyncio.to_thread(running_on, lab, "web")

        assert tree.select_id(node_id)
        await pilot.press("a")
        await ui(lambda: isinstance(app.screen, ConfirmScreen), "the activate confirmation")
        assert app.screen.query_one("#confirm-yes").has_focus
        await pilot.press("enter")
        op = await _last_op(session, pilot, "activate")
        await ui(lambda: op.state in (DONE, FAILED), "activate to finish")
        assert op.state == DONE, op.error
        assert await asyncio.to_thread(availability, lab, "vm-04") == "active"
        await ui(lambda: "active" in label(node_id), "active in the tree", timeout=10)
    assert thread is not None and not thread.is_alive(), "the event thread outlived the app"


async def _last_op(session: Session, pilot, kind: str):
    deadline = time.monotonic() + 30
    while not (session.engine.operations and session.engine.operations[-1].plan.kind == kind):
        assert time.monotonic() < deadline, f"no {kind} operation started"
        await pilot.pause(0.02)
    return session.engine.operations[-1]
