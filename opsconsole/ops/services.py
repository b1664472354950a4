"""Service actions as plans: scale, restart, change image, roll back (Swarm's own).

Each plan is one change of the service's spec (Swarm then rolls it out by the service's
update config) and one wait that ends only when the service has converged: for an update,
once Swarm's UpdateStatus says a new update began and has completed, every task runs and
none is starting or stopping. A paused or rolled-back update fails the wait with Swarm's
words. Scale and image have an undo (the count or image from before), run by abort.

Targets: `web` (restart, rollback-service), `web=3` (scale), `web=nginx:1.27` (image).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from ..config import Timing
from ..model import RUNNING, Service, Snapshot
from ..placement import Load, best_node, why_unplaceable
from .engine import Context, Effect, Plan, Probe, Step, StepFailed
from .guards import FAIL, OK, WARN, Check, Risk, forced
from .plans import PlanError

PAUSED_STATES = ("paused", "rollback_paused")
IMAGE_MAX = 512
# a reference as `docker service update --image` takes it: [registry/]name[:tag][@digest]
IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[0-9]+/[a-z0-9._/-]+)?(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?"
                   r"(@sha256:[0-9a-f]{64})?")


def split_target(target: str, what: str) -> tuple[str, str]:
    """"web=3" -> ("web", "3"); PlanError naming the expected form when there is no value."""
    name, sep, value = target.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise PlanError(f"{target!r}: expected SERVICE={what}")
    return name.strip(), value.strip()


def find_service(snap: Snapshot, name: str) -> Service:
    service = snap.service_named(name)
    if service is None:
        known = ", ".join(sorted(s.name for s in snap.services)) or "none"
        raise PlanError(f"no service named {name!r} (known: {known})")
    return service


def _spans(snap: Snapshot, service: Service) -> set[str]:
    """The nodes its running tasks are on now."""
    return {t.node_id for t in snap.tasks_of_service(service.swarm_id)
            if t.wanted and t.state == RUNNING and t.node_id}


def _service_now(snap: Snapshot, name: str) -> Service:
    now = snap.service_named(name)
    if now is None:
        raise StepFailed(f"service {name} is gone")
    return now


def _converge(name: str, probe: Callable[[Context], Probe], timing: Timing,
              what: str) -> Step:
    """Wait until the probe made for this run holds (None) and the service has converged."""
    async def run(ctx: Context) -> None:
        first = probe(ctx)

        def pending(snap: Snapshot) -> str | None:
            return first(snap) or snap.unconverged(_service_now(snap, name)) or None
        await ctx.wait_for(what, pending, timing.service_timeout, hypervisor=False)
    return Step(f"wait until {what} ({timing.service_timeout:.0f}s)", run,
                key=f"converged:{name}", effect=Effect(f"service:{name}"), wait=True)


def _update_watch(ctx_say: Callable[[str, float], None], name: str, before: str,
                  old_tasks: frozenset[str], rollback: bool) -> Probe:
    """Swarm's UpdateStatus: a new update began (StartedAt moved), how far it is, and its
    end. Paused, or rolled back when this was no rollback: StepFailed with Swarm's words."""
    def probe(snap: Snapshot) -> str | None:
        svc = _service_now(snap, name)
        if svc.update_started == before:
            return "Swarm has not begun the update yet"
        said = f": {svc.update_message}" if svc.update_message else ""
        if svc.update_state in PAUSED_STATES:
            raise StepFailed(f"Swarm paused the update of {name} ({svc.update_state}){said}; "
                             f"`opsconsole run rollback-service {name}` goes back")
        if not rollback and svc.update_state.startswith("rollback"):
            raise StepFailed(f"Swarm rolled the update of {name} back "
                             f"({svc.update_state}){said}")
        wanted = [t for t in snap.tasks_of_service(svc.swarm_id) if t.wanted]
        if old_tasks:
            left = sum(1 for t in wanted if t.swarm_id in old_tasks)
            done = len(old_tasks) - left
            ctx_say(f"{svc.update_state or 'updating'} {done}/{len(old_tasks)} replaced",
                    done / len(old_tasks))
        if svc.update_state != ("rollback_completed" if rollback else "completed"):
            return f"update {svc.update_state or 'not reported'}{said}"
        return None
    return probe


def _checks_now(snap: Snapshot, service: Service) -> list[Check]:
    checks = [Check("service", OK, f"{service.name}: {service.mode}, image {service.image}")]
    why = snap.unconverged(service)
    if why:
        checks.append(Check("service", WARN, f"{service.name} has not converged now ({why}): "
                            "this change replaces what is under way"))
    return checks


def scale(snap: Snapshot, target: str, timing: Timing, params: dict, force: bool) -> Plan:
    name, value = split_target(target, "N (a number of replicas)")
    service = find_service(snap, name)
    if not re.fullmatch(r"[0-9]{1,6}", value):      # not str.isdigit: "²" is a digit too
        raise PlanError(f"scale {target}: replicas must be a whole number from 0 "
                        f"(e.g. {name}=3), not {value!r}")
    replicas = int(value)
    if service.mode != "replicated":
        raise PlanError(f"{name} is a {service.mode} service: it runs one task per node and "
                        "cannot be scaled")
    was = int(params.get("replicas_was", service.replicas))
    if replicas == service.replicas and "replicas_was" not in params:
        raise PlanError(f"{name} already has {replicas} replica(s)")
    checks = _checks_now(snap, service)
    spans = _spans(snap, service)
    typed = False
    if replicas == 0:
        typed = True
        checks.append(Check("stops", WARN, f"{name}=0 stops every task of {name}: it serves "
                            "nothing until scaled up again"))
    elif replicas < len(spans):
        typed = True
        checks.append(Check("spread", WARN, f"{replicas} task(s) of {name} on fewer nodes than "
                            f"the {len(spans)} it spans now: a node loss takes more of it"))
    if replicas > service.replicas:
        checks.append(_room(snap, service, replicas - service.replicas))

    async def to(ctx: Context, count: int) -> None:
        now = _service_now(await ctx.current(), name)
        if now.replicas == count:
            ctx.log(f"{name} already has {count} replica(s)")
            return
        await ctx.actions.scale_service(now.swarm_id, count)

    def holds(s: Snapshot) -> str | None:
        now = s.service_named(name)
        return None if now is not None and now.replicas == replicas else \
            f"{name} does not have {replicas} replica(s)"

    step = Step(f"scale {name} from {was} to {replicas} replica(s)",
                lambda ctx: to(ctx, replicas), lambda ctx: to(ctx, was),
                key=f"scale:{name}:{replicas}", risk=Risk(),
                effect=Effect(f"service:{name}", holds))
    plan = Plan("scale", target, [step, _converge(name, lambda ctx: holds, timing,
                                                  f"{name} runs {replicas} task(s)")],
                forced(checks) if force else checks, force=force,
                params={"replicas_was": was}, typed=typed)
    return plan


def _room(snap: Snapshot, service: Service, extra: int) -> Check:
    """Whether `extra` more tasks have a node each (as Swarm's scheduler would place them)."""
    load = Load.of(snap)
    for placed in range(extra):
        node = best_node(snap.nodes, service, load)
        if node is None:
            why = why_unplaceable(snap.nodes, service, load)
            return Check("capacity", FAIL, f"{extra - placed} of {extra} new task(s) of "
                         f"{service.name} would have nowhere to run: {why}",
                         fix="scale to fewer or free capacity (--force starts it anyway: it then "
                         "times out naming the tasks left pending)")
        load.add(node.swarm_id, service)
    return Check("capacity", OK, f"{extra} new task(s) of {service.name} have room")


def _rollout(snap: Snapshot, name: str, kind: str, title: str, send: Callable,
             timing: Timing, params: dict, rollback: bool, checks: list[Check],
             undo: Callable | None = None, effect: Effect | None = None,
             target: str = "") -> Plan:
    """One spec change that Swarm rolls out, then the watch of its UpdateStatus."""
    service = find_service(snap, name)
    before = str(params.get("update_started", service.update_started))
    old = frozenset(t.swarm_id for t in snap.tasks_of_service(service.swarm_id) if t.wanted)

    async def run(ctx: Context) -> None:
        await send(ctx, _service_now(await ctx.current(), name).swarm_id)

    steps = [Step(title, run, undo, key=f"{kind}:{name}", risk=Risk(), effect=effect),
             _converge(name, lambda ctx: _update_watch(ctx.say, name, before, old, rollback),
                       timing, f"Swarm's update of {name} has completed and converged")]
    if len(old) == 1 and service.mode == "replicated" and not rollback:
        checks.append(Check("spread", WARN, f"{name} has one task: it may be down while it "
                            "is replaced (unless its update config starts the new one first)"))
    return Plan(kind, target or name, steps, checks, params={"update_started": before})


def restart(snap: Snapshot, target: str, timing: Timing, params: dict) -> Plan:
    service = find_service(snap, target)
    return _rollout(snap, target, "restart", f"restart {target}: Swarm replaces every task "
                    "(force update, by its update config)",
                    lambda ctx, sid: ctx.actions.restart_service(sid), timing, params,
                    rollback=False, checks=_checks_now(snap, service))


def image(snap: Snapshot, target: str, timing: Timing, params: dict) -> Plan:
    name, wanted = split_target(target, "IMAGE")
    service = find_service(snap, name)
    if len(wanted) > IMAGE_MAX or not IMAGE.fullmatch(wanted):
        raise PlanError(f"image {target}: {wanted[:80]!r} is not an image reference "
                        "([registry/]name[:tag][@sha256:digest], lower case)")
    was = str(params.get("image_was", service.image))
    if wanted.split("@")[0] == service.image and "image_was" not in params:
        raise PlanError(f"{name} already runs {service.image}")

    def runs(image: str) -> Callable[[Snapshot], str | None]:
        def holds(s: Snapshot) -> str | None:
            now = s.service_named(name)
            return None if now is not None and now.image == image.split("@")[0] else \
                f"{name} does not run {image}"
        return holds

    async def back(ctx: Context) -> None:
        now = _service_now(await ctx.current(), name)
        if now.image != was:
            await ctx.actions.set_image(now.swarm_id, was)
    plan = _rollout(snap, name, "image", f"set the image of {name} to {wanted} (was {was})",
                    lambda ctx, sid: ctx.actions.set_image(sid, wanted), timing, params,
                    rollback=False, checks=_checks_now(snap, service), undo=back,
                    effect=Effect(f"image:{name}", runs(wanted)), target=target)
    plan.params["image_was"] = was
    return plan


def rollback_service(snap: Snapshot, target: str, timing: Timing, params: dict) -> Plan:
    service = find_service(snap, target)
    checks = _checks_now(snap, service)
    if service.update_state.startswith("rollback"):
        checks.append(Check("rollback", WARN, f"{target}'s last change was a rollback: rolling "
                            "back again returns to the spec it replaced"))
    return _rollout(snap, target, "rollback-service", f"roll {target} back to its previous "
                    "spec (Swarm's rollback)",
                    lambda ctx, sid: ctx.actions.rollback_service(sid), timing, params,
                    rollback=True, checks=checks)


def put_back(kind: str, target: str, params: dict, snap: Snapshot, timing: Timing) -> list[Step]:
    """The steps that roll back an unfinished service action: the replica count or the
    image from before it, until converged. A restart or a Swarm rollback changed no spec
    of the console's to put back: PlanError saying what to do instead."""
    name = target.partition("=")[0]
    if kind == "scale" and "replicas_was" in params:
        return scale(snap, f"{name}={params['replicas_was']}", timing,
                     {"replicas_was": params["replicas_was"]}, force=True).steps
    if kind == "image" and params.get("image_was"):
        was, now = str(params["image_was"]), find_service(snap, name).image
        if now == was.split("@")[0]:     # back already
            return [_converge(name, lambda ctx: lambda s: None, timing, f"{name} has converged")]
        return image(snap, f"{name}={was}", timing, {"image_was": now}).steps
    raise PlanError(f"{kind} {target} changed nothing the console can put back: Swarm's own "
                    f"rollback is `run rollback-service {name}`; abandon closes the operation")
