"""Service actions against the real swarm (issue 13): scale, restart, image change and
Swarm's rollback of `web`, each through the engine as the console runs them, each ending
only once the real service has converged; what is asserted is read from a lab manager.

NOT RUN by the engineer who wrote it (the lab belonged to someone else then): the lead
runs it with `python3 -m pytest -q tests/lab/test_service_actions.py`.
"""
from __future__ import annotations

import asyncio

import pytest

from opsconsole.ops.catalog import build
from opsconsole.ops.engine import DONE
from opsconsole.ops.plans import Timing
from opsconsole.ops.roles import RoleError
from opsconsole.session import open_session

from .labkit import WAIT, running_on, swarm_picture, whole
from .swarm_lab import IMAGE

SERVICE = Timing(service_timeout=120.0)
SECOND_TAG = IMAGE.rsplit(":", 1)[0] + ":2"       # the lab's busybox, tagged again


def web_spec(lab) -> dict:
    _, services, _ = swarm_picture(lab)
    return next(s for s in services if s["Spec"]["Name"] == "web")


@pytest.fixture
def web_back(lab):
    """Whatever a test did to web, its replicas and image are put back after it."""
    before = web_spec(lab)["Spec"]
    yield
    with lab.manager_client() as c:
        svc = c.services.get("web")
        svc.reload()
        if svc.attrs["Spec"] != before:     # the spec as it was, at the version now
            c.api._raise_for_status(c.api._post_json(
                c.api._url("/services/{0}/update", svc.id), data=before,
                params={"version": svc.attrs["Version"]["Index"]}))


async def run(console, kind: str, target: str):
    plan = build(kind, await whole(console), target, SERVICE)
    assert not plan.refused, plan.refused
    op = await asyncio.wait_for(console.engine.run(plan), WAIT)
    assert op.state == DONE, f"{op.title}: {op.error}\n" + "\n".join(op.log[-15:])
    return op


async def test_scale_up_and_back_ends_converged(lab, console, web_back):
    replicas = web_spec(lab)["Spec"]["Mode"]["Replicated"]["Replicas"]
    await run(console, "scale", f"web={replicas + 1}")
    assert len(running_on(lab, "web")) == replicas + 1
    await run(console, "scale", f"web={replicas}")
    assert len(running_on(lab, "web")) == replicas


async def test_scaling_past_max_per_node_is_refused_before_anything(lab, console, web_back):
    nodes = len(swarm_picture(lab)[0])
    plan = build("scale", await whole(console), f"web={nodes + 1}", SERVICE)   # max 1 per node
    assert [c.name for c in plan.refused] == ["capacity"]


async def test_restart_replaces_every_task(lab, console, web_back):
    before = set(running_on(lab, "web").values())
    await run(console, "restart", "web")
    after = set(running_on(lab, "web").values())
    assert len(after) == len(before) and not before & after
    assert web_spec(lab)["UpdateStatus"]["State"] == "completed"


async def test_image_change_then_swarms_rollback(lab, console, web_back):
    for vm in lab.vms:                  # a second tag of the same busybox on every VM
        with lab.client(vm.name) as c:
            c.images.get(IMAGE).tag(SECOND_TAG)
    await run(console, "image", f"web={SECOND_TAG}")
    image = web_spec(lab)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert image.split("@")[0] == SECOND_TAG
    await run(console, "rollback-service", "web")
    spec = web_spec(lab)
    assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0] == IMAGE
    assert spec["UpdateStatus"]["State"] == "rollback_completed"


@pytest.mark.parametrize("role", ["monitor", "oncall"])
async def test_only_an_admin_may(lab, inventory, web_back, role):
    session = open_session(inventory, role=role)
    try:
        plan = build("scale", await whole(session), "web=1", SERVICE)
        before = web_spec(lab)["Spec"]
        with pytest.raises(RoleError):
            session.engine.start(plan)
        assert web_spec(lab)["Spec"] == before
    finally:
        await session.providers.close()
