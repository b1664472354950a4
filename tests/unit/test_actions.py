"""actions: every mutating call refuses in read-only mode (the monitor role), is registered,
and is audited with who did it."""
from __future__ import annotations

import inspect
import json
import os
import pwd
import socket

import pytest
from unitkit import access, comparable, make_rig

from opsconsole.ops.actions import MUTATING, Actions, mutating
from opsconsole.ops.records import Audit, JsonLines
from opsconsole.ops.roles import Identity, RoleError
from opsconsole.providers.base import ProviderError, Providers


def unregistered(cls: type) -> set[str]:
    """Public coroutine methods of `cls` that are not in the MUTATING registry."""
    public = {name for name, fn in inspect.getmembers(cls, inspect.iscoroutinefunction)
              if not name.startswith("_")}
    return public - set(MUTATING)


def test_registry_covers_every_public_coroutine_of_actions():
    assert unregistered(Actions) == set()
    # and names nothing that does not exist
    for name in MUTATING:
        assert inspect.iscoroutinefunction(getattr(Actions, name)), name
    assert len(MUTATING) == len(set(MUTATING)), "a method registered twice"


def test_registry_check_catches_a_new_unregistered_method():
    class Extended(Actions):
        async def delete_everything(self, target: str) -> None:  # not @mutating
            pass

        @mutating("harmless")
        async def registered_one(self, target: str) -> None:
            pass

    try:
        assert unregistered(Extended) == {"delete_everything"}
    finally:
        MUTATING.remove("registered_one")


def real_args(snap, name: str) -> list:
    """Arguments that would really change the sim if the refusal were missing."""
    worker = next(n for n in snap.nodes if n.role == "worker")
    svc = next(s for s in snap.services if s.mode == "replicated")
    return {
        "set_availability": [worker.swarm_id, "drain"],
        "set_role": [worker.swarm_id, "manager"],
        "rebalance": [svc.swarm_id],
        "restart_service": [svc.swarm_id],
        "scale_service": [svc.swarm_id, svc.replicas + 2],
        "set_image": [svc.swarm_id, "registry.lab/other:9"],
        "rollback_service": [svc.swarm_id],
        "set_server_state": ["portail/vm-01", "maint"],
        "stop_vm": ["vm-02", 30.0],
        "start_vm": ["vm-06"],                      # stopped by power_off_vm_06
        "restart_host": ["hv-02"],
        "run_command": ["vm-01", "uptime", 5.0],
    }.get(name) or generic_args(name)


def generic_args(name: str) -> list:
    params = list(inspect.signature(getattr(Actions, name)).parameters.values())[1:]
    return [1.0 if "timeout" in p.name else "x" for p in params
            if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]


def power_off_vm_06(sim, clock) -> None:
    sim.stop_vm("vm-06", force=True)
    clock.advance(10)
    sim.advance()
    assert sim.vms["vm-06"].state == "off"


@pytest.mark.parametrize("name", MUTATING)
async def test_every_mutating_action_refuses_in_read_only(name, sim, clock, tmp_path):
    power_off_vm_06(sim, clock)
    rig = make_rig(tmp_path, sim, read_only=True)
    before = comparable(await rig.snapshot())
    events_before = len(sim._events)
    args = real_args(before, name)
    with pytest.raises(RoleError) as e:
        await getattr(rig.actions, name)(*args)
    assert "read-only" in str(e.value) and str(args[0]) in str(e.value)
    # nothing changed and nothing was scheduled to change
    assert comparable(await rig.snapshot()) == before
    assert len(sim._events) == events_before
    # the refusal is on record
    [rec] = list(rig.audit.read())
    assert rec["target"] == str(args[0])
    assert rec["result"] == "refused: read-only"
    assert rec["who"] == Identity.local().who and rec["via"] == "local account"
    assert rec["role"] == "monitor"
    assert rec["action"]


async def test_same_calls_do_change_the_sim_when_not_read_only(sim, clock, tmp_path):
    """The refusal test above is only meaningful if these calls do change things."""
    power_off_vm_06(sim, clock)
    rig = make_rig(tmp_path, sim, read_only=False)
    snap = await rig.snapshot()
    events = len(sim._events)
    for name in ("set_availability", "set_role", "set_server_state", "stop_vm", "start_vm",
                 "rebalance", "scale_service", "set_image"):
        await getattr(rig.actions, name)(*real_args(snap, name))
    after = await rig.snapshot()
    svc = next(s for s in snap.services if s.mode == "replicated")
    assert after.service(svc.swarm_id).replicas == svc.replicas + 2
    assert after.service(svc.swarm_id).image == "registry.lab/other:9"
    assert after.get("vm:vm-06").state == "starting"
    assert len(sim._events) > events                    # rebalance/stop/start scheduled work
    worker = next(n for n in snap.nodes if n.role == "worker")
    assert after.get(worker.id).availability == "drain"
    assert after.get(worker.id).role == "manager"
    assert after.get("proxy:portail/vm-01").status == "MAINT"
    assert after.get("vm:vm-02").state == "stopping"


async def test_audit_records_attempt_and_outcome(sim, tmp_path):
    rig = make_rig(tmp_path, sim)
    node = (await rig.snapshot()).node_named("vm-04")
    await rig.actions.set_availability(node.swarm_id, "pause")
    with pytest.raises(ProviderError, match="No such server"):
        await rig.actions.set_server_state("portail/vm-77", "drain")
    recs = list(rig.audit.read())
    assert [(r["action"], r["target"], r["result"]) for r in recs] == [
        ("set availability", node.swarm_id, "started"),
        ("set availability", node.swarm_id, "ok"),
        ("set proxy server state", "portail/vm-77", "started"),
        ("set proxy server state", "portail/vm-77", "failed: No such server: portail/vm-77"),
    ]
    assert recs[1]["args"] == ["pause"]
    assert all(r["who"] == Identity.local().who and isinstance(r["time"], float) for r in recs)
    assert sim.nodes[node.swarm_id].availability == "pause"


async def test_missing_provider_is_a_provider_error_and_audited(tmp_path, sim):
    providers = Providers(sim.providers().swarm)          # no hypervisor, proxy or shell
    audit = Audit(tmp_path / "audit.jsonl")
    acts = Actions(providers, audit, access())
    with pytest.raises(ProviderError, match="no hypervisor is configured"):
        await acts.stop_vm("vm-01", 10.0)
    with pytest.raises(ProviderError, match="no proxy is configured"):
        await acts.set_server_state("portail/vm-01", "drain")
    results = [r["result"] for r in audit.read()]
    assert results[1].startswith("failed: no hypervisor")
    assert sim.vms["vm-01"].state == "running"


async def test_run_command_streams_lines_and_fails_on_stopped_vm(tmp_path):
    from opsconsole.providers.sim import SimCluster
    sim = SimCluster(seed=2, speed=200)
    rig = make_rig(tmp_path, sim)
    lines: list[str] = []
    await rig.actions.run_command("vm-01", "uptime", 5.0, lines.append)
    assert lines[0] == "$ uptime" and len(lines) == 2
    sim.vms["vm-02"] = sim.vms["vm-02"].__class__(**{**sim.vms["vm-02"].__dict__,
                                                     "state": "off"})
    with pytest.raises(ProviderError, match="port 22"):
        await rig.actions.run_command("vm-02", "uptime", 5.0)
    assert list(rig.audit.read())[-1]["result"].startswith("failed: vm-02")


# -- records ---------------------------------------------------------------------------------

def test_who_is_the_local_account_and_what_the_environment_claims_is_only_reported(
        monkeypatch, tmp_path):
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setenv("SSH_CLIENT", "203.0.113.9 52100 22")
    monkeypatch.setenv("USER", "alice")         # getpass.getuser() would believe these
    monkeypatch.setenv("LOGNAME", "alice")
    me = Identity.local()
    account = pwd.getpwuid(os.getuid()).pw_name
    assert me.who == f"{account}@{socket.gethostname()}" != f"alice@{socket.gethostname()}"
    assert me.via == "local account"
    assert me.reported == "SUDO_USER=alice, SSH_CLIENT=203.0.113.9"
    audit = Audit(tmp_path / "audit.jsonl", me)
    audit.record("set availability", "n1", "ok")
    [rec] = audit.read()
    assert (rec["who"], rec["via"], rec["reported"]) == (me.who, "local account", me.reported)
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.delenv("SSH_CLIENT")
    assert "reported" not in Identity.local().fields()


def test_who_through_ssh_entry_is_the_forced_commands_user_and_key(monkeypatch, tmp_path):
    monkeypatch.setenv("SUDO_USER", "mallory")
    them = Identity.ssh("alice", key="SHA256:abc")
    audit = Audit(tmp_path / "audit.jsonl", them)
    audit.record("set availability", "n1", "ok")
    [rec] = audit.read()
    assert rec["who"] == "alice" and rec["key"] == "SHA256:abc"
    assert rec["via"] == f"ssh-entry as {pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"
    assert rec["reported"] == "SUDO_USER=mallory"


def test_json_lines_are_fsynced_one_record_per_line(tmp_path, monkeypatch):
    synced = []
    orig = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), orig(fd))[1])
    log = JsonLines(tmp_path / "sub" / "x.jsonl")        # parent created on demand
    log.append({"a": 1})
    log.append({"b": "two\nlines"})
    assert len(synced) == 2
    text = (tmp_path / "sub" / "x.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2
    recs = [json.loads(line) for line in text.splitlines()]
    assert recs[0]["a"] == 1 and recs[1]["b"] == "two\nlines"
    assert list(log.read()) == recs
    assert (tmp_path / "sub" / "x.jsonl").stat().st_mode & 0o777 == 0o600


def test_reading_a_missing_file_yields_nothing(tmp_path):
    assert list(JsonLines(tmp_path / "nope.jsonl").read()) == []
