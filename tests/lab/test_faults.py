"""The lab's fault tier: real faults at real moments, judged by the systems themselves.

Each test breaks something the way production breaks it (kill -9 of a
manager's dockerd, of HAProxy, of the console; WinRM gone; a node
re-activated by hand behind the console's back) at a moment found by
watching the operation (the engine's change hook in-process, the journal file
for a console in its own process), never by sleeping a guessed time. What
happened is read from docker, HAProxy's socket, the load generator, the VMs'
boot records and the journal/audit files, not from what the console says.

The contract under test (DESIGN.md, "The safety contract"; issues 9 and 10):

  1. host maintenance: the other manager, and the connected one, killed
     mid-window: no manager is shut down while quorum is at risk; the
     operation pauses (or stops unfinished) naming quorum; once the dead
     dockerd is back the window completes and the cluster is whole;
  2. rolling update: the same, a manager killed while another one drains;
  3. HAProxy killed during "wait for sessions": nothing proceeds on a count
     read before the fault; the drain is re-applied after the restart;
     users see no failure once HAProxy is back;
  4. a global service pinned to the leaving node: refused, named; --force warns;
  5. a failure after capacity was taken: exit 4, lock kept, unfinished in the
     journal, `rollback` restores node and proxy server; no user notices;
  6. WinRM down (refusing, or silent) during `status`: exit 6, the problem listed;
  7. resume trusts the cluster: a node re-activated by hand after a kill -9
     of the console is drained again (or the resume refuses), never rebooted
     while active with tasks;
  8. every maintenance ends converged by UpdateStatus, as docker says.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import requests

from opsconsole.model import SWARM
from opsconsole.ops import catalog
from opsconsole.ops.engine import DONE, FINISHED, PAUSED

from .labkit import Sampler, running_on, until, whole
from .load import LoadRun, summary
from .swarm_lab import BACKEND, IMAGE, LOCK_LABEL, SECOND, LabError, read_boots
from .test_maintenance_lab import cli, journal

USERS = 24
CLI = [sys.executable, "-m", "opsconsole"]
FINISH = 600.0          # the most a window may take to finish once its fault is repaired


# ------------------------------------------------------------------ what the systems say
def converged_by_docker(lab) -> dict[str, str]:
    """service -> why it is not converged, as docker says; empty when every service is:
    its UpdateStatus completed or absent, as many tasks running as desired, none on its way.
    A global service is desired on every node ready and active (at least: a manager that
    just became leader shows nodes `unknown` until they check in, so its own tasks that are
    meant to run count too)."""
    bad = {}
    with lab.manager_client() as c:
        nodes = c.api.nodes()
        eligible = [n for n in nodes if n["Status"]["State"] == "ready"
                    and n["Spec"]["Availability"] == "active"]
        for s in c.api.services():
            name, mode = s["Spec"]["Name"], s["Spec"]["Mode"]
            update = (s.get("UpdateStatus") or {}).get("State")
            tasks = c.api.tasks(filters={"service": s["ID"], "desired-state": "running"})
            running = sum(1 for t in tasks if t["Status"]["State"] == "running")
            on_way = [t["Status"]["State"] for t in tasks if t["Status"]["State"] != "running"]
            desired = mode["Replicated"]["Replicas"] if "Replicated" in mode else \
                max(len(eligible), len(tasks))
            if update not in (None, "completed") or running != desired or on_way:
                bad[name] = (f"UpdateStatus {update}, {running}/{desired} running"
                             + (f", {on_way}" if on_way else ""))
    return bad


def assert_converged(lab, what: str) -> None:
    """Item 8: done means converged, as docker says, at the moment the operation ends."""
    bad = converged_by_docker(lab)
    assert not bad, f"{what} ended while services were not converged: {bad}"


def managers(lab) -> dict[str, tuple[str, str, bool]]:
    """manager hostname -> (node state, Raft reachability, leader), from a manager; empty
    while no manager can say (no leader yet: an election, a manager restarting)."""
    try:
        with lab.manager_client() as c:
            nodes = c.api.nodes()
    except (docker.errors.APIError, requests.RequestException, LabError):
        return {}
    return {n["Description"]["Hostname"]: (n["Status"]["State"],
                                           n["ManagerStatus"].get("Reachability", ""),
                                           bool(n["ManagerStatus"].get("Leader")))
            for n in nodes if n.get("ManagerStatus")}


def halts_since(lab, name: str, since: float) -> list[dict]:
    """When the VM went down (shut down, rebooted) since `since`, as the VM recorded it."""
    return [e for e in read_boots(lab.vm(name)) if e["event"] == "halt" and e["start"] >= since]


def node_view(lab, name: str) -> tuple[str, int]:
    """(availability, running tasks) of a node, straight from a manager."""
    with lab.manager_client() as c:
        (node,) = [n for n in c.api.nodes() if n["Description"]["Hostname"] == name]
        tasks = c.api.tasks(filters={"node": node["ID"], "desired-state": "running"})
        return node["Spec"]["Availability"], sum(1 for t in tasks
                                                if t["Status"]["State"] == "running")


def swarm_lock(lab) -> dict | None:
    with lab.manager_client() as c:
        label = (c.api.inspect_swarm()["Spec"].get("Labels") or {}).get(LOCK_LABEL)
    return json.loads(label) if label else None


def audit(state: Path) -> list[dict]:
    path = state / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []


def ended(state: Path, op_id: str) -> list[str]:
    return [r.get("state", "") for r in journal(state) if r.get("event") == "end"
            and r.get("op") == op_id]


def run_cli(inventory: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "-i", str(inventory), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def proxy_answers(lab) -> bool:
    try:
        return "Pid:" in lab.proxy_command("show info")
    except OSError:
        return False


def failures_after(load: LoadRun, since: float) -> list[dict]:
    """Users with a request that failed at or after `since`."""
    return [u for u in load.users() if any(t >= since for t in u["failed_at"])]


# ------------------------------------------------------------------ faults and their moments
class Watch:
    """The engine's change hook: each trigger fires once, the moment its condition holds
    (a step starting, the operation pausing), and does its fault there and then."""

    def __init__(self, engine) -> None:
        self.triggers: list[tuple[str, object, object]] = []
        self.fired: dict[str, float] = {}
        self.errors: list[str] = []
        self.stop = engine.listen(self)

    def when(self, name: str, cond, action) -> None:
        self.triggers.append((name, cond, action))

    def __call__(self, op) -> None:
        for name, cond, action in self.triggers:
            if name in self.fired:
                continue
            try:
                if cond(op):
                    self.fired[name] = time.time()
                    action(op)
            except Exception as e:    # noqa: BLE001 - said by the test, never to the engine
                self.errors.append(f"{name}: {type(e).__name__}: {e}")


def step_starts(prefix: str):
    """Condition: the operation's current step is the one whose title starts so."""
    return lambda op: op.state not in FINISHED and op.current_step.startswith(prefix)


def log_since(op, line_no: int) -> list[str]:
    return op.log[line_no:]


async def carry_on(session, op, timeout: float = FINISH):
    """The fault repaired, what an operator does: resume a paused operation (again if a
    guard pauses it once more on the way), or resume one that stopped unfinished from the
    journal. Returns the operation that ended."""
    engine = session.engine
    deadline = time.monotonic() + timeout
    for attempt in range(2):
        while op.state not in FINISHED:
            assert time.monotonic() < deadline, f"{op.title} did not finish: {op.log[-15:]}"
            if op.state == PAUSED:
                engine.resume(op)
            await asyncio.wait({op.task}, timeout=2)
        if op.state == DONE or attempt:
            # the state says done before the run has released the cluster lock: its end
            await asyncio.wait({op.task}, timeout=60)
            return op
        record = next((r for r in session.journal.unfinished() if _op_id(r) == op.id), None)
        assert record is not None, (f"{op.title} ended {op.state} and left nothing to "
                                    f"resume: {op.error}; {op.log[-15:]}")
        snap = await session.cluster.snapshot()
        op = engine.start(catalog.rebuild(record, snap), resume=record)
    return op


def _op_id(record) -> str:
    return record["op"] if isinstance(record, dict) else getattr(record, "op", "")


@pytest.fixture
def hosts_as_new(ref_lab):
    """A window restarts a Hyper-V host: its emulator then has no reboot pending. The other
    tests of the reference lab expect hosts as `up` made them: labd starts again after."""
    yield
    ref_lab.restart_labd()


@pytest.fixture
def web2(ref_lab):
    """web at 2 replicas: three nodes left with one manager down still have room for it,
    so the quorum guard is the one that has to stop the window (issue 9's setting)."""
    def scale(n: int) -> None:
        with ref_lab.manager_client() as c:
            c.services.get("web").scale(n)
        ref_lab.wait_converged()
    scale(2)
    yield
    ref_lab.restore()       # a manager may still be down: quorum first
    scale(3)


async def _window_with_a_dead_manager(lab, session, plan, victim: str, moments: list[str],
                                      at_risk: str, stand_in: str, failover_to: str = ""):
    """Run `plan`; kill -9 `victim`'s dockerd as the first step starting with one of
    `moments` starts once the stand-in votes (three managers: losing one is survivable).
    The operation must stop before shutting down or rebooting `at_risk` (a manager whose
    loss, with the victim down, costs quorum) and say quorum. Then the victim's dockerd
    starts again and the operation, resumed, completes."""
    started = time.time()
    kills: dict = {}
    watch = Watch(session.engine)

    def moment(op) -> bool:
        if not any(step_starts(m)(op) for m in moments):
            return False
        if "promoted" not in kills:             # when the stand-in came to vote, first seen
            kills["promoted"] = time.time()
        return managers(lab).get(stand_in, ("",))[:2] == ("ready", "reachable")

    def kill(op) -> None:
        kills["leader"] = [h for h, m in managers(lab).items() if m[2]]
        kills["log"], kills["step"] = len(op.log), op.current_step
        lab.kill_dockerd(victim)
        kills["at"] = time.time()
    watch.when("kill", moment, kill)
    op = session.engine.start(plan)
    try:
        # the operation stops (paused, or finished) or, wrongly, takes the manager down
        await until(lambda: watch.errors or op.state in FINISHED or "at" in kills and (
                        op.state == PAUSED or halts_since(lab, at_risk, started)),
                    f"the window to stop after {victim} died", timeout=300)
        assert not watch.errors, watch.errors
        assert "at" in kills, (f"no moment {moments} came with {stand_in} voting", op.state,
                               op.error, op.log[-10:])
        print(f"\n{victim} killed at '{kills['step']}' (leader then: {kills['leader']}; "
              f"{kills['at'] - kills['promoted']:.1f}s after the first moment, waiting for "
              f"{stand_in} to vote); the operation is {op.state} at: {op.current_step}")
        said = log_since(op, kills["log"])
        assert not halts_since(lab, at_risk, started), (
            f"{at_risk} was shut down while {victim} was down (quorum lost): {said}")
        assert lab.running(at_risk)
        assert any("quorum" in line.lower() for line in said) or "quorum" in op.error.lower(), (
            f"stopped without naming quorum ({op.state}: {op.error}): {said}")
        assert op.state == PAUSED or op.state in FINISHED and op.state != DONE, op.state
        if failover_to:     # the console reads the swarm through the manager that lives
            snap = await session.cluster.snapshot()
            assert snap.endpoint.endswith(f"/{failover_to}/docker.sock"), snap.endpoint
            assert not [p for p in snap.problems if p.source == SWARM], snap.problems
    finally:
        if "at" in kills:
            lab.restart_engine(victim, reason="back after kill -9")
    await until(lambda: managers(lab).get(victim, ("",))[:2] == ("ready", "reachable"),
                f"manager {victim} back in Raft", timeout=120)
    back = time.time()
    op = await carry_on(session, op)
    assert op.state == DONE, (op.error, op.log[-20:])
    assert_converged(lab, op.title)
    # never before the victim was back: the manager at risk went down only after that
    halts = halts_since(lab, at_risk, started)
    assert halts and all(h["start"] > back for h in halts), (halts, back)
    return op, kills["at"], back


def assert_whole_again(lab) -> None:
    """Nodes ready, active, own roles; proxy servers ready and UP; no lock left."""
    want = {vm.name: ("ready", "active", vm.role) for vm in lab.vms}
    lab._wait("the nodes to settle", lambda: (lab.node_states() == want, lab.node_states()), 60)
    assert {k: v[:2] for k, v in lab.proxy_servers().items()} == {
        vm.name: ("UP", "ready") for vm in lab.vms}
    assert swarm_lock(lab) is None


# ------------------------------------------------------------------ 1. host maintenance
async def test_maintenance_stops_before_a_manager_while_the_other_manager_is_dead(
        ref_lab, ref_console, web2, hosts_as_new):
    """hv-01's window: vm-05 stands in (3 managers); vm-04, the manager of hv-02, dies while
    vm-02 drains. Stopping vm-01 then leaves 1 of 3 managers: it must not happen."""
    lab, session = ref_lab, ref_console
    snap = await whole(session)
    plan = catalog.build("maintenance", snap, "hv-01", session.inventory.timing,
                         session.window_options)
    assert not plan.refused, plan.checks
    assert plan.params["promote"] == "vm-05"
    await _window_with_a_dead_manager(
        lab, session, plan, victim="vm-04", at_risk="vm-01", stand_in="vm-05",
        moments=["wait until vm-02 runs no tasks", "wait until vm-03 runs no tasks"])
    assert_whole_again(lab)


async def test_maintenance_survives_the_connected_manager_dying_mid_window(
        ref_lab, ref_console, web2, hosts_as_new):
    """hv-02's window: vm-02 stands in; vm-01, the manager the console talks to, dies as
    the first VM of hv-02 shuts down. The console goes on through vm-04's socket, and must
    not shut vm-04 down while vm-01 is dead."""
    lab, session = ref_lab, ref_console
    snap = await whole(session)
    assert snap.endpoint.endswith("vm-01/docker.sock"), snap.endpoint
    plan = catalog.build("maintenance", snap, "hv-02", session.inventory.timing,
                         session.window_options)
    assert not plan.refused, plan.checks
    assert plan.params["promote"] == "vm-02"
    await _window_with_a_dead_manager(lab, session, plan, victim="vm-01", at_risk="vm-04",
                                      stand_in="vm-02", moments=["shut down vm-05"],
                                      failover_to="vm-04")
    assert_whole_again(lab)


# ------------------------------------------------------------------ 2. rolling update
async def test_rolling_update_does_not_reboot_a_manager_while_another_is_dead(
        ref_lab, ref_console):
    """Both managers, one at a time, vm-02 standing in; vm-04 dies while vm-01 drains:
    rebooting vm-01 then leaves 1 of 3 managers. It waits for vm-04, then goes on."""
    lab, session = ref_lab, ref_console
    snap = await whole(session)
    plan = catalog.build("rolling-update", snap, "vm-01,vm-04", session.inventory.timing,
                         session.window_options)
    assert not plan.refused, plan.checks
    assert (plan.params["vms"], plan.params["promote"]) == (["vm-01", "vm-04"], "vm-02")
    op, _, back = await _window_with_a_dead_manager(
        lab, session, plan, victim="vm-04", at_risk="vm-01", stand_in="vm-02",
        moments=["wait until vm-01 runs no tasks", "run the update on vm-01"])
    # vm-04 rebooted in its turn, once vm-01 was back
    (vm01,) = halts_since(lab, "vm-01", back)
    (vm04,) = [h for h in halts_since(lab, "vm-04", back) if "reboot" in h["reason"]]
    vm01_up = next(e["end"] for e in read_boots(lab.vm("vm-01"))
                   if e["event"] == "boot" and e["start"] >= vm01["end"])
    assert vm04["start"] > vm01_up
    assert_whole_again(lab)


# ------------------------------------------------------------------ 3. HAProxy dies mid-wait
DRAINED = "vm-04"       # a worker of the default lab
PROXY_DOWN_S = 8.0      # how long HAProxy stays dead: longer than any user's visit (2-4 s)
                        # plus the stick table's expiry (3 s): a count read before is void


async def test_haproxy_killed_during_the_sessions_wait(lab, console, tmp_path):
    session = console
    state = session.inventory.state_dir
    def both() -> tuple[str, str | None]:
        """The node's availability, then (read after it) the server's admin state in
        HAProxy (None while HAProxy is dead). Read in this order, a sample with the node
        drained and the server not proves the Swarm drain came first."""
        availability = node_view(lab, DRAINED)[0]
        try:
            return availability, lab.proxy_servers()[DRAINED][1]
        except OSError:
            return availability, None
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS, duration=300) as load, \
            Sampler(both, 0.1) as samples:
        await until(lambda: lab.proxy_sessions().get(DRAINED, 0) >= 2,
                    f"users with a session on {DRAINED}", timeout=30)
        snap = await whole(session)
        plan = catalog.build("drain", snap, DRAINED, session.inventory.timing)
        assert not plan.refused, plan.checks
        watch = Watch(session.engine)
        killed: dict[str, float] = {}

        def kill(op) -> None:
            killed["log"] = len(op.log)
            lab.kill_proxy()
            killed["at"] = time.time()
        watch.when("kill", step_starts(f"wait for sessions on {BACKEND}/{DRAINED}"), kill)
        op = session.engine.start(plan)
        await until(lambda: "at" in killed or op.state in FINISHED, "the sessions wait",
                    timeout=60)
        assert "at" in killed, (watch.errors, op.state, op.error, op.log)
        # HAProxy stays dead a while; the console may do nothing that needs its answer
        await asyncio.sleep(PROXY_DOWN_S)       # the fault's length, not a synchronisation
        assert op.state not in FINISHED, (op.state, op.error, op.log[-10:])
        assert node_view(lab, DRAINED)[0] == "active", "the node was drained on a stale count"
        lab.start_proxy()
        await until(lambda: proxy_answers(lab), "HAProxy to answer", timeout=20)
        back = time.time()
        await asyncio.wait_for(op.task, 240)
        assert op.state == DONE, (op.error, op.log[-15:])
        assert_converged(lab, op.title)
        # HAProxy lost the drain with its restart: the console set it again
        await until(lambda: lab.proxy_servers()[DRAINED][1] == "drain",
                    f"{DRAINED} drained in HAProxy again", timeout=30)
        said = log_since(op, killed["log"])
    report = load.report
    print(f"\nload while HAProxy died and came back during a drain: {summary(report)}")
    print("\n".join(said))
    records = journal(state)
    (wait_index,) = {r["index"] for r in records if r.get("event") == "step"
                     and str(r.get("title", "")).startswith("wait for sessions")}
    wait_done = [r["time"] for r in records if r.get("event") == "step"
                 and r.get("index") == wait_index and r.get("phase") == "done"]
    assert wait_done and wait_done[-1] > back, (wait_done, back)
    # the Swarm drain came only once HAProxy answered again (as docker says), and only
    # with the server drained in HAProxy again (HAProxy's own state)
    drained = [(t, admin) for t, (availability, admin) in samples.timeline
               if availability == "drain"]
    assert drained and drained[0][0] > back, (drained[:1], back)
    assert all(admin == "drain" for _, admin in drained), drained[:5]
    # users: nobody failed once HAProxy was back
    assert report["requests"] > 300
    late = failures_after(load, back)
    assert late == [], late
    # the re-applied drain is in the audit log
    reapplied = [r for r in audit(state) if r["time"] > back and DRAINED in str(r.get("target"))
                 and "drain" in json.dumps(r)]
    assert reapplied, [r for r in audit(state) if r["time"] > killed["at"]]
    # and the wait said it could not read HAProxy (not a silent wait on an old count)
    assert any("unreachable" in line.lower() for line in said), said


# ------------------------------------------------------------------ 4. a pinned global service
async def test_a_global_service_pinned_to_the_node_refuses_the_drain(lab, tmp_path):
    inventory = lab.write_inventory(tmp_path / "inventory.toml", state_dir=tmp_path / "state")
    with lab.manager_client() as c:
        service = c.services.create(
            IMAGE, ["sleep", "1000000"], name="pinned-g", mode=docker.types.ServiceMode("global"),
            constraints=[f"node.hostname=={DRAINED}"], init=True,
            stop_grace_period=1 * SECOND)
    try:
        await until(lambda: set(running_on(lab, "pinned-g")) == {DRAINED},
                    f"pinned-g running on {DRAINED}", timeout=60)
        plan = run_cli(inventory, "plan", "drain", DRAINED)
        assert plan.returncode == 3, plan.stdout + plan.stderr
        refusal = [line for line in plan.stdout.splitlines() if "pinned-g" in line]
        assert refusal and any("fail" in line or "refus" in line.lower() for line in refusal), \
            plan.stdout
        forced = run_cli(inventory, "plan", "drain", DRAINED, "--force")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        warned = [line for line in forced.stdout.splitlines() if "pinned-g" in line]
        assert warned and all("[fail]" not in line for line in warned), forced.stdout
        assert any("warn" in line for line in warned), forced.stdout
        run = run_cli(inventory, "run", "drain", DRAINED, "--yes")
        assert run.returncode == 3, run.stdout + run.stderr
        assert lab.node_states()[DRAINED][1] == "active"        # nothing changed
        assert lab.proxy_servers()[DRAINED][1] == "ready"
    finally:
        service.remove()


# ------------------------------------------------------------------ 5. failed, then rolled back
async def test_a_failure_after_the_drain_keeps_the_lock_and_rolls_back(ref_lab, tmp_path):
    """Two managers: the connected one (vm-01) dies as vm-02's tasks move. The swarm has no
    leader: the drain cannot finish, and must fail recoverably."""
    lab = ref_lab
    state = tmp_path / "state"
    inventory = lab.write_inventory(tmp_path / "inventory.toml", state_dir=state,
                                    operations={"drain_timeout": 30, "paused_limit": 30})
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS) as load:
        run = cli(inventory, "run", "drain", "vm-02", "--yes", out=tmp_path / "run.log")
        killed = False
        try:
            def waiting() -> bool:
                return any(r.get("event") == "step" and r.get("phase") == "start"
                           and str(r.get("title", "")).startswith("wait until vm-02 runs no")
                           for r in journal(state)) or run.poll() is not None
            await until(waiting, "the drain of vm-02 to be under way", timeout=120, step=0.05)
            assert run.poll() is None, (tmp_path / "run.log").read_text()
            assert lab.node_states()["vm-02"][1] == "drain"
            lab.kill_dockerd("vm-01")
            killed = True
            code = await asyncio.to_thread(run.wait, 300)
        finally:
            if run.poll() is None:
                run.kill()
            if killed:
                lab.restart_engine("vm-01", reason="back after kill -9")
        log = (tmp_path / "run.log").read_text()
        assert code == 4, log[-3000:]
        (begin,) = [r for r in journal(state) if r.get("event") == "begin"]
        op_id = begin["op"]
        await until(lambda: managers(lab).get("vm-01", ("",))[:2] == ("ready", "reachable"),
                    "vm-01 back in Raft", timeout=120)
        # the lock stays on the swarm; the journal has the operation unfinished
        lock = swarm_lock(lab)
        assert lock and lock["op"] == op_id, lock
        listing = run_cli(inventory, "journal")
        assert any(op_id in line and "unfinished" in line.lower()
                   for line in listing.stdout.splitlines()), listing.stdout
        assert lab.node_states()["vm-02"][1] == "drain"
        back = run_cli(inventory, "rollback", op_id, "--yes", timeout=600)
        assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-2000:]
        assert_converged(lab, f"rollback {op_id}")
        assert lab.node_states()["vm-02"][1] == "active"
        await until(lambda: lab.proxy_servers()["vm-02"][:2] == ("UP", "ready"),
                    "portal/vm-02 ready and UP", timeout=30)
        assert swarm_lock(lab) is None
        assert not [line for line in run_cli(inventory, "journal").stdout.splitlines()
                    if op_id in line and "unfinished" in line.lower()]
    report = load.report
    print(f"\nload while a drain failed and was rolled back: {summary(report)}")
    assert report["requests"] > 300
    assert report["failed"] == 0, report["errors"]
    assert_whole_again(lab)


# ------------------------------------------------------------------ 6. WinRM down during status
async def test_status_with_winrm_down_says_so_and_exits_6(lab, tmp_path):
    inventory = lab.write_inventory(tmp_path / "inventory.toml", state_dir=tmp_path / "state")
    ok = run_cli(inventory, "status")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lab.kill_labd()
    try:
        text = run_cli(inventory, "status")
        assert text.returncode == 6, text.stdout + text.stderr
        out = text.stdout + text.stderr
        assert "hv-01" in out and "vm-04" in out        # what it could read is still shown
        problem = [line for line in out.splitlines()
                   if ("winrm" in line.lower() or "hyper-v" in line.lower()
                       or "hypervisor" in line.lower())
                   and ("refus" in line.lower() or "unreachable" in line.lower()
                        or "connect" in line.lower())]
        assert problem, out
        as_json = run_cli(inventory, "status", "--json")
        assert as_json.returncode == 6, as_json.stdout + as_json.stderr
        snap = json.loads(as_json.stdout)
        assert snap["problems"], snap["problems"]
        assert len(snap["nodes"]) == len(lab.vms)       # the swarm was read all the same
        assert all(h["state"] != "up" for h in snap["hosts"]), snap["hosts"]
    finally:
        lab.start_labd()
    # a silent WinRM (the process there, answering nothing) is no better than none
    pid = int((lab.labd_dir / "labd.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        silent = run_cli(inventory, "status", "--json", timeout=180)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert silent.returncode == 6, silent.stdout[-2000:] + silent.stderr
    assert json.loads(silent.stdout)["problems"]
    assert run_cli(inventory, "status").returncode == 0


# ------------------------------------------------------------------ 7. resume trusts the cluster
async def test_resume_drains_again_a_node_reactivated_by_hand(ref_lab, tmp_path):
    lab = ref_lab
    target = "vm-02"
    state = tmp_path / "state"
    update = f"sleep 6; echo \"$(date +%s.%N) update on $(hostname)\" >> " \
             f"\"{lab.root}/$(hostname)/disk/updates.log\""
    inventory = lab.write_inventory(tmp_path / "inventory.toml", state_dir=state,
                                    maintenance={"update_command": update})
    started = time.time()
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS) as load, \
            Sampler(lambda: node_view(lab, target), 0.2) as node:
        first = cli(inventory, "run", "rolling-update", target, "--yes", out=tmp_path / "run.log")
        try:
            def updating() -> bool:
                return any(r.get("event") == "step" and r.get("phase") == "start"
                           and str(r.get("title", "")).startswith(f"run the update on {target}")
                           for r in journal(state)) or first.poll() is not None
            await until(updating, f"the update of {target} to start", timeout=180, step=0.05)
            assert first.poll() is None, (tmp_path / "run.log").read_text()
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        killed = time.time()
        (begin,) = [r for r in journal(state) if r.get("event") == "begin"]
        op_id = begin["op"]
        assert node_view(lab, target)[0] == "drain"
        # someone puts the node back into service by hand, and its global tasks start there
        subprocess.run(["docker", "-H", f"unix://{lab.vm('vm-01').sock}", "node", "update",
                        "--availability", "active", target], check=True, capture_output=True,
                       timeout=30)
        await until(lambda: node_view(lab, target)[1] >= 1,
                    f"tasks running on {target} again", timeout=60)
        reactivated = time.time()
        resumed = cli(inventory, "resume", op_id, "--yes", out=tmp_path / "resume.log")
        code = await asyncio.to_thread(resumed.wait, 600)
        log = (tmp_path / "resume.log").read_text()
        print(f"\nresume after {target} was re-activated by hand: exit {code}\n{log[-2500:]}")
    report = load.report
    print(f"load: {summary(report)}")
    assert code in (0, 3), log[-3000:]
    reboots = [e for e in read_boots(lab.vm(target)) if e.get("event") == "request"
               and e.get("requested", 0) >= killed]
    if code == 3:       # the resume refused, naming the change; nothing was rebooted
        assert target in log and "active" in log, log[-3000:]
        assert reboots == []
        assert ended(state, op_id) in ([], ["failed"], ["interrupted"])
        assert node_view(lab, target)[0] == "active"
    else:               # drained again, then rebooted: never while active with tasks
        assert_converged(lab, f"resume {op_id}")
        assert len(reboots) == 1, reboots
        asked = reboots[0]["requested"]
        before = [v for t, v in node.timeline if reactivated < t < asked]
        assert before and before[-1] == ("drain", 0), (before[-3:], asked)
        redrained = [r for r in audit(state) if r["time"] > reactivated
                     and r.get("action") == "set availability" and "drain" in json.dumps(r)]
        assert redrained, audit(state)[-10:]
        assert ended(state, op_id)[-1:] == ["done"]
        assert_whole_again(lab)
    assert report["requests"] > 300
    assert report["failed"] == 0, report["errors"]
    assert started < killed
