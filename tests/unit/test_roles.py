"""Roles: the role × operation matrix comes from the registry and the engine enforces it;
every refusal is audited with the role; an operation the registry does not list needs
admin."""
from __future__ import annotations

import pytest
from unitkit import access, finish, make_rig

from opsconsole.model import Lock
from opsconsole.ops import catalog, registry
from opsconsole.ops.engine import RUNNING, Operation, Plan, Step
from opsconsole.ops.maintenance import WindowOptions
from opsconsole.ops.plans import Timing
from opsconsole.ops.records import OpRecord
from opsconsole.ops.roles import ADMIN, MONITOR, ONCALL, ROLES, RoleError, lowest, role_named
from opsconsole.providers.sim import SimCluster

A_TARGET = {"node": "vm-02", "host": "hv-02", "vms": "vm-02",
            "service": "worker", "replicas": "api=5", "image": "worker=registry.lab/worker:2.0"}
# What the issue asks of each role, written out: the registry must say the same.
EXPECTED = {
    "cordon": ONCALL, "drain": ONCALL, "activate": ONCALL, "maintenance": ONCALL,
    "rolling-update": ONCALL, "pause": ONCALL, "abort": ONCALL, "resume": ONCALL,
    "rollback": ONCALL, "abandon": ADMIN, "unlock": ADMIN, "access": ADMIN,
    "filter": MONITOR, "audit": MONITOR, "help": MONITOR, "theme": MONITOR, "quit": MONITOR,
    "scale": ADMIN, "restart": ADMIN, "image": ADMIN, "rollback-service": ADMIN,
    "logs": MONITOR, "inspect": MONITOR, "copy": MONITOR, "problems": MONITOR,
    "resilience": MONITOR,
}


def test_the_registry_gives_every_operation_and_key_its_role():
    assert registry.PERMISSIONS == EXPECTED
    for key in registry.KEYS.values():     # what changes anything is never for a monitor
        assert not key.mutating or key.role != MONITOR, key.id


@pytest.mark.parametrize("role", ROLES)
def test_matrix(role):
    a = access(role)
    allowed = {name for name in registry.PERMISSIONS if a.allows(name)}
    expected = {name for name, needed in EXPECTED.items()
                if ROLES.index(role) >= ROLES.index(needed)}
    assert allowed == expected
    assert a.read_only == (role == MONITOR)
    assert a.allows("something-new") == (role == ADMIN)    # not in the registry: admin only
    assert a.needs("something-new") == ADMIN


def test_role_words_and_the_lowest_wins():
    assert role_named("oncall") == ONCALL
    with pytest.raises(ValueError, match="unknown role 'root' \\(one of monitor, oncall, admin"):
        role_named("root")
    assert lowest(ADMIN, MONITOR) == MONITOR and lowest(ONCALL, ADMIN) == ONCALL


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", list(registry.OPERATIONS))
async def test_engine_starts_an_operation_only_for_a_role_that_may(name, role, tmp_path):
    sim = SimCluster(seed=3, speed=200)
    rig = make_rig(tmp_path, sim, role=role)
    snap = await rig.snapshot()
    plan = catalog.build(name, snap, A_TARGET[registry.OPERATIONS[name].targets], Timing(),
                         WindowOptions(update_command="true"))
    if registry.PERMISSIONS[name] != MONITOR and role == MONITOR:
        with pytest.raises(RoleError, match="read-only mode \\(role monitor\\)"):
            rig.engine.start(plan)
        assert rig.engine.operations == [] and list(rig.journal.read()) == []
        [refusal] = rig.audit.read()
        assert (refusal["action"], refusal["result"], refusal["role"]) == (
            name, "refused: read-only", MONITOR)
        return
    if registry.PERMISSIONS[name] == ADMIN and role == ONCALL:     # service actions
        with pytest.raises(RoleError, match=f"role oncall may not {name} .*\\(needs admin\\)"):
            rig.engine.start(plan)
        assert rig.engine.operations == [] and list(rig.journal.read()) == []
        [refusal] = rig.audit.read()
        assert (refusal["action"], refusal["result"], refusal["role"]) == (
            name, "refused: needs admin", ONCALL)
        return
    op = rig.engine.start(plan)         # else oncall and admin may run the keyed operation
    assert op.task is not None
    rig.engine.abort(op)
    await finish(sim, op.task, 30)
    assert [r for r in rig.audit.read() if r["result"].startswith("refused")] == []


@pytest.mark.parametrize("role", ROLES)
async def test_pause_abort_follow_the_registry(role, tmp_path):
    rig = make_rig(tmp_path, SimCluster(seed=3), role=role)
    op = Operation(catalog.build("cordon", await rig.snapshot(), "vm-02"))
    op.state = RUNNING
    for call, name in ((rig.engine.pause, "pause"), (rig.engine.resume, "pause"),
                       (rig.engine.abort, "abort")):
        if access(role).allows(name):
            call(op)
        else:
            with pytest.raises(RoleError):
                call(op)
    assert op._abort == (role != MONITOR)


@pytest.mark.parametrize("role", ROLES)
async def test_unlock_and_abandon_need_admin(role, tmp_path):
    sim = SimCluster(seed=3)
    rig = make_rig(tmp_path, sim, role=role)
    lock = Lock("someone@elsewhere", "op-1", "drain vm-02", 0.0)
    await sim.providers().swarm.take_lock(lock)
    record = OpRecord("op-1", "drain", "vm-02", who="someone@elsewhere")
    for call in (lambda: rig.engine.unlock(lock), lambda: rig.engine.abandon(record, lock)):
        if role == ADMIN:
            await call()
        else:
            with pytest.raises(RoleError, match="needs admin|read-only"):
                await call()
    assert (sim.lock is None) == (role == ADMIN)
    refused = [r for r in rig.audit.read() if r["result"].startswith("refused")]
    assert len(refused) == (0 if role == ADMIN else 2)
    if role == ONCALL:
        assert {r["result"] for r in refused} == {"refused: needs admin"}
        assert {r["action"] for r in refused} == {"break the operation lock", "abandon"}


async def test_a_plan_the_registry_does_not_know_needs_admin(tmp_path):
    async def nothing(ctx) -> None:
        return None
    plan = Plan("mystery", "vm-02", [Step("do nothing", nothing)])
    oncall = make_rig(tmp_path / "oncall", SimCluster(seed=3), role=ONCALL)
    with pytest.raises(RoleError, match="role oncall may not mystery vm-02 \\(needs admin\\)"):
        oncall.engine.start(plan)
    admin = make_rig(tmp_path / "admin", SimCluster(seed=3), role=ADMIN)
    assert admin.engine.start(plan).task is not None


async def test_resuming_needs_the_resume_role_too(tmp_path):
    rig = make_rig(tmp_path, SimCluster(seed=3), role=MONITOR)
    snap = await rig.snapshot()
    plan = catalog.build("cordon", snap, "vm-02")
    record = OpRecord("op-1", "cordon", plan.target, keys=[s.key for s in plan.steps])
    with pytest.raises(RoleError):
        rig.engine.start(plan, resume=record)
    assert [r["action"] for r in rig.audit.read()] == ["cordon"]
