"""Runs operations: a list of steps, one at a time, with pause, resume, abort.

Each step is journaled before it starts and after it ends (fsynced), so a
console that dies mid-operation leaves a record of exactly where it was.
Guards are checked again before every step; one that fails pauses the
operation and says why. Abort stops the current step at its next wait and
undoes the finished steps that have an undo, newest first.
"""
from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from ..cluster import Cluster
from ..model import Lock, Snapshot
from ..providers.base import ProviderError
from .actions import Actions, ReadOnlyError
from .guards import Check, failures
from .records import Journal, who

PENDING, RUNNING, PAUSED, DONE, FAILED, ABORTED = (
    "pending", "running", "paused", "done", "failed", "aborted")
FINISHED = (DONE, FAILED, ABORTED)
POLL_S = 0.5        # waits poll this often between Swarm events,
POLL_FAST_S = 0.2   # or this often when a poll needs no WinRM round trip
CLOSING = "cancelled (console closing)"
REUSE_S = 1.0       # a snapshot this young serves a step's checks, if nothing changed since


class Aborted(Exception):
    pass


class StepFailed(Exception):
    """A step could not finish; the message says what is still pending."""


@dataclass
class Step:
    title: str
    run: Callable[["Context"], Awaitable[None]]
    undo: Callable[["Context"], Awaitable[None]] | None = None
    group: str = ""     # steps of one unit (a VM): retried together, failed together


@dataclass
class Plan:
    kind: str                       # cordon | drain | activate | ...
    target: str                     # what the operator named (vm-03)
    steps: list[Step]
    checks: list[Check] = field(default_factory=list)
    guard: Callable[[Snapshot], list[Check]] | None = None   # re-run before each step
    retries: int = 0                # per group, before the group counts as failed
    failure_budget: int = 0         # failed groups tolerated before the operation fails
    time_limit: float = 0.0         # seconds for the whole operation; 0 = none
    params: dict = field(default_factory=dict)   # what rebuilds this plan (for resume)
    report: bool = False            # write a markdown report at the end

    @property
    def refused(self) -> list[Check]:
        return failures(self.checks)


_ids = itertools.count(1)


def _new_id() -> str:
    """Unique across consoles too: the cluster lock tells operations apart by id."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{next(_ids)}-{secrets.token_hex(3)}"


@dataclass
class Operation:
    plan: Plan
    id: str = field(default_factory=_new_id)
    state: str = PENDING
    index: int = 0                  # the step running now, or next
    step_progress: float = 0.0      # 0..1 within the current step, when it can tell
    detail: str = ""                # the current step's latest word ("4 tasks left")
    log: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    error: str = ""
    task: asyncio.Task | None = None
    begun: int = 0                  # how many steps have started (undo covers these)
    skip: frozenset[int] = frozenset()   # steps an earlier console finished (resume)
    failed_groups: list[str] = field(default_factory=list)
    report_path: str = ""
    notes: dict[str, object] = field(default_factory=dict)   # "step:key" -> what a step kept
    times: dict[int, list[float]] = field(default_factory=dict)   # step -> [start, end]
    _resume: asyncio.Event = field(default_factory=asyncio.Event)
    _poke: asyncio.Event = field(default_factory=asyncio.Event)   # pause/abort wake waits
    _abort: bool = False

    @property
    def title(self) -> str:
        return f"{self.plan.kind} {self.plan.target}"

    @property
    def progress(self) -> float:
        n = len(self.plan.steps) or 1
        if self.state == DONE:
            return 1.0
        return min(1.0, (self.index + self.step_progress) / n)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started if self.started else 0.0

    def units(self) -> list[tuple[str, str]]:
        """(group, done | failed | current | pending) for each VM of a window, in order."""
        failed = {f.split(":", 1)[0] for f in self.failed_groups}
        out: dict[str, str] = {}
        for i, step in enumerate(self.plan.steps):
            if not step.group:
                continue
            if step.group in failed:
                status = "failed"
            elif i == self.index and self.state not in FINISHED:
                status = "current"
            elif i < self.index or self.state == DONE:
                status = "done"
            else:
                status = "pending"
            before = out.get(step.group)
            # a group is done only when all its steps are; current wins over the rest
            if before in ("failed", "current") or (before == "pending" and status == "done"):
                continue
            out[step.group] = status
        return list(out.items())

    @property
    def current_step(self) -> str:
        steps = self.plan.steps
        return steps[self.index].title if self.index < len(steps) else ""


class Context:
    """What a step gets: the actions, fresh snapshots, a log, and waits that obey pause/abort."""

    def __init__(self, engine: "Engine", op: Operation) -> None:
        self.engine, self.op = engine, op
        self.actions = engine.actions
        self._seen: tuple[int, float, Snapshot] = (-1, 0.0, Snapshot())

    def log(self, line: str) -> None:
        self.op.log.append(f"{time.strftime('%H:%M:%S')} {line}")
        self.engine.changed(self.op)

    def say(self, detail: str, progress: float | None = None) -> None:
        self.op.detail = detail
        if progress is not None:
            self.op.step_progress = max(0.0, min(1.0, progress))
        self.engine.changed(self.op)

    async def snapshot(self, hypervisor: bool = True) -> Snapshot:
        snap = await self.engine.cluster.snapshot(hypervisor)
        self._seen = (self.actions.generation, time.monotonic(), snap)
        return snap

    async def current(self) -> Snapshot:
        """The cluster now, for a step's own checks of nodes, tasks and proxy servers: the
        last snapshot when it is under REUSE_S old and this console changed nothing since,
        else a new one. (Its hosts and VMs may be older: see `wait_for`.)"""
        generation, at, snap = self._seen
        if generation == self.actions.generation and time.monotonic() - at < REUSE_S:
            return snap
        return await self.snapshot()

    def remember(self, key: str, value: object) -> None:
        """Journal a fact this step needs if it is run again after a crash."""
        self.op.notes[f"{self.op.index}:{key}"] = value
        self.engine.journal.append({"event": "note", "op": self.op.id, "index": self.op.index,
                                    "key": key, "value": value})

    def recall(self, key: str) -> object | None:
        """What this step remembered in an earlier run (a console that died), if anything."""
        return self.op.notes.get(f"{self.op.index}:{key}")

    async def checkpoint(self) -> None:
        """Where pause and abort take effect inside a step."""
        if self.op._abort:
            raise Aborted()
        while self.op.state == PAUSED:
            self.op._resume.clear()
            await self.op._resume.wait()
            if self.op._abort:
                raise Aborted()

    async def wait_for(self, what: str, probe: Callable[[Snapshot], str | None],
                       timeout: float, hypervisor: bool = True) -> Snapshot:
        """Poll until `probe` returns None (done); else it returns what is pending.

        Wakes on Swarm events, else polls: every POLL_S, or POLL_FAST_S when
        the probe needs no hosts or VMs (`hypervisor=False`: no WinRM round
        trip, so a poll is cheap). Time spent paused does not count against
        the timeout. On timeout, StepFailed names what is pending.
        """
        budget = timeout
        while True:
            await self.checkpoint()
            t0 = time.monotonic()
            snap = await self.snapshot(hypervisor)
            pending = probe(snap)
            if pending is None:
                return snap
            self.say(pending)
            if budget <= 0:
                raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}: {pending}")
            await self._until_change(min(POLL_S if hypervisor else POLL_FAST_S, budget))
            budget -= time.monotonic() - t0

    async def _until_change(self, timeout: float) -> None:
        """A cluster event, or the operator pressing pause/abort, ends the wait early."""
        self.op._poke.clear()
        change = asyncio.ensure_future(
            self.engine.cluster.providers.swarm.wait_for_change(timeout))
        poke = asyncio.ensure_future(self.op._poke.wait())
        try:
            await asyncio.wait((change, poke), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (change, poke):
                f.cancel()


class Engine:
    def __init__(self, cluster: Cluster, actions: Actions, journal: Journal,
                 on_change: Callable[[Operation], None] | None = None) -> None:
        self.cluster, self.actions, self.journal = cluster, actions, journal
        self.operations: list[Operation] = []
        self.on_change = on_change or (lambda op: None)   # front ends set who hears

    @property
    def read_only(self) -> bool:
        return self.actions.read_only

    def changed(self, op: Operation) -> None:
        self.on_change(op)

    @property
    def running(self) -> Operation | None:
        # PENDING too: an operation started but not yet scheduled already holds the slot
        return next((o for o in self.operations if o.state in (PENDING, RUNNING, PAUSED)), None)

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(what)

    def start(self, plan: Plan, resume: dict | None = None) -> Operation:
        """Start a plan in the background; refuses read-only, unsafe plans, overlaps.

        `resume` is an unfinished operation's journal record: the plan carries
        on under the same id (and lock), skipping the steps it finished.
        """
        self._refuse_if_read_only(f"{plan.kind} {plan.target}")
        if plan.refused:
            raise StepFailed("refused by guards: " + "; ".join(c.message for c in plan.refused))
        if self.running:
            raise StepFailed(f"another operation is running: {self.running.title}")
        if resume is not None:
            if resume.get("steps") != [s.title for s in plan.steps]:
                raise StepFailed(f"cannot resume {resume.get('op')}: the plan made now differs "
                                 "from the one recorded; roll it back instead")
            op = Operation(plan, id=resume["op"], skip=frozenset(resume.get("done_steps", [])),
                           notes=dict(resume.get("notes", {})))
        else:
            op = Operation(plan)
        self.operations.append(op)
        op.task = asyncio.get_running_loop().create_task(self._run(op), name=op.title)
        return op

    async def run(self, plan: Plan, resume: dict | None = None) -> Operation:
        """Start and wait for the end (the CLI's way)."""
        op = self.start(plan, resume)
        assert op.task
        await op.task
        return op

    def pause(self, op: Operation) -> None:
        self._refuse_if_read_only("pause an operation")
        if op.state == RUNNING:
            op.state = PAUSED
            op._poke.set()
            self._note(op, "paused by operator")

    def resume(self, op: Operation) -> None:
        self._refuse_if_read_only("resume an operation")
        if op.state == PAUSED:
            op.state = RUNNING
            op._resume.set()
            self._note(op, "resumed by operator")

    def abort(self, op: Operation) -> None:
        self._refuse_if_read_only("abort an operation")
        if op.state in FINISHED:
            return
        op._abort = True
        op._resume.set()
        op._poke.set()
        self._note(op, "abort requested")

    def _note(self, op: Operation, line: str) -> None:
        Context(self, op).log(line)

    async def _run(self, op: Operation) -> None:
        ctx = Context(self, op)
        plan = op.plan
        op.state, op.started = RUNNING, time.monotonic()
        self.journal.append({"event": "begin", "op": op.id, "kind": plan.kind,
                             "target": plan.target, "who": who(), "params": plan.params,
                             "steps": [s.title for s in plan.steps]})
        ctx.log(f"start {op.title}: {len(plan.steps)} steps")
        swarm = self.cluster.providers.swarm
        locked = False
        takes_over = plan.params.get("takes_over")
        try:
            held = await swarm.read_lock()
            if held is not None and takes_over and held.op == takes_over:
                ctx.log(f"taking over the lock of {takes_over} from {held.holder}")
                await swarm.break_lock()
            await swarm.take_lock(Lock(who(), op.id, op.title, time.time()))
            locked = True
            await self._steps(ctx)
            op.index = len(plan.steps)
            op.state = DONE
            if takes_over:      # the operation this one rolled back is closed now
                self.journal.append({"event": "end", "op": takes_over, "state": "rolled back",
                                     "error": f"rolled back by {op.id}"})
        except Aborted:
            op.state = ABORTED
            ctx.log("aborted; restoring what can be restored")
            await self._undo(ctx)
        except (StepFailed, ProviderError, ReadOnlyError, asyncio.TimeoutError) as e:
            op.state, op.error = FAILED, str(e) or type(e).__name__
            self.journal.append({"event": "step", "op": op.id, "index": op.index,
                                 "phase": "failed", "error": op.error})
            ctx.log(f"✘ {op.error}")
        except asyncio.CancelledError:
            op.state, op.error = ABORTED, CLOSING
            raise
        finally:
            # a console closing mid-run keeps the lock and leaves no end: the journal says
            # where it stopped, and the next start offers to resume or roll it back
            closing = op.error == CLOSING
            if locked and not closing:
                try:     # a killed console keeps the lock: the journal explains it
                    await swarm.release_lock(op.id)
                except ProviderError as e:
                    ctx.log(f"⚠ could not release the cluster lock: {e}")
            op.finished = time.monotonic()
            if not closing:
                self.journal.append({"event": "end", "op": op.id, "state": op.state,
                                     "error": op.error, "failed": op.failed_groups})
            ctx.log(f"{op.state} after {op.elapsed:.1f}s")
            if plan.report:
                self._write_report(op)
            self.changed(op)

    def _write_report(self, op: Operation) -> None:
        from .report import markdown
        folder = self.journal.path.parent / "reports"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{op.id}.md"
            path.write_text(markdown(op, who()))
            op.report_path = str(path)
        except OSError as e:
            op.log.append(f"⚠ could not write the report: {e}")

    async def _steps(self, ctx: Context) -> None:
        """Run the steps in order; a failing step of a group retries or skips its group."""
        op, plan = ctx.op, ctx.op.plan
        attempts: dict[str, int] = {}
        i = 0
        while i < len(plan.steps):
            op.index, step = i, plan.steps[i]
            if i in op.skip:
                ctx.log(f"✔ {step.title} (done before the console restarted)")
                i += 1
                continue
            if plan.time_limit and op.elapsed > plan.time_limit:
                raise StepFailed(f"time limit of {plan.time_limit:.0f}s reached before "
                                 f"step {i + 1}: {step.title}")
            op.step_progress, op.detail = 0.0, ""
            await self._guard(ctx)
            await ctx.checkpoint()
            self.journal.append({"event": "step", "op": op.id, "index": i,
                                 "title": step.title, "phase": "start"})
            op.begun = max(op.begun, i + 1)
            op.times[i] = [time.monotonic()]
            ctx.log(f"▶ {step.title}")
            try:
                await step.run(ctx)
            except (StepFailed, ProviderError, asyncio.TimeoutError) as e:
                if not step.group:
                    raise
                i = self._group_failed(ctx, step, str(e) or type(e).__name__, attempts)
                continue
            op.times[i].append(time.monotonic())
            self.journal.append({"event": "step", "op": op.id, "index": i,
                                 "title": step.title, "phase": "done"})
            ctx.log(f"✔ {step.title}")
            i += 1

    def _group_failed(self, ctx: Context, step: Step, error: str,
                      attempts: dict[str, int]) -> int:
        """Where to go on after a group's step failed: its start again, or past it."""
        op, plan = ctx.op, ctx.op.plan
        members = [k for k, s in enumerate(plan.steps) if s.group == step.group]
        self.journal.append({"event": "step", "op": op.id, "index": op.index,
                             "phase": "failed", "error": error, "group": step.group})
        n = attempts[step.group] = attempts.get(step.group, 0) + 1
        if n <= plan.retries:
            ctx.log(f"✘ {step.title}: {error}; retrying {step.group} ({n}/{plan.retries})")
            return members[0]
        op.failed_groups.append(f"{step.group}: {error}")
        ctx.log(f"✘ {step.group} failed: {error} "
                f"({len(op.failed_groups)} failed, {plan.failure_budget} allowed)")
        if len(op.failed_groups) > plan.failure_budget:
            raise StepFailed("failure budget exceeded: " + "; ".join(op.failed_groups))
        return members[-1] + 1

    async def _guard(self, ctx: Context) -> None:
        """Re-check the plan's guards; a failure pauses until resumed or aborted."""
        guard = ctx.op.plan.guard
        while guard:
            bad = failures(guard(await ctx.current()))
            if not bad:
                return
            ctx.op.state = PAUSED
            ctx.log("paused by guard: " + "; ".join(c.message for c in bad))
            await ctx.checkpoint()

    async def _undo(self, ctx: Context) -> None:
        op = ctx.op
        op._abort = False
        op.state = ABORTED
        done = op.plan.steps[:op.begun]
        not_restored = []
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                await step.undo(ctx)
                ctx.log(f"↺ undid: {step.title}")
            except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the rest
                not_restored.append(f"{step.title}: {e}")
        if not_restored:
            op.error = "could not restore: " + "; ".join(not_restored)
            ctx.log(op.error)
