"""Maintenance windows on the real lab, each under load through HAProxy, not one request lost.

The reference layout (two Hyper-V hosts, one Swarm manager on each: two
managers, which tolerate no loss) is the one where the quorum guard matters:
`ref_lab`. Every test runs the load generator (tests/lab/load.py) through the
lab's HAProxy for the whole operation and asserts that no request failed and
no user had to change VM. What the systems did is read from the systems and
the lab's own records (the VMs' boot logs, their files, the swarm, HAProxy,
WinRM), not from the console.

  1. host maintenance of hv-01: a worker of hv-02 stands in as manager, hv-01's
     VMs are drained, shut down over WinRM (their dockerd and sshd really stop),
     the host installs updates and restarts (its WinRM endpoint goes away for
     a while), the VMs start, everything returns;
  2. a rolling update of every VM: drain, the update command over SSH (it
     writes in the VM's own files), the reboot through the VM's own `reboot`,
     back, one VM at a time, with a stand-in manager while the managers reboot;
  3. `opsconsole run rolling-update` killed with SIGKILL mid-reboot, then
     `opsconsole resume ID`: each VM updated and rebooted exactly once;
  4. two consoles (two processes) race for the cluster lock: one runs, the
     other fails naming the holder.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from opsconsole.ops import catalog
from opsconsole.ops.engine import DONE

from .labkit import ReplicaWatch, Sampler, node_roles, running_on, service_specs, until, whole
from .load import LoadRun, summary
from .swarm_lab import LOCK_LABEL, read_boots
from .test_lab_tree import winrm_read_host

USERS = 24
CLI = [sys.executable, "-m", "opsconsole"]


def events_since(vm, since: float) -> list[dict]:
    return [e for e in read_boots(vm) if e.get("seen", e.get("start", 0)) >= since]


def updates_since(vm, since: float) -> list[float]:
    """When the update command ran in the VM, as the VM wrote it in its own files."""
    try:
        lines = (vm.disk / "updates.log").read_text().splitlines()
    except OSError:
        return []
    return [t for t in (float(line.split()[0]) for line in lines) if t >= since]


def assert_whole(lab) -> None:
    """As the systems say: nodes ready, active, own roles; proxy servers ready and UP;
    services converged; no lock left. After a Raft leader change (a manager rebooted, the
    stand-in demoted) the new leader shows nodes `unknown` until they check in: seconds."""
    want = {vm.name: ("ready", "active", vm.role) for vm in lab.vms}
    lab._wait("the nodes to settle", lambda: (lab.node_states() == want, lab.node_states()), 60)
    assert {k: v[:2] for k, v in lab.proxy_servers().items()} == {
        vm.name: ("UP", "ready") for vm in lab.vms}
    assert all(r == d for r, d, _ in lab.service_status().values()), lab.service_status()
    with lab.manager_client() as c:
        assert LOCK_LABEL not in (c.api.inspect_swarm()["Spec"].get("Labels") or {})


def assert_no_user_noticed(load: LoadRun, what: str, roles: Sampler | None = None) -> None:
    """No request failed, and no user had to change VM because of the console.

    With `roles` (node role, state, availability sampled from Swarm), a user who
    moved off a VM whose node stayed active and Ready for the user's whole visit
    moved for Swarm's own reasons, not the console's: a leader election in the
    lab (two cores for six dockerds) can leave an agent unable to check in long
    enough that Swarm restarts that node's tasks, with no operation touching
    it. Those are printed, not failed; a move off a node the console drained
    (or that was down) fails the test.
    """
    report = load.report
    print(f"\nload during {what}: {summary(report)}")
    assert report["requests"] > 500
    assert report["failed"] == 0, report["errors"]
    noticed = [u for u in load.users() if len(u["servers"]) > 1 or u["retried"]]
    if roles is None:
        assert noticed == [], noticed
        return
    by_swarm = []
    for u in noticed:
        seen = [r.get(u["servers"][0]) for r in roles.between(u["first_at"], u["left"])]
        if seen and all(s is not None and s[1:] == ("ready", "active") for s in seen):
            by_swarm.append(u)
    assert [u for u in noticed if u not in by_swarm] == [], noticed
    if by_swarm:
        print(f"{len(by_swarm)} user(s) moved off a VM whose node stayed active and Ready "
              f"(Swarm's doing): {sorted({u['servers'][0] for u in by_swarm})}")


def assert_replicas_kept(lab, watch: ReplicaWatch, specs: dict, leaving: set[str], op) -> None:
    """Swarm, sampled every 100 ms by its own process: every replicated service ran its
    replicas at every sample; the only tasks that stopped ran on a node being taken out
    (cordoned or drained) at the time; every service's spec is as before."""
    low = watch.floor(lab.replicas)
    print(f"replica floor {low} of {lab.replicas} ({len(watch.samples)} samples, longest gap "
          f"{watch.gaps():.2f} s); the console's: {op.floor}")
    assert low == lab.replicas
    stray = [s for s in watch.stopped() if s[2] not in leaving or s[3] == "active"]
    assert stray == [], stray
    assert service_specs(lab) == specs
    assert all(running >= desired for running, desired in op.floor.values()), op.floor


def cli(inventory: Path, *args: str, out: Path, env: dict | None = None) -> subprocess.Popen:
    """`opsconsole -i inventory ARGS` as its own process, its output in `out`."""
    with open(out, "w") as log:
        return subprocess.Popen([*CLI, "-i", str(inventory), *args], stdout=log,
                                stderr=subprocess.STDOUT, env=env or os.environ.copy(),
                                stdin=subprocess.DEVNULL)


def winrm_answers(lab, host: str) -> bool:
    """Whether the host's WinRM endpoint accepts a connection (a restarted host does not)."""
    try:
        socket.create_connection(("127.0.0.1", lab.winrm_ports[host]), 1).close()
        return True
    except OSError:
        return False


def journal(state: Path) -> list[dict]:
    path = state / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------ 1. host maintenance
async def test_host_maintenance_of_hv01_under_load(ref_lab, ref_console, tmp_path):
    lab, session = ref_lab, ref_console
    snap = await whole(session)
    plan = catalog.build("maintenance", snap, "hv-01", session.inventory.timing,
                         session.window_options)
    # the quorum guard on the real swarm: two managers tolerate no loss; vm-05 (hv-02) stands in
    assert not plan.refused, plan.checks
    (quorum,) = [c for c in plan.checks if c.name == "quorum"]
    assert quorum.level == "ok" and "stopping vm-01 leaves 1 of 2 managers" in quorum.message
    assert "so vm-05 is promoted to manager for the window and demoted after" in quorum.message
    assert (plan.params["promote"], plan.params["vms"]) == ("vm-05", ["vm-02", "vm-03", "vm-01"])
    titles = [s.title for s in plan.steps]
    assert titles[0] == "promote vm-05 to manager for the window"
    assert "install updates on hv-01" in titles and "restart hv-01" in titles
    assert titles[-2:] == ["demote vm-05 back to worker",
                           "health gate: services converged, proxy servers of vm-02, vm-03, "
                           "vm-01 UP"]

    assert [c.level for c in plan.checks if c.name == "moves"] == ["ok"] * sum(
        1 for host in running_on(lab, "web") if host in ("vm-01", "vm-02", "vm-03"))
    specs = service_specs(lab)
    started = time.time()
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS) as load, \
            ReplicaWatch(lab, tmp_path / "watch.jsonl") as replicas, \
            Sampler(lambda: node_roles(lab), 0.5) as roles, \
            Sampler(lambda: winrm_answers(lab, "hv-01"), 0.25) as winrm:
        # as `opsconsole run` does: a guard that fails is checked again, and the run goes on
        # once it clears (without, the engine waits for an operator's key, as in the TUI)
        session.engine.guard_wait = session.inventory.timing.paused_limit
        op = session.engine.start(plan)
        try:
            await asyncio.wait_for(asyncio.shield(op.task), 900)
        except TimeoutError:
            raise AssertionError(f"not done after 900 s: {op.state}; {op.log[-15:]}") from None
        finally:
            print("\n".join(line for line in op.log if "⏸" in line or "⚠" in line))
        assert op.state == DONE, (op.error, op.log[-15:])
    ended = time.time()
    assert_no_user_noticed(load, "host maintenance of hv-01", roles)
    assert_replicas_kept(lab, replicas, specs, {"vm-01", "vm-02", "vm-03"}, op)
    # the host's restart: its WinRM endpoint refused connections for a few seconds, once
    refused = [t for t, up in winrm.timeline if not up]
    assert refused and 2.0 <= refused[-1] - refused[0] < 10, refused
    assert all(up for t, up in winrm.timeline if not refused[0] <= t <= refused[-1])

    # hv-01's VMs went down for real (their dockerd and sshd stopped) and came back
    for name in ("vm-01", "vm-02", "vm-03"):
        events = events_since(lab.vm(name), started)
        assert [(e["event"], e["reason"]) for e in events] == [
            ("halt", "shut down (hyper-v)"), ("boot", "start (hyper-v)")], events
    down_from = max(e["end"] for n in ("vm-01", "vm-02", "vm-03")
                    for e in events_since(lab.vm(n), started) if e["event"] == "halt")
    down_to = min(e["start"] for n in ("vm-01", "vm-02", "vm-03")
                  for e in events_since(lab.vm(n), started) if e["event"] == "boot")
    assert down_from < down_to
    for name in ("vm-04", "vm-05", "vm-06"):                  # hv-02 was left alone
        assert events_since(lab.vm(name), started) == []
    # while hv-01 was dark: the swarm had vm-05 as a manager, and kept working
    dark = roles.between(down_from, down_to)
    assert dark and all(r["vm-05"][0] == "manager" for r in dark)
    assert any(r["vm-01"][1] != "ready" for r in dark)        # the swarm saw its manager go
    # the host installed its updates and restarted (as its WinRM endpoint says now)
    host = winrm_read_host(lab, "hv-01")["host"]
    assert host["uptime_s"] <= ended - started and host["pending_reboot"] is False
    assert winrm_read_host(lab, "hv-02")["host"]["pending_reboot"] is True
    # users who came while hv-01 was dark were served by hv-02's VMs
    dark_users = [u for u in load.users() if down_from < u["first_at"] < down_to]
    assert dark_users and {s for u in dark_users for s in u["servers"]} <= {
        "vm-04", "vm-05", "vm-06"}
    assert_whole(lab)                                         # vm-05 is a worker again
    assert Path(op.report_path).exists()


# ------------------------------------------------------------------ 2. rolling update
async def test_rolling_update_of_every_vm_under_load(ref_lab, ref_console, tmp_path):
    lab, session = ref_lab, ref_console
    snap = await whole(session)
    plan = catalog.build("rolling-update", snap, "cluster", session.inventory.timing,
                         session.window_options)
    assert not plan.refused, plan.checks
    order = ["vm-02", "vm-03", "vm-05", "vm-06", "vm-01", "vm-04"]   # workers first
    assert (plan.params["vms"], plan.params["promote"]) == (order, "vm-02")

    specs = service_specs(lab)
    started = time.time()
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS) as load, \
            ReplicaWatch(lab, tmp_path / "watch.jsonl") as replicas, \
            Sampler(lambda: node_roles(lab), 0.5) as roles:
        # as `opsconsole run` does (see the host maintenance): a guard that fails while Raft
        # elects a leader after a manager's reboot is checked again, not left to a key press
        session.engine.guard_wait = session.inventory.timing.paused_limit
        op = await asyncio.wait_for(session.engine.run(plan), 1200)
        assert op.state == DONE, (op.error, op.log[-15:])
    assert_no_user_noticed(load, "a rolling update of every VM", roles)
    assert_replicas_kept(lab, replicas, specs, set(order), op)

    last = started
    for name in order:
        vm = lab.vm(name)
        (updated,) = updates_since(vm, started)               # the command ran once, in the VM
        events = events_since(vm, started)                    # then the VM's own reboot, once
        assert [(e["event"], e.get("verb") or e["reason"]) for e in events] == [
            ("request", "reboot"), ("halt", "reboot in the VM"), ("boot", "reboot in the VM")]
        assert last < updated < events[0]["requested"]        # one VM after the other
        last = events[-1]["end"]
        assert events[-1]["boot_id"] == vm.boot_id()
    # the stand-in voted while each manager rebooted; a worker again after
    for name in ("vm-01", "vm-04"):
        halt, boot = [e for e in events_since(lab.vm(name), started) if e["event"] != "request"]
        window = roles.between(halt["start"], boot["end"])
        assert window and all(r["vm-02"][0] == "manager" for r in window)
    assert_whole(lab)


# ------------------------------------------------------------------ 3. kill -9 and resume
async def test_a_console_killed_mid_reboot_resumes_to_completion(ref_lab, tmp_path):
    lab = ref_lab
    state = tmp_path / "state"
    inventory = lab.write_inventory(tmp_path / "inventory.toml", state_dir=state)
    targets = ["vm-02", "vm-03"]
    started = time.time()
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS) as load:
        first = cli(inventory, "run", "rolling-update", ",".join(targets), "--yes",
                    out=tmp_path / "run.log")
        # the moment vm-02 asks for its reboot, the console dies: no goodbye, no cleanup
        await until(lambda: any(e["event"] == "request" for e in events_since(lab.vm("vm-02"),
                                                                               started)),
                    "vm-02 to reboot", timeout=300)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        (begin,) = [r for r in journal(state) if r["event"] == "begin"]
        op_id = begin["op"]
        assert not [r for r in journal(state) if r["event"] == "end"]
        # it left its record and its lock; vm-02 drained
        listing = subprocess.run([*CLI, "-i", str(inventory), "journal"], capture_output=True,
                                 text=True, timeout=120)
        assert f"UNFINISHED {op_id}" in listing.stdout, listing
        with lab.manager_client() as c:
            lock = json.loads(c.api.inspect_swarm()["Spec"]["Labels"][LOCK_LABEL])
        assert lock["op"] == op_id
        assert lab.node_states()["vm-02"][1] == "drain"

        resumed = cli(inventory, "resume", op_id, "--yes", out=tmp_path / "resume.log")
        code = await asyncio.to_thread(resumed.wait, 900)
        log = (tmp_path / "resume.log").read_text()
        assert code == 0, log[-3000:]
    assert_no_user_noticed(load, "a rolling update killed and resumed")
    assert "(done before the console restarted; still holds)" in log
    assert [r["state"] for r in journal(state) if r["event"] == "end" and r["op"] == op_id] == \
        ["done"]
    for name in targets:                                      # each exactly once
        vm = lab.vm(name)
        assert len(updates_since(vm, started)) == 1, name
        events = events_since(vm, started)
        assert [e["event"] for e in events] == ["request", "halt", "boot"], (name, events)
    assert_whole(lab)                                         # and the lock is gone


# ------------------------------------------------------------------ 4. two consoles race
async def test_two_consoles_race_for_the_lock_one_runs(ref_lab, tmp_path):
    lab = ref_lab
    runs = {"alice": "vm-03", "bob": "vm-06"}                 # different VMs: only the lock
    started = time.time()                                     # keeps them apart
    with LoadRun(lab.portal_url, tmp_path / "load.json", users=USERS) as load:
        procs = {}
        for user, vm in runs.items():
            inventory = lab.write_inventory(tmp_path / f"{user}.toml",
                                            state_dir=tmp_path / user)
            env = {k: v for k, v in os.environ.items() if k != "SSH_CLIENT"}
            procs[user] = cli(inventory, "run", "rolling-update", vm, "--yes",
                              env={**env, "SUDO_USER": user}, out=tmp_path / f"{user}.log")
        codes = {u: await asyncio.to_thread(p.wait, 600) for u, p in procs.items()}
    assert_no_user_noticed(load, "two consoles racing")
    assert sorted(codes.values()) == [0, 4], codes
    winner = next(u for u, c in codes.items() if c == 0)
    loser = next(u for u, c in codes.items() if c == 4)
    out = (tmp_path / f"{loser}.log").read_text()
    # both run as this machine's account (SUDO_USER is only "reported", never the identity)
    holder = re.search(rf"the cluster is locked by \S+ for "
                       rf"'rolling-update {runs[winner]}' \(operation (\S+)\)", out)
    assert holder, out[-2000:]
    (begin,) = [r for r in journal(tmp_path / winner) if r["event"] == "begin"]
    assert holder.group(1) == begin["op"]                     # the operation that runs
    # the winner's VM was updated and rebooted; the loser's was not touched
    assert [e["event"] for e in events_since(lab.vm(runs[winner]), started)] == \
        ["request", "halt", "boot"]
    assert updates_since(lab.vm(runs[loser]), started) == []
    assert events_since(lab.vm(runs[loser]), started) == []
    assert not [r for r in journal(tmp_path / loser) if r["event"] == "step"
                and r.get("phase") == "start"]
    assert_whole(lab)
