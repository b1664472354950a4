"""Service actions on the sim: scale, restart, image, rollback-service as engine plans --
their guards, runs to converged, undo on abort, and refusal by role."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from unitkit import finish, make_rig, sim_snapshot, until

from opsconsole.ops import catalog
from opsconsole.ops.engine import ABORTED, DONE, FAILED, RUNNING
from opsconsole.ops.guards import OK, WARN
from opsconsole.ops.plans import PlanError, Timing
from opsconsole.ops.roles import MONITOR, ONCALL, RoleError
from opsconsole.ops.services import _update_watch
from opsconsole.providers.sim import SimCluster

FAST = Timing(service_timeout=60)


def rig_on(tmp_path, role="admin", speed: float = 400):
    return make_rig(tmp_path, SimCluster(seed=5, speed=speed), role=role)


def svc(snap, name):
    return snap.service_named(name)


def running(snap, name) -> list:
    s = svc(snap, name)
    return [t for t in snap.tasks_of_service(s.swarm_id) if t.wanted and t.state == "running"]


def checks(plan, level: str) -> list[str]:
    return [c.message for c in plan.checks if c.level == level]


# -- plans and their guards ----------------------------------------------------------------

def test_scale_plan_names_the_change_and_waits_for_convergence(sim):
    snap = sim_snapshot(sim)
    plan = catalog.build("scale", snap, "api=6", FAST)
    assert [s.title for s in plan.steps] == [
        "scale api from 4 to 6 replica(s)", "wait until api runs 6 task(s) (60s)"]
    assert plan.steps[0].undo is not None and plan.steps[1].wait
    assert "2 new task(s) of api have room" in checks(plan, OK)
    assert not plan.typed and not plan.refused


@pytest.mark.parametrize("target", ["api=0", "api=1"])
def test_scaling_to_zero_or_below_its_spread_needs_a_typed_confirmation(sim, target):
    snap = sim_snapshot(sim)
    spans = {t.node_id for t in running(snap, "api")}
    assert len(spans) > 1
    plan = catalog.build("scale", snap, target, FAST)
    assert plan.typed
    warned = " ".join(checks(plan, WARN))
    assert ("stops every task of api" in warned) if target == "api=0" else \
        (f"fewer nodes than the {len(spans)} it spans now" in warned)


def test_scaling_past_capacity_is_refused_unless_forced(sim):
    snap = sim_snapshot(sim)      # api: at most 2 per node on 6 nodes
    plan = catalog.build("scale", snap, "api=13", FAST)
    [refusal] = plan.refused
    assert refusal.name == "capacity" and "1 of 9 new task(s) of api would have nowhere " \
        "to run" in refusal.message and "max 2 per node" in refusal.message
    forced = catalog.build("scale", snap, "api=13", FAST, force=True)
    assert not forced.refused and any("overridden by force" in m for m in checks(forced, WARN))


@pytest.mark.parametrize(("kind", "target", "says"), [
    ("scale", "api", "expected SERVICE=N"),
    ("scale", "api=-1", "replicas must be a whole number from 0"),
    ("scale", "api=lots", "not 'lots'"),
    ("scale", "api=²", "not '²'"),
    ("scale", "api=9999999", "replicas must be a whole number"),
    ("scale", "portail=3", "portail is a global service"),
    ("scale", "api=4", "api already has 4 replica(s)"),
    ("scale", "nope=3", "no service named 'nope' (known: api, db,"),
    ("image", "api=Bad Image", "is not an image reference"),
    ("image", "api=x;rm -rf /", "is not an image reference"),
    ("image", "api=registry.lab/api:1.4.2", "api already runs registry.lab/api:1.4.2"),
    ("restart", "nope", "no service named 'nope'"),
    ("rollback-service", "", "no service named ''"),
])
def test_bad_targets_are_refused_with_words_naming_what(sim, kind, target, says):
    with pytest.raises(PlanError) as e:
        catalog.build(kind, sim_snapshot(sim), target, FAST)
    assert says in str(e.value)


def test_image_accepts_tags_registries_with_ports_and_digests(sim):
    snap = sim_snapshot(sim)
    digest = "sha256:" + "a" * 64
    for image in ("nginx:1.27", "registry.lab:5000/team/web:2.0", f"busybox@{digest}",
                  f"registry.lab/api:2@{digest}"):
        plan = catalog.build("image", snap, f"api={image}", FAST)
        assert plan.steps[0].title == f"set the image of api to {image} " \
            "(was registry.lab/api:1.4.2)"


def test_a_service_with_one_task_warns_it_may_be_down_while_restarted(sim):
    plan = catalog.build("restart", sim_snapshot(sim), "reports", FAST)
    assert any("reports has one task" in m for m in checks(plan, WARN))


# -- runs: converged, audited, undone -------------------------------------------------------

async def test_scale_up_and_down_run_until_converged(tmp_path):
    rig = rig_on(tmp_path)
    for target, count in (("api=6", 6), ("api=2", 2)):
        op = await asyncio.wait_for(rig.engine.run(
            catalog.build("scale", await rig.snapshot(), target, FAST)), 30)
        assert op.state == DONE, op.error
        snap = await rig.snapshot()
        assert svc(snap, "api").replicas == count and len(running(snap, "api")) == count
        assert snap.converged(svc(snap, "api"))
    audited = [(r["action"], r["result"]) for r in rig.audit.read()
               if r["action"] == "scale service"]
    assert audited == [("scale service", "started"), ("scale service", "ok")] * 2


async def test_restart_replaces_every_task_and_reports_progress(tmp_path):
    rig = rig_on(tmp_path)
    before = {t.swarm_id for t in running(await rig.snapshot(), "worker")}
    op = await asyncio.wait_for(rig.engine.run(
        catalog.build("restart", await rig.snapshot(), "worker", FAST)), 30)
    assert op.state == DONE, op.error
    snap = await rig.snapshot()
    after = {t.swarm_id for t in running(snap, "worker")}
    assert len(after) == 3 and not before & after
    assert svc(snap, "worker").update_state == "completed"
    assert ("restart service", "ok") in [(r["action"], r["result"]) for r in rig.audit.read()]


async def test_image_then_swarms_rollback(tmp_path):
    rig = rig_on(tmp_path)
    op = await asyncio.wait_for(rig.engine.run(catalog.build(
        "image", await rig.snapshot(), "worker=registry.lab/worker:2.0", FAST)), 30)
    assert op.state == DONE, op.error
    assert svc(await rig.snapshot(), "worker").image == "registry.lab/worker:2.0"
    op = await asyncio.wait_for(rig.engine.run(catalog.build(
        "rollback-service", await rig.snapshot(), "worker", FAST)), 30)
    assert op.state == DONE, op.error
    snap = await rig.snapshot()
    assert svc(snap, "worker").image == "registry.lab/worker:1.4.2"
    assert svc(snap, "worker").update_state == "rollback_completed"
    assert snap.converged(svc(snap, "worker"))


async def test_abort_scales_back(tmp_path):
    rig = rig_on(tmp_path, speed=20)
    op = rig.engine.start(catalog.build("scale", await rig.snapshot(), "api=6", FAST))
    await until(lambda: op.index == 1 and op.state == RUNNING, what="the wait")
    assert rig.sim.services[svc(await rig.snapshot(), "api").swarm_id].replicas == 6
    rig.engine.abort(op)
    await finish(rig.sim, op.task, 10)
    assert op.state == ABORTED and not op.unfinished
    assert svc(await rig.snapshot(), "api").replicas == 4
    assert any("undid: scale api from 4 to 6" in line for line in op.log)


async def test_abort_sets_the_image_back(tmp_path):
    rig = rig_on(tmp_path, speed=20)
    op = rig.engine.start(catalog.build(
        "image", await rig.snapshot(), "worker=registry.lab/worker:2.0", FAST))
    await until(lambda: op.index == 1 and op.state == RUNNING, what="the wait")
    rig.engine.abort(op)
    await finish(rig.sim, op.task, 10)
    assert op.state == ABORTED
    assert svc(await rig.snapshot(), "worker").image == "registry.lab/worker:1.4.2"


async def test_a_paused_update_fails_with_swarms_words(tmp_path):
    rig = rig_on(tmp_path, speed=5)
    op = rig.engine.start(catalog.build(
        "image", await rig.snapshot(), "worker=registry.lab/worker:2.0", FAST))
    await until(lambda: op.index == 1, what="the wait")
    sid = svc(await rig.snapshot(), "worker").swarm_id
    rig.sim.services[sid] = replace(rig.sim.services[sid], update_state="paused",
                                    update_message="update paused due to failure")
    await finish(rig.sim, op.task, 10)
    assert op.state == FAILED and op.unfinished
    assert "Swarm paused the update of worker (paused): update paused due to failure" \
        in op.error and "rollback-service worker" in op.error


def test_the_watch_never_ends_before_swarm_begins_the_update(sim):
    snap = sim_snapshot(sim)
    said = []
    probe = _update_watch(lambda *a: said.append(a), "worker",
                          svc(snap, "worker").update_started, frozenset(), rollback=False)
    assert probe(snap) == "Swarm has not begun the update yet"   # "completed" is old news
    sim.set_image(svc(snap, "worker").swarm_id, "registry.lab/worker:2.0")
    assert probe(sim_snapshot(sim)).startswith("update updating")


def test_an_update_swarm_rolled_back_is_a_failure(sim):
    snap = sim_snapshot(sim)
    probe = _update_watch(lambda *a: None, "worker", "", frozenset(), rollback=False)
    sid = svc(snap, "worker").swarm_id
    sim.services[sid] = replace(sim.services[sid], update_state="rollback_completed",
                                update_started="t1")
    with pytest.raises(Exception, match="Swarm rolled the update of worker back"):
        probe(sim_snapshot(sim))


def test_rollback_without_a_previous_spec_is_refused_by_swarm(sim):
    from opsconsole.providers.base import ProviderError
    with pytest.raises(ProviderError, match="no previous spec"):
        sim.rollback_service(svc(sim_snapshot(sim), "worker").swarm_id)


# -- roles ----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", [MONITOR, ONCALL])
@pytest.mark.parametrize(("kind", "target"), [
    ("scale", "api=6"), ("restart", "worker"), ("image", "worker=busybox:1"),
    ("rollback-service", "worker")])
async def test_only_an_admin_changes_services(tmp_path, role, kind, target):
    rig = rig_on(tmp_path, role=role)
    before = (await rig.snapshot()).services
    plan = catalog.build(kind, await rig.snapshot(), target, FAST)
    with pytest.raises(RoleError, match="read-only" if role == MONITOR else "needs admin"):
        rig.engine.start(plan)
    assert rig.engine.operations == [] and list(rig.journal.read()) == []
    assert (await rig.snapshot()).services == before
    [refusal] = rig.audit.read()
    assert refusal["action"] == kind and refusal["result"].startswith("refused")


# -- an unfinished service action, rolled back --------------------------------------------

async def _unfinished(rig, kind: str, target: str):
    """The action run until its change is made, then the console 'dies' (interrupted)."""
    op = rig.engine.start(catalog.build(kind, await rig.snapshot(), target, FAST))
    await until(lambda: op.index == 1 and op.state == RUNNING, what="the wait")
    rig.engine.interrupt(op, "console killed")
    with pytest.raises(asyncio.CancelledError):
        await op.task
    [record] = [r for r in rig.journal.unfinished() if r.op == op.id]
    return record


@pytest.mark.parametrize(("kind", "target", "back"), [
    ("scale", "api=6", lambda s: s.replicas == 4),
    ("image", "worker=registry.lab/worker:2.0", lambda s: s.image == "registry.lab/worker:1.4.2"),
])
async def test_rolling_back_an_unfinished_service_action_puts_it_back(tmp_path, kind, target,
                                                                      back):
    rig = rig_on(tmp_path, speed=20)
    record = await _unfinished(rig, kind, target)
    from opsconsole.ops.records import RUNNING_HERE
    RUNNING_HERE.discard(record.op)
    record = next(r for r in rig.journal.unfinished() if r.op == record.op)
    plan = catalog.rollback(record, await rig.snapshot())
    assert plan.kind == "rollback" and plan.params["takes_over"] == record.op
    op = await asyncio.wait_for(rig.engine.run(plan), 30)
    assert op.state == DONE, op.error
    name = target.partition("=")[0]
    assert back(svc(await rig.snapshot(), name))
    assert not [r for r in rig.journal.unfinished() if r.op == record.op]


async def test_an_unfinished_restart_has_nothing_to_put_back_and_says_so(tmp_path):
    rig = rig_on(tmp_path, speed=20)
    record = await _unfinished(rig, "restart", "worker")
    with pytest.raises(PlanError, match="rollback-service worker`; abandon closes"):
        catalog.rollback(record, await rig.snapshot())
