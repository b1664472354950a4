"""Runs operations: a list of steps, one at a time, with pause, resume, abort.

Each step is journaled before it starts and after it ends (fsynced), so a
console that dies mid-operation leaves a record of exactly where it was; a
record that cannot be written stops the operation before its next change.
Before every step that takes something out of service, the guards run on a
snapshot read for that step; one that fails (or cannot tell) pauses the
operation and says why. A failure after the console changed anything leaves
the operation unfinished (resumable, rollback-able) and the cluster lock held.
Abort stops the current step at its next wait and undoes the finished steps
that have an undo, newest first.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..cluster import Cluster
from ..model import DOWN, HYPERV, PROXY, SERVER_READY, SWARM, Lock, ProxyServer, Snapshot
from ..model import RUNNING as TASK_RUNNING
from ..providers.base import LockHeld, ProviderError
from .actions import Actions
from .guards import Check, Risk, before_step, failures, forced, moved_now, scaled_originals
from .records import HEARTBEAT_S, RUNNING_HERE, Journal, OpRecord, write_private
from .report import markdown
from .roles import Access, RoleError

PENDING, RUNNING, PAUSED, DONE, FAILED, ABORTED, INTERRUPTED = (
    "pending", "running", "paused", "done", "failed", "aborted", "interrupted")
FINISHED = (DONE, FAILED, ABORTED, INTERRUPTED)     # no longer running (maybe unfinished)
GUARD_RECHECK_S = 2.0   # a guard that paused an operation is looked at again this often
LOCK_BEAT_S = 15.0      # the cluster lock's heartbeat (other machines see the console live)
POLL_S = 0.5        # waits poll this often between Swarm events,
POLL_FAST_S = 0.2   # or this often when a poll needs no WinRM round trip
CLOSING = "cancelled (console closing)"
REUSE_S = 1.0       # a snapshot this young serves a step's checks, if nothing changed since


Probe = Callable[[Snapshot], str | None]    # None: done (or holds); else what is pending
Run = Callable[["Context"], Awaitable[None]]


class Aborted(Exception):
    pass


class StepFailed(Exception):
    """A step could not finish; the message says what is still pending."""


class Unreadable(StepFailed):
    """A wait ran out of time while a system it needs could not be read."""


@dataclass(frozen=True)
class Effect:
    """What a finished step leaves true, checked again on resume.

    `subject` names what it sets (availability of vm-03, power of vm-03...): a
    later finished step on the same subject supersedes it. `holds` says why the
    effect no longer holds, or None; a wait has none (it is run again instead).
    """
    subject: str
    holds: Callable[[Snapshot], str | None] | None = None


@dataclass
class Step:
    title: str
    run: Callable[[Context], Awaitable[None]]
    undo: Callable[[Context], Awaitable[None]] | None = None
    group: str = ""     # steps of one unit (a VM): retried together, failed together
    key: str = ""       # stable across consoles: how resume matches recorded steps
    risk: Risk | None = None        # what it takes out of service: guards run before it
    effect: Effect | None = None    # what it leaves true: resume verifies it
    wait: bool = False              # a wait: on resume, run again rather than trusted

    def __post_init__(self) -> None:
        self.key = self.key or self.title


@dataclass
class Plan:
    kind: str                       # cordon | drain | activate | ...
    target: str                     # what the operator named (vm-03)
    steps: list[Step]
    checks: list[Check] = field(default_factory=list)
    force: bool = False             # capacity refusals are warnings (before each step too)
    retries: int = 0                # per group, before the group counts as failed
    failure_budget: int = 0         # failed groups tolerated before the operation fails
    time_limit: float = 0.0         # seconds for the whole operation; 0 = none
    params: dict = field(default_factory=dict)   # what rebuilds this plan (for resume)
    report: bool = False            # write a markdown report at the end
    typed: bool = False             # this plan is risky: confirmed by typing its target

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for step in self.steps:     # keys are unique within a plan
            n = seen[step.key] = seen.get(step.key, 0) + 1
            if n > 1:
                step.key = f"{step.key}#{n}"

    @property
    def refused(self) -> list[Check]:
        return failures(self.checks)


_ids = itertools.count(1)


def _new_id() -> str:
    """Unique across consoles too: the cluster lock tells operations apart by id."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{next(_ids)}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Waiting:
    """A wait in progress, for the front ends' progress lines: what for, how long so far of
    how long at most (paused time left out), and what is still pending ("4 tasks left")."""
    what: str
    used: float
    limit: float
    pending: str


@dataclass
class Operation:
    plan: Plan
    id: str = field(default_factory=_new_id)
    state: str = PENDING
    index: int = 0                  # the step running now, or next
    step_progress: float = 0.0      # 0..1 within the current step, when it can tell
    detail: str = ""                # the current step's latest word ("4 tasks left")
    waiting: Waiting | None = None  # the wait in progress, if any
    log: list[str] = field(default_factory=list)
    started: float = 0.0            # monotonic
    since: float = 0.0              # epoch seconds it started (the lock says so)
    finished: float = 0.0
    error: str = ""
    task: asyncio.Task | None = None
    begun: int = 0                  # how many steps have started (undo covers these)
    skip: frozenset[int] = frozenset()   # steps an earlier console finished (resume)
    resumed: OpRecord | None = None      # the journal's record, when resuming
    unfinished: bool = False        # stopped, but stays in the journal: resume or roll back
    proxy_held: dict[str, str] = field(default_factory=dict)   # "be/srv" -> state it set
    failures: dict[str, str] = field(default_factory=dict)   # failed group (VM) -> its error
    report_path: str = ""
    notes: dict[str, object] = field(default_factory=dict)   # "step:key" -> what a step kept
    times: dict[int, list[float]] = field(default_factory=dict)   # step -> [start, end]
    # replicated service -> (lowest running, desired then): sampled on every read
    floor: dict[str, tuple[int, int]] = field(default_factory=dict)
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

    @property
    def failed_groups(self) -> list[str]:
        """The failed groups in words ("vm-03: timed out"), for the journal and the report."""
        return [f"{group}: {error}" for group, error in self.failures.items()]

    def units(self) -> list[tuple[str, str]]:
        """(group, done | failed | current | pending) for each VM of a window, in order."""
        failed = self.failures
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

    def __init__(self, engine: Engine, op: Operation) -> None:
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
        self.sample_floor(snap)
        if self.op.proxy_held and not snap.unreadable(PROXY):
            await self.hold_proxy(snap)
        self._seen = (self.actions.generation, time.monotonic(), snap)
        return snap

    def hold(self, server: str, state: str) -> None:
        """This operation wants `server` in `state` from now on (kept across a HAProxy
        restart unless ready); the newest word wins over what older operations held."""
        for other in self.engine.operations:
            other.proxy_held.pop(server, None)
        if state != SERVER_READY:
            self.op.proxy_held[server] = state

    async def hold_proxy(self, snap: Snapshot) -> None:
        """HAProxy forgets runtime states when it restarts: while this operation holds a
        server out, what it set is set again (audited, and said in the log)."""
        for server, state in list(self.op.proxy_held.items()):
            now = snap.server(server)
            if isinstance(now, ProxyServer) and now.admin != state:
                restarted = getattr(self.engine.cluster.providers.proxy, "restarted_at", 0.0)
                at = time.strftime('%H:%M:%S', time.localtime(restarted))
                why = f"HAProxy restarted at {at}" if restarted else "someone changed it"
                self.log(f"⚠ {server} is {now.admin}, this operation holds it {state} ({why}): "
                         "setting it again")
                await self.actions.set_server_state(server, state)

    async def current(self) -> Snapshot:
        """The cluster now, for a step's own checks of nodes, tasks and proxy servers: the
        last snapshot when it is under REUSE_S old and this console changed nothing since,
        else a new one. (Its hosts and VMs may be older: see `wait_for`.)"""
        generation, at, snap = self._seen
        if generation == self.actions.generation and time.monotonic() - at < REUSE_S \
                and not snap.problems:
            return snap
        return await self.snapshot()

    def remember(self, key: str, value: object) -> None:
        """Journal a fact this step needs if it is run again after a crash."""
        self.engine.journal.note(self.op.id, self.op.index, key, value)
        self.op.notes[f"{self.op.index}:{key}"] = value

    def recall(self, key: str) -> object | None:
        """What this step remembered in an earlier run (a console that died), if anything."""
        return self.op.notes.get(f"{self.op.index}:{key}")

    def recall_of(self, step_key: str, key: str) -> object | None:
        """What another step of this operation remembered (by the step's key)."""
        index = next((i for i, s in enumerate(self.op.plan.steps) if s.key == step_key), -1)
        return self.op.notes.get(f"{index}:{key}")

    def moved(self, snap: Snapshot) -> dict[str, int]:
        """Tasks this operation already replaced on a node it drains, per service."""
        return moved_now(self.op.notes, snap)

    def sample_floor(self, snap: Snapshot) -> None:
        """The replica floor: each replicated service's running tasks against its desired
        count, the lowest seen; a count this operation raised counts as its original."""
        if snap.unreadable(SWARM):
            return
        originals = {sid: original for sid, (original, _) in
                     scaled_originals(self.op.notes).items()}
        down = {n.swarm_id for n in snap.nodes if n.state == DOWN}
        for svc in snap.services:
            if svc.mode != "replicated":
                continue
            # a task on a node that is down is not running; one on a node a new Raft leader
            # does not know yet (unknown) still is
            running = sum(1 for t in snap.tasks if t.service_id == svc.swarm_id and t.wanted
                          and t.state == TASK_RUNNING and t.node_id not in down)
            desired = min(svc.replicas, originals.get(svc.swarm_id, svc.replicas))
            low = self.op.floor.get(svc.name)
            if low is None or running - desired < low[0] - low[1]:
                self.op.floor[svc.name] = (running, desired)

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
                       timeout: float, hypervisor: bool = True,
                       needs: tuple[str, ...] = (SWARM,), hold: float = 0.0) -> Snapshot:
        """Poll until `probe` returns None (done); else it returns what is pending.

        Only data read now counts: while a system in `needs` (or the hypervisor,
        when read) cannot be read, the condition is unknown, never met; the log
        says since when, and the wait goes on until its timeout (Unreadable).
        `hold`: the condition must stay met this long (a settle time).
        Wakes on Swarm events, else polls: every POLL_S, or POLL_FAST_S when the
        probe needs no hosts or VMs (`hypervisor=False`: no WinRM round trip).
        Time spent paused does not count against the timeout.
        """
        sources = needs + ((HYPERV,) if hypervisor else ())
        try:
            return await self._wait(what, probe, timeout, hypervisor, sources, hold)
        finally:
            self.op.waiting = None

    async def _wait(self, what: str, probe: Callable[[Snapshot], str | None], timeout: float,
                    hypervisor: bool, sources: tuple[str, ...], hold: float) -> Snapshot:
        budget, met_since, blind = timeout, 0.0, ""
        while True:
            await self.checkpoint()
            t0 = time.monotonic()
            snap = await self.snapshot(hypervisor)
            unknown = snap.unreadable(*sources)
            if unknown:
                p = unknown[0]
                pending = (f"{p.source} unreachable since "
                           f"{time.strftime('%H:%M:%S', time.localtime(p.since))}: {p.message}")
                if blind != p.source:
                    self.log(f"⚠ {pending}; not going on until it answers")
                blind, met_since = p.source, 0.0
            else:
                if blind:
                    self.log(f"{blind} answers again")
                    blind = ""
                found = probe(snap)
                if found is None:
                    met_since = met_since or t0
                    if t0 - met_since >= hold:
                        return snap
                    pending = f"holding {hold:.0f}s to be sure"
                else:
                    pending, met_since = found, 0.0
            self.op.waiting = Waiting(what, timeout - budget, timeout, pending)
            self.say(pending)
            if budget <= 0:
                raise (Unreadable if unknown else StepFailed)(
                    f"timed out after {timeout:.0f}s waiting for {what}: {pending}")
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
    def __init__(self, cluster: Cluster, actions: Actions, journal: Journal) -> None:
        self.cluster, self.actions, self.journal = cluster, actions, journal
        self.operations: list[Operation] = []
        self._listeners: list[Callable[[Operation], object]] = []
        # None: a guard pause waits for the operator (TUI). A number (headless): the
        # guard is re-checked and the run goes on once it clears, or stops unfinished
        # after this many seconds.
        self.guard_wait: float | None = None
        # The front end's keys for "pause" and "abort" as the operator sees them (the TUI's
        # live, remapped bindings), for the hints; none headless.
        self.keys: dict[str, str] = {}

    @property
    def read_only(self) -> bool:
        return self.actions.read_only

    @property
    def access(self) -> Access:
        return self.actions.access

    @property
    def who(self) -> str:
        return self.access.identity.who

    def listen(self, listener: Callable[[Operation], object]) -> Callable[[], None]:
        """Hear every change of every operation (front ends, tests); returns the way to stop."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def changed(self, op: Operation) -> None:
        """Tell the listeners; what one does wrong never reaches the operation."""
        for listener in list(self._listeners):
            try:
                listener(op)
            except Exception as e:  # noqa: BLE001 - a front end's failure must not stop a run
                op.log.append(f"⚠ the front end failed to show this: {_describe(e)}")

    @property
    def running(self) -> Operation | None:
        # PENDING too: an operation started but not yet scheduled already holds the slot
        return next((o for o in self.operations if o.state in (PENDING, RUNNING, PAUSED)), None)

    def require(self, name: str, verb: str, target: str = "") -> None:
        """RoleError (audited) unless this console's role may do the registry's operation
        `name`; an operation the registry does not list needs admin."""
        self.actions.require(self.access.needs(name), verb, target)

    def start(self, plan: Plan, resume: OpRecord | None = None) -> Operation:
        """Start a plan in the background; refuses read-only, unsafe plans, overlaps.

        `resume` is an unfinished operation's journal record: the plan carries
        on under the same id (and lock), skipping the steps it finished whose
        effect still holds on the cluster (checked when it starts).
        """
        self.require(plan.kind, plan.kind, plan.target)
        if resume is not None:
            self.require("resume", "resume", resume.op)
        if plan.refused:
            raise StepFailed("refused by guards: " + "; ".join(c.text for c in plan.refused))
        if self.running:
            raise StepFailed(f"another operation is running: {self.running.title}")
        if resume is not None:
            refusal = resume_refusal(plan, resume)
            if refusal:
                raise StepFailed(refusal)
            op = Operation(plan, id=resume.op, resumed=resume, notes=dict(resume.notes))
        else:
            op = Operation(plan)
        self.operations.append(op)
        op.task = asyncio.get_running_loop().create_task(self._run(op), name=op.title)
        return op

    async def run(self, plan: Plan, resume: OpRecord | None = None) -> Operation:
        """Start and wait for the end (the CLI's way)."""
        op = self.start(plan, resume)
        assert op.task
        await op.task
        return op

    def pause(self, op: Operation) -> None:
        self.require("pause", "pause", op.title)
        if op.state == RUNNING:
            op.state = PAUSED
            op._poke.set()
            self._note(op, "paused by operator")

    def resume(self, op: Operation) -> None:
        self.require("pause", "resume", op.title)
        if op.state == PAUSED:
            op.state = RUNNING
            op._resume.set()
            self._note(op, "resumed by operator")

    def abort(self, op: Operation) -> None:
        self.require("abort", "abort", op.title)
        if op.state in FINISHED:
            return
        op._abort = True
        op._resume.set()
        op._poke.set()
        self._note(op, "abort requested")

    def interrupt(self, op: Operation, why: str) -> None:
        """The console is being stopped (a signal): the operation stays unfinished."""
        if op.task is not None and not op.task.done():
            op.error = why
            op.task.cancel()

    async def keep_holds(self, snap: Snapshot) -> None:
        """Proxy servers that finished operations of this console left out (a VM that failed
        its update stays drained; an unfinished run) are kept out: HAProxy forgets on restart.
        A front end calls this with each snapshot it reads; errors are said in that log."""
        if snap.unreadable(PROXY) or self.read_only:
            return
        for op in self.operations:
            if op.state in FINISHED and op.proxy_held:
                try:
                    await Context(self, op).hold_proxy(snap)
                except Exception as e:  # noqa: BLE001 - a view refresh must never fail on it
                    op.log.append(f"⚠ could not set a held proxy server again: {_describe(e)}")

    async def abandon(self, record: OpRecord, lock: Lock | None) -> None:
        """Close an unfinished operation as it is (audited); its cluster lock is released."""
        self.require("abandon", "abandon", record.op)
        await self.actions.abandon(record.op, lock is not None and lock.op == record.op)
        self.journal.end(record.op, "abandoned", f"abandoned by {self.who}")
        self._let_go(record.op)

    async def unlock(self, lock: Lock) -> None:
        """Break the cluster's operation lock (its console died holding it); audited."""
        self.require("unlock", "break the operation lock", lock.holder)
        await self.actions.break_lock(lock.holder)

    def _let_go(self, op_id: str) -> None:
        """A closed operation holds nothing any more (rolled back, abandoned)."""
        for op in self.operations:
            if op.id == op_id:
                op.proxy_held.clear()
                op.unfinished = False

    def _note(self, op: Operation, line: str) -> None:
        Context(self, op).log(line)

    def press(self, action: str, otherwise: str) -> str:
        """How the operator does `action` ("pause", "abort") in the front end, in words."""
        key = self.keys.get(action)
        return f"press {key}" if key else otherwise

    def hint(self, op: Operation) -> str:
        """What the operator can do about a paused or unfinished operation."""
        if self.guard_wait is None and op.state == PAUSED:
            return (f"it goes on by itself once they clear; {self.press('pause', 'resume')} "
                    f"to check now, {self.press('abort', 'abort')} to abort (undo)")
        ways = f"opsconsole resume {op.id} | opsconsole rollback {op.id}"
        if op.state == PAUSED:
            return (f"waiting up to {self.guard_wait:.0f}s for it to clear; Ctrl-C leaves it "
                    f"unfinished ({ways})")
        return f"{ways} | opsconsole abandon {op.id}"

    def _lock(self, op: Operation) -> Lock:
        return Lock(self.who, op.id, op.title, op.since, host=socket.gethostname(),
                    pid=os.getpid(), beat=time.time())

    async def _run(self, op: Operation) -> None:
        ctx = Context(self, op)
        plan = op.plan
        op.state, op.started, op.since = RUNNING, time.monotonic(), time.time()
        swarm = self.cluster.providers.swarm
        locked, beat = False, None
        generation = self.actions.generation
        takes_over = plan.params.get("takes_over")
        RUNNING_HERE.add(op.id)
        try:
            self.journal.begin(op.id, plan.kind, plan.target, plan.params,
                               [(s.key, s.title) for s in plan.steps], self.who)
            ctx.log(f"start {op.title}: {len(plan.steps)} steps")
            held = await swarm.read_lock()
            if held is not None and takes_over and held.op == takes_over:
                ctx.log(f"taking over the lock of {takes_over} from {held.holder}")
                await self.actions.break_lock(held.holder)
            await self.actions.take_lock(op.id, self._lock(op))
            locked = True
            beat = asyncio.ensure_future(self._heartbeat(ctx))
            if op.resumed is not None:
                await self._verify_resume(ctx, op.resumed)
            await self._steps(ctx)
            op.index = len(plan.steps)
            op.state = DONE
            if takes_over:      # the operation this one rolled back is closed now
                self.journal.end(takes_over, "rolled back", f"rolled back by {op.id}")
                self._let_go(takes_over)
        except Aborted:
            op.state = ABORTED
            ctx.log("aborted; restoring what can be restored")
            await self._undo(ctx)
            op.unfinished = bool(op.error)     # what could not be restored stays on record
        except asyncio.CancelledError:
            op.state, op.error, op.unfinished = INTERRUPTED, op.error or CLOSING, True
            self._record(ctx, lambda: self.journal.stopped(op.id, INTERRUPTED, op.error))
            raise
        except Exception as e:  # noqa: BLE001 - any failure must leave a recoverable record
            op.state, op.error = FAILED, _describe(e)
            ctx.log(f"✘ {op.error}")
            # once anything was changed, only resume, rollback or abandon may close it
            op.unfinished = self.actions.generation != generation
            self._record(ctx, lambda: self.journal.step(op.id, op.index, _key(op), "failed",
                                                        error=op.error))
        finally:
            RUNNING_HERE.discard(op.id)
            if beat is not None:
                beat.cancel()
            op.finished = time.monotonic()
            if op.state != INTERRUPTED:
                await self._close(ctx, locked)
            ctx.log(f"{op.state} after {op.elapsed:.1f}s" + (
                f"; unfinished, the cluster lock stays: {self.hint(op)}" if op.unfinished
                else ""))
            if plan.report and op.state != INTERRUPTED:
                self._write_report(op)
            self.changed(op)

    async def _close(self, ctx: Context, locked: bool) -> None:
        """The record that ends a run: unfinished (lock kept), or finished (lock released)."""
        op = ctx.op
        if op.unfinished:
            self._record(ctx, lambda: self.journal.stopped(op.id, op.state, op.error,
                                                           failed=op.failed_groups))
            return
        if not self._record(ctx, lambda: self.journal.end(op.id, op.state, op.error,
                                                          op.failed_groups)):
            op.unfinished = True       # not recorded as finished: keep the lock
            return
        if locked:
            try:
                await self.actions.release_lock(op.id)
            except Exception as e:  # noqa: BLE001 - said, and `opsconsole unlock` is the way out
                ctx.log(f"⚠ could not release the cluster lock: {_describe(e)}")

    def _record(self, ctx: Context, write: Callable[[], None]) -> bool:
        """A journal write on the way out: a failure is said, never raised over the real one."""
        try:
            write()
            return True
        except OSError as e:
            ctx.log(f"⚠ could not write the journal ({e}): this operation is not recorded "
                    "as finished")
            return False

    async def _heartbeat(self, ctx: Context) -> None:
        """Tell other consoles this operation is live: the journal, and the cluster lock."""
        op, last_lock = ctx.op, time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                self.journal.heartbeat(op.id)
            except OSError as e:
                ctx.log(f"⚠ could not write the journal heartbeat: {e}")
            if time.monotonic() - last_lock < LOCK_BEAT_S:
                continue
            last_lock = time.monotonic()
            try:
                await self.actions.beat_lock(op.id, self._lock(op))
            except LockHeld as e:
                if op.state == RUNNING:
                    op.state = PAUSED
                    op._poke.set()
                ctx.log(f"⏸ paused: {e}; this console no longer holds the cluster lock")
            except Exception:  # noqa: BLE001 - the next beat tries again; the step's reads say why
                pass

    def _write_report(self, op: Operation) -> None:
        path = self.journal.path.parent / "reports" / f"{op.id}.md"
        try:
            write_private(path, markdown(op, self.who))
            op.report_path = str(path)
        except OSError as e:
            op.log.append(f"⚠ could not write the report: {e}")

    async def _verify_resume(self, ctx: Context, record: OpRecord) -> None:
        """Resume trusts the cluster: finished steps whose effect no longer holds run again."""
        check = resume_check(ctx.op.plan, record, await ctx.snapshot())
        ctx.op.skip = frozenset(check.skip)
        for line in check.redo:
            ctx.log(f"⟳ {line}")

    async def _steps(self, ctx: Context) -> None:
        """Run the steps in order; a failing step of a group retries or skips its group."""
        op, plan = ctx.op, ctx.op.plan
        attempts: dict[str, int] = {}
        i = 0
        while i < len(plan.steps):
            op.index, step = i, plan.steps[i]
            if i in op.skip:
                ctx.log(f"✔ {step.title} (done before the console restarted; still holds)")
                i += 1
                continue
            if plan.time_limit and op.elapsed > plan.time_limit:
                raise StepFailed(f"time limit of {plan.time_limit:.0f}s reached before "
                                 f"step {i + 1}: {step.title}")
            op.step_progress, op.detail = 0.0, ""
            await self._guard(ctx, step)
            while op.state == PAUSED:       # paused while the guards were read: read them
                await ctx.checkpoint()      # again after it, never trust a read from before
                await self._guard(ctx, step)
            await ctx.checkpoint()
            self.journal.step(op.id, i, step.key, "start", step.title)
            op.begun = max(op.begun, i + 1)
            op.times[i] = [time.monotonic()]
            ctx.log(f"▶ {step.title}")
            try:
                await step.run(ctx)
            except (TimeoutError, StepFailed, ProviderError) as e:
                if not step.group:
                    raise
                i = self._group_failed(ctx, step, str(e) or type(e).__name__, attempts)
                continue
            op.times[i].append(time.monotonic())
            self.journal.step(op.id, i, step.key, "done", step.title)
            ctx.log(f"✔ {step.title}")
            i += 1

    def _group_failed(self, ctx: Context, step: Step, error: str,
                      attempts: dict[str, int]) -> int:
        """Where to go on after a group's step failed: its start again, or past it."""
        op, plan = ctx.op, ctx.op.plan
        members = [k for k, s in enumerate(plan.steps) if s.group == step.group]
        self.journal.step(op.id, op.index, step.key, "failed", error=error, group=step.group)
        n = attempts[step.group] = attempts.get(step.group, 0) + 1
        if n <= plan.retries:
            ctx.log(f"✘ {step.title}: {error}; retrying {step.group} ({n}/{plan.retries})")
            return members[0]
        op.failures[step.group] = error
        ctx.log(f"✘ {step.group} failed: {error} "
                f"({len(op.failures)} failed, {plan.failure_budget} allowed)")
        if len(op.failures) > plan.failure_budget:
            raise StepFailed("failure budget exceeded: " + "; ".join(op.failed_groups))
        return members[-1] + 1

    async def _guard(self, ctx: Context, step: Step) -> None:
        """Every guard that applies to `step`, on a snapshot read for it. A failure (or a
        system that cannot be read) pauses the operation and is checked again every
        GUARD_RECHECK_S (at once on the operator's resume): it goes on by itself once
        the guards clear, since a cluster still settling fails a guard for a moment.
        The TUI waits as long as it takes (the operator can abort); headless gives up
        after `guard_wait`."""
        if step.risk is None:
            return
        op, since = ctx.op, 0.0             # since: when the guards paused it (0: they did not)
        while True:
            if op.state == PAUSED and not since:
                await ctx.checkpoint()          # the operator's pause first; read after it
            snap = await ctx.snapshot(hypervisor=bool(step.risk.host))
            checks = before_step(snap, step.risk, ctx.moved(snap))
            bad = failures(forced(checks) if op.plan.force else checks)
            if not bad:
                if since:
                    op.state = RUNNING
                    ctx.log("guards clear again: going on")
                return
            reason = "; ".join(c.message for c in bad)    # mid-run, the fix is the pause
            if not since or op.state != PAUSED:
                since = since or time.monotonic()
                op.state = PAUSED
                ctx.log(f"⏸ paused before '{step.title}': {reason}. {self.hint(op)}")
            if self.guard_wait is not None and time.monotonic() - since > self.guard_wait:
                op.state = RUNNING
                raise StepFailed(f"paused by the guards for over {self.guard_wait:.0f}s "
                                 f"before '{step.title}': {reason}")
            try:
                await asyncio.wait_for(ctx.checkpoint(), GUARD_RECHECK_S)
            except TimeoutError:
                pass

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


def _describe(e: BaseException) -> str:
    """An exception in words: ours say what happened; others also say what they are."""
    if isinstance(e, (StepFailed, ProviderError, RoleError)):
        return str(e) or type(e).__name__
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _key(op: Operation) -> str:
    steps = op.plan.steps
    return steps[op.index].key if op.index < len(steps) else ""


@dataclass
class ResumeCheck:
    skip: set[int] = field(default_factory=set)     # finished, and still holds
    redo: list[str] = field(default_factory=list)   # finished, no longer holds: run again
    rerun: int = 0                                   # waits run again


def resume_refusal(plan: Plan, record: OpRecord) -> str:
    """Why `record` cannot be resumed with `plan`, or ""."""
    if record.newer:
        return (f"{record.op} was written by a newer opsconsole (journal format "
                f"{record.version}): resume or roll it back with that version")
    live = record.liveness()
    if live:
        return f"{record.op} is not dead: {live}"
    recorded = record.keys or record.steps
    made = [s.key for s in plan.steps] if record.keys else [s.title for s in plan.steps]
    if recorded != made:
        return (f"cannot resume {record.op}: the plan made now differs from the one "
                "recorded; roll it back instead")
    return ""


def resume_check(plan: Plan, record: OpRecord, snap: Snapshot) -> ResumeCheck:
    """Which finished steps a resume may skip, judged on the cluster now.

    A finished step whose effect still holds (and no later finished step
    superseded) is skipped; one whose effect is gone runs again; once anything
    runs again, the finished waits after it run again too (they return at once
    when their condition holds). Steps with no checkable effect (a command, an
    update, a host restart) are not run twice.
    """
    out = ResumeCheck()
    done = sorted(i for i in set(record.done_steps) if 0 <= i < len(plan.steps))
    # the last finished step that set each subject (a wait sets nothing)
    latest = {e.subject: i for i in done
              if (e := plan.steps[i].effect) is not None and not plan.steps[i].wait}
    first_redo = None
    for i in done:
        step = plan.steps[i]
        effect = step.effect
        if effect is not None and latest.get(effect.subject, -1) > i:
            out.skip.add(i)                 # a later finished step set the same thing
        elif step.wait:
            if first_redo is not None and i > first_redo:
                out.rerun += 1
            else:
                out.skip.add(i)
        elif effect is not None and effect.holds is not None and (why := effect.holds(snap)):
            out.redo.append(f"{why}: '{step.title}' runs again")
            first_redo = i if first_redo is None else first_redo
        else:
            out.skip.add(i)
    return out
