"""Command line: the TUI by default; status, plan, run and journal for scripts; ssh-entry
for the people who SSH in (a forced command), access to manage who may.

Exit codes: 0 success; 2 bad input (inventory, names, usage); 3 refused (a
guard, the role (read-only is the monitor role), or not confirmed: a wrong word or no
input); 4 an operation failed; 5 aborted or interrupted (SIGINT, SIGTERM, SIGHUP); 6 a
remote system could not be reached (status still prints what it could read); 7
`resilience`: the loss of some single host or VM would not be survived.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from . import __version__, kinds, present, rehearsal, sshentry
from .access import AccessError, AuthorizedKeys, default_entry, read_key
from .config import ConfigError
from .model import LOCK, ROOT_HOSTS, ROOT_PROXY, ROOT_SERVICES, ROOT_UNPLACED, SWARM, Snapshot
from .ops import catalog, registry
from .ops import resilience as n_minus_1
from .ops.actions import require
from .ops.diagnosis import Diagnosis
from .ops.engine import ABORTED, DONE, FINISHED, INTERRUPTED, Operation, StepFailed
from .ops.plans import PlanError
from .ops.records import OpRecord, console_alive
from .ops.roles import ADMIN, ROLES, Identity, RoleError, lowest, role_named
from .providers.base import LOG_TAIL, LogSource, ProviderError
from .rehearsal import MARK, SPEED
from .session import Records, Session, load_inventory, open_records, open_session, simulated_site

EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED, EXIT_ABORTED, EXIT_UNREACHABLE = 2, 3, 4, 5, 6
EXIT_NOT_RESILIENT = 7         # `resilience`: the loss of some host or VM is not survived
RICH_ROLES = {"ok": "green", "warn": "yellow", "bad": "bold red", "muted": "dim",
              "accent": "cyan", "plain": ""}


def rich_text(pieces) -> Text:
    return Text.assemble(*((t, RICH_ROLES[r]) for t, r in pieces))


PIPED_WIDTH = 1000      # cells: a pipe or a file gets whole lines, never wrapped at 80
PROGRESS_EVERY_S = 10.0     # during a wait, a progress line at least this often (or on news)


def console(stderr: bool = False) -> Console:
    """A rich console for our output: the terminal's width, or whole lines when piped."""
    con = Console(highlight=False, stderr=stderr)
    if not con.is_terminal:
        con = Console(highlight=False, stderr=stderr, width=PIPED_WIDTH, soft_wrap=True)
    return con


def progress_line(op: Operation) -> str:
    """The wait in progress in words: what for, time so far of the limit, what is pending."""
    w = op.waiting
    if w is None:
        return ""
    return (f"  … waiting for {w.what}: {present.duration(w.used)} of "
            f"{present.duration(w.limit)}" + (f" — {w.pending}" if w.pending else ""))


def fail(code: int, message: str) -> NoReturn:
    try:
        console(stderr=True).print(Text(f"opsconsole: {message}",
                                                        style="bold red"))
    except OSError:     # no terminal any more (SSH dropped): the exit code still tells
        pass
    sys.exit(code)


def _output_gone() -> None:
    """stdout/stderr broke (the terminal hung up, the pipe's reader left): send what is
    still written to /dev/null, so nothing later (the exit message, the flush at exit)
    fails over it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass


def _session(ctx: click.Context) -> Session:
    o = ctx.obj
    try:
        inventory = load_inventory(o["inventory"]) if o["inventory"] else None
        return open_session(inventory, read_only=o["read_only"], speed=o["speed"],
                            scale=o["scale"], seed=o["seed"], role=o["role"],
                            identity=o.get("identity"))
    except ConfigError as e:
        fail(EXIT_USAGE, str(e))
    except ProviderError as e:
        fail(EXIT_UNREACHABLE, str(e))
    raise AssertionError("unreachable")


def _run(coro):
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:   # Ctrl-C where _Signals does not watch
        fail(EXIT_ABORTED, "interrupted by SIGINT")
    except ProviderError as e:
        fail(EXIT_UNREACHABLE, str(e))
    except (RoleError, StepFailed) as e:
        fail(EXIT_REFUSED, str(e))
    except PlanError as e:
        fail(EXIT_USAGE, str(e))


async def _readable(session: Session) -> Snapshot:
    """A snapshot to decide on: a Swarm that cannot be read is exit 6, not "no such node"."""
    snap = await session.cluster.snapshot()
    unread = snap.unreadable(SWARM, LOCK)
    if unread:
        raise ProviderError("cannot read the cluster: " + "; ".join(map(str, unread)))
    return snap


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Signals:
    """SIGINT, SIGTERM and SIGHUP while a command works (`async with`): before an
    operation starts (reading, planning, at the confirmation prompt) they stop the
    command, nothing changed, exit 5; once `op` is set they interrupt the operation,
    which the journal records as interrupted (resumable, the lock kept)."""

    def __init__(self, session: Session | None = None) -> None:
        self.session, self.caught = session, ""
        self.op: Operation | None = None

    async def __aenter__(self) -> _Signals:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._on, sig, task)
        return self

    def _on(self, sig: signal.Signals, task: asyncio.Task | None) -> None:
        name = signal.Signals(sig).name
        if self.op is not None:
            assert self.session is not None
            self.session.engine.interrupt(self.op, f"interrupted by {name}")
        elif not self.caught and task is not None:
            self.caught = name
            task.cancel()

    async def __aexit__(self, kind, error, tb) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        if kind is not None and issubclass(kind, asyncio.CancelledError) and self.caught \
                and self.op is None:
            fail(EXIT_ABORTED, f"interrupted by {self.caught}; nothing changed")


async def _ask(question: str) -> str | None:
    """One line typed on stdin, or None when there is none (stdin closed or at its end).

    A terminal or a pipe is watched by the event loop, so a signal stops the wait at
    once (a thread blocked in input() would keep the process from ending); stdin
    that cannot block (a file, /dev/null, a test's stream) is read directly.
    """
    click.echo(f"{question}: ", nl=False)
    loop = asyncio.get_running_loop()
    try:
        fd = sys.stdin.fileno()
        got: asyncio.Future = loop.create_future()
        data = bytearray()

        def readable() -> None:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            data.extend(chunk)
            if (not chunk or b"\n" in data) and not got.done():
                got.set_result(bytes(data) if data else None)
        loop.add_reader(fd, readable)
    except (AttributeError, OSError, ValueError):   # no descriptor, or one epoll refuses
        line = sys.stdin.readline() if sys.stdin is not None else ""
        return line or None
    try:
        raw = await got
    finally:
        loop.remove_reader(fd)
    return None if raw is None else raw.decode(errors="replace")


async def _confirm(question: str, word: str) -> None:
    """Ask to type `word`; anything else, or no input at all (stdin closed), is exit 3."""
    answer = await _ask(question)
    if answer is None:
        click.echo()
        fail(EXIT_REFUSED, "not confirmed: no input (stdin closed); nothing changed")
    if answer.strip() != word:
        fail(EXIT_REFUSED, "not confirmed; nothing changed")


def _refused(plan) -> None:
    """Exit 3, saying on stderr too which checks refused (scripts often keep only stderr)."""
    fail(EXIT_REFUSED, "refused: " + "; ".join(f"{c.name}: {c.text}" for c in plan.refused))


@click.group(invoke_without_command=True)
@click.option("--inventory", "-i", type=click.Path(dir_okay=False, path_type=Path),
              envvar="OPSCONSOLE_INVENTORY",
              help="Inventory file (TOML). Without it: the built-in simulated cluster.")
@click.option("--read-only", is_flag=True, help="Monitor mode: nothing can be changed "
              "(the monitor role).")
@click.option("--role", type=click.Choice(ROLES), default=ADMIN, show_default=True,
              help="What this console may do: monitor watches, oncall runs node operations "
              "and maintenance windows, admin all. It only lowers: --read-only still wins.")
@click.option("--theme", default="", help="Theme name (see themes/) for the TUI.")
@click.option("--demo", is_flag=True, help="Simulated cluster at 5x speed, for a quick tour.")
@click.option("--scale", default=0, type=click.IntRange(0, 20000),
              help="Simulated cluster with this many nodes (about 20 tasks each).")
@click.option("--seed", default=1, type=int, help="Seed of the simulated cluster.")
@click.version_option(__version__, prog_name="opsconsole")
@click.pass_context
def main(ctx: click.Context, inventory: Path | None, read_only: bool, role: str, theme: str,
         demo: bool, scale: int, seed: int) -> None:
    """Operations console for Docker Swarm on Hyper-V behind HAProxy."""
    ctx.obj = {"inventory": inventory, "read_only": read_only, "theme": theme,
               "speed": 5.0 if demo else 1.0, "scale": scale, "seed": seed,
               "role": role_named(role)}
    if ctx.invoked_subcommand is None:
        _tui(ctx)


def _tui(ctx: click.Context) -> None:
    session = _session(ctx)
    from .ui.app import OpsConsole  # textual loads only for the TUI
    OpsConsole(session, theme=ctx.obj["theme"] or session.inventory.theme).run()


def _permitted(session: Session, name: str, verb: str, target: str = "") -> None:
    """Exit 3 (the refusal audited) unless the role may do the registry's `name`: said
    before anything is read or asked."""
    try:
        session.engine.require(name, verb, target)
    except RoleError as e:
        fail(EXIT_REFUSED, str(e))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable snapshot.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Print one snapshot of the cluster."""
    session, snap = _one_snapshot(ctx)
    found = Diagnosis()(snap, session.journal.unfinished())
    if as_json:
        click.echo(json.dumps({**snapshot_json(snap), "concerns": [asdict(c) for c in found]},
                              indent=1, sort_keys=True))
    else:
        con = console()
        con.print(status_tree(snap))
        if found:
            con.print(Text(f"Problems ({len(found)}), worst first:", style="bold"))
        for c in found:
            con.print(rich_text([(f"  [{c.level}] ", "bad" if c.level == "fail" else "warn"),
                                 (c.message, "plain")]))
    if snap.problems:
        sys.exit(EXIT_UNREACHABLE)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable table.")
@click.option("--rehearse", "domain", default="", metavar="NAME",
              help="Play the failure of host or VM NAME on a simulated twin of the cluster "
                   "(nothing real is touched) and print what Swarm and the proxy did.")
@click.pass_context
def resilience(ctx: click.Context, as_json: bool, domain: str) -> None:
    """What the loss of each host or VM would do now (N-1). Exit 0: every single loss is
    survived; 7: one is not; 6: the cluster cannot be read."""
    snap = _one_snapshot(ctx)[1]
    if domain:
        _rehearse_loss(snap, domain)
        return
    answer = n_minus_1.assess(snap)
    if as_json:
        click.echo(json.dumps(resilience_json(snap, answer), indent=1, sort_keys=True))
    else:
        print_resilience(snap, answer)
    if answer.unknown:
        sys.exit(EXIT_UNREACHABLE)
    if not answer.survived:
        sys.exit(EXIT_NOT_RESILIENT)


def _rehearse_loss(snap: Snapshot, name: str) -> None:
    if snap.unreadable(SWARM):
        fail(EXIT_UNREACHABLE, "cannot read the cluster: " + "; ".join(
            map(str, snap.unreadable(SWARM))))
    try:
        played = asyncio.run(rehearsal.rehearse_loss(snap, name))
    except ValueError as e:
        fail(EXIT_USAGE, str(e))
    con = console()
    con.print(Text(f"{MARK}: {played.domain.label} fails now; {played.seconds:.0f} s later "
                   "on a simulated twin (nothing real is touched):", style="bold"))
    tol = played.quorum_after
    con.print(rich_text([("  quorum: ", "plain"), (
        "lost: the swarm cannot be changed and reschedules nothing" if tol < 0
        else f"holds, tolerates {tol} more loss(es)", "bad" if tol < 0 else "ok")]))
    for s in played.services:
        lost = s.running_before - s.running_after
        if not lost and not s.moved_to:
            continue
        where = f"; replacements on {', '.join(s.moved_to)}" if s.moved_to else ""
        level = "bad" if s.desired and not s.running_after else (
            "warn" if s.running_after < s.desired else "ok")
        con.print(rich_text([(f"  {s.name}: ", "plain"), (
            f"{s.running_after}/{s.desired} running (was {s.running_before}){where}", level)]))
    con.print(Text(f"  sessions moved to another server: {played.sessions_moved}"))
    if played.down or tol < 0:
        sys.exit(EXIT_NOT_RESILIENT)


def resilience_json(snap: Snapshot, answer: n_minus_1.Assessment) -> dict:
    return {"taken_at": snap.taken_at, "survived": answer.survived, "verdict": answer.verdict,
            "unknown": [str(p) for p in snap.unreadable(*answer.unknown)] if answer.unknown
            else [],
            "domains": [{"kind": o.domain.kind, "name": o.domain.name,
                         "vms": sorted(o.domain.vms), "survived": o.survived,
                         "findings": [asdict(f) for f in o.findings]} for o in answer.outcomes]}


def print_resilience(snap: Snapshot, answer: n_minus_1.Assessment) -> None:
    con = console()
    con.print(Text(answer.verdict, style="bold"))
    style = {"ok": "ok", "warn": "warn"}
    if answer.unknown:
        for p in snap.unreadable(*answer.unknown):
            con.print(rich_text([("  [unknown] ", "bad"), (f"{p}: cannot tell", "plain")]))
    for o in answer.outcomes:
        con.print(rich_text([("✔ " if o.survived else "✘ ", style.get(o.level, "bad")),
                             (o.domain.label, "accent")]))
        for f in o.findings:
            con.print(rich_text([(f"    [{f.level}] ", style.get(f.level, "bad")),
                                 (f.message, "plain")]))
            if f.fix:
                con.print(Text(f"        fix: {f.fix}"))


def _one_snapshot(ctx: click.Context) -> tuple[Session, Snapshot]:
    """One read of the cluster (and the session that read it), the providers closed after."""
    session = _session(ctx)

    async def take() -> Snapshot:
        try:
            async with _Signals():
                return await session.cluster.snapshot()
        finally:
            await session.providers.close()
    return session, _run(take())


def snapshot_json(snap: Snapshot) -> dict:
    kinds = ("hosts", "vms", "nodes", "services", "tasks", "backends", "servers", "sessions")
    out: dict = {k: [dict(asdict(e), id=e.id) for e in getattr(snap, k)] for k in kinds}
    out.update(taken_at=snap.taken_at, endpoint=snap.endpoint,
               problems=[dict(asdict(p), text=str(p)) for p in snap.problems],
               summary={"nodes": len(snap.nodes), "nodes_ready": snap.nodes_ready,
                        "managers": len(snap.managers),
                        "quorum_tolerance": snap.quorum_tolerance,
                        "services_converged": sum(1 for s in snap.services
                                                  if snap.converged(s)),
                        "services": len(snap.services), "sessions": snap.session_count})
    return out


def status_tree(snap: Snapshot) -> Tree:
    root = Tree(rich_text(present.summary(snap)))
    branches = {g: root.add(rich_text(present.group_label(g, snap)))
                for g in (ROOT_HOSTS, ROOT_UNPLACED, ROOT_SERVICES, ROOT_PROXY)}
    for entity in snap.entities():
        kind = kinds.kind_of(entity)
        if not (kind.shown(entity) and kind.in_status):
            continue
        parent = branches.get(kind.parent(entity, snap))
        if parent is not None:
            branches[entity.id] = parent.add(rich_text(kind.label(entity, snap)))
    for group in (ROOT_UNPLACED,):
        if not branches[group].children:
            root.children.remove(branches[group])
    return root


def _build(session: Session, kind: str, target: str, force: bool):
    """The plan of `kind` on `target`, as a function of a snapshot."""
    return lambda snap: catalog.build(kind, snap, target, session.inventory.timing,
                                      session.window_options, force)


def print_plan(plan) -> None:
    con = console()
    con.print(Text(f"{plan.kind} {plan.target}", style="bold"))
    for c in plan.checks:
        con.print(rich_text([(f"  [{c.level}] ", {"ok": "ok", "warn": "warn"}.get(c.level, "bad")),
                             (f"{c.name}: {c.text}", "plain")]))
    for i, step in enumerate(plan.steps, 1):
        con.print(Text(f"  {i}. {step.title}"))


def _execute(session: Session, build, yes: bool, confirm_word: str = "",
             resume: OpRecord | None = None) -> None:
    """Plan from a fresh snapshot, show it, confirm, run with the log streaming, exit code.

    SIGINT, SIGTERM and SIGHUP stop the run where it is: the journal records it
    interrupted (resumable, the lock kept) and the exit code is 5.
    """
    session.engine.guard_wait = session.inventory.timing.paused_limit

    async def go():
        try:
            async with _Signals(session) as signals:
                p = build(await _readable(session))
                print_plan(p)
                if p.refused:
                    _refused(p)
                if not yes:
                    await _confirm(f"Type {confirm_word or p.target} to confirm",
                                   confirm_word or p.target)
                seen, said, said_at = 0, "", 0.0     # log lines shown; the wait said, when

                def show(op) -> None:
                    nonlocal seen, said, said_at
                    lines, seen = op.log[seen:], len(op.log)
                    # a wait says what it waits for as it starts, then every so often
                    what = op.waiting.what if op.waiting else ""
                    if what and (what != said or time.monotonic() - said_at >= PROGRESS_EVERY_S):
                        lines = [*lines, progress_line(op)]
                        said, said_at = what, time.monotonic()
                    elif not what:
                        said = ""
                    try:
                        for line in lines:
                            click.echo(line)
                    except OSError as e:    # like SIGHUP: stopped, recorded, resumable
                        _output_gone()
                        if op.state not in FINISHED:
                            session.engine.interrupt(op, "interrupted: its output went away "
                                                         f"({e.strerror or e})")
                session.engine.listen(show)
                op = signals.op = session.engine.start(p, resume=resume)
                try:
                    assert op.task is not None
                    await op.task
                except asyncio.CancelledError:
                    pass
                return op
        finally:
            await session.providers.close()
    op = _run(go())
    if op.report_path:
        click.echo(f"report: {op.report_path}")
    if op.state != DONE:
        code = EXIT_ABORTED if op.state in (ABORTED, INTERRUPTED) else EXIT_FAILED
        then = f"; unfinished, the cluster lock stays: {session.engine.hint(op)}" \
            if op.unfinished else ""
        fail(code, f"{op.title} {op.state}: {op.error}{then}")


OPERATION = click.Choice(list(registry.OPERATIONS))


@main.command(help="Show what OPERATION on TARGET would do and what the checks find; change "
              f"nothing.\n\nTARGET: {registry.target_help()}.")
@click.argument("operation", type=OPERATION)
@click.argument("target")
@click.option("--force", is_flag=True, help="Drain even when tasks would have nowhere to go.")
@click.option("--rehearse", is_flag=True,
              help="Then run it to its end on a simulated twin of the cluster (nothing real "
                   "is touched) and print its report; exit 4 if it would not end done.")
@click.pass_context
def plan(ctx: click.Context, operation: str, target: str, force: bool, rehearse: bool) -> None:
    session = _session(ctx)

    async def go():
        try:
            async with _Signals():
                snap = await _readable(session)
                p = _build(session, operation, target, force)(snap)
                print_plan(p)
                if p.refused:
                    _refused(p)
                if rehearse:
                    click.echo(f"\n{MARK}: {operation} {target} on a simulated twin "
                               f"(x{SPEED:g}; nothing real is touched)...")
                    return await rehearsal.rehearse(snap, operation, target,
                                                    session.inventory.timing,
                                                    session.window_options, force)
                return None
        finally:
            await session.providers.close()
    played = _run(go())
    if played is not None:
        click.echo(played.report if played.op else "refused on the twin: " + "; ".join(
            c.text for c in played.plan.refused))
        if not played.passed:
            fail(EXIT_FAILED, f"{MARK}: {operation} {target} would not end done"
                 + (f": {played.op.state}: {played.op.error}" if played.op else ""))


@main.command()
@click.argument("operation", type=OPERATION)
@click.argument("target")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Drain even when tasks would have nowhere to go.")
@click.pass_context
def run(ctx: click.Context, operation: str, target: str, yes: bool, force: bool) -> None:
    """Run OPERATION on TARGET headless, printing each step (see `plan` for TARGET)."""
    session = _session(ctx)
    _permitted(session, operation, operation, target)
    _execute(session, _build(session, operation, target, force), yes)


def _unfinished(session: Session, op_id: str) -> OpRecord:
    unfinished = session.journal.unfinished()
    found = [r for r in unfinished if r.op == op_id]
    if not found:
        known = ", ".join(r.op for r in unfinished) or "none"
        fail(EXIT_USAGE, f"no unfinished operation {op_id!r} in the journal (unfinished: {known})")
    return found[0]


@main.command()
@click.argument("op_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def resume(ctx: click.Context, op_id: str, yes: bool) -> None:
    """Carry on an unfinished operation from where its console stopped.

    Finished steps are checked against the cluster first: one whose effect no
    longer holds runs again. Commands come from the inventory now."""
    session = _session(ctx)
    _permitted(session, "resume", "resume", op_id)
    _finish(ctx, op_id, yes, lambda r, snap: catalog.rebuild(r, snap, session.window_options),
            resume=True, session=session)


@main.command()
@click.argument("op_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def rollback(ctx: click.Context, op_id: str, yes: bool) -> None:
    """Bring back into service what an unfinished operation took out."""
    session = _session(ctx)
    _permitted(session, "rollback", "rollback", op_id)
    _finish(ctx, op_id, yes, catalog.rollback, resume=False, session=session)


def _finish(ctx: click.Context, op_id: str, yes: bool, make_plan, resume: bool,
            session: Session) -> None:
    """Resume or roll back the unfinished operation `op_id`: `make_plan(record, snapshot)`."""
    record = _unfinished(session, op_id)
    _execute(session, lambda snap: make_plan(record, snap), yes, confirm_word=op_id,
             resume=record if resume else None)


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def unlock(ctx: click.Context, yes: bool) -> None:
    """Break the cluster's operation lock (a console died holding it). Audited."""
    session = _session(ctx)
    _permitted(session, "unlock", "break the operation lock")

    async def go():
        try:
            async with _Signals():      # until confirmed, a signal changes nothing
                snap = await _readable(session)
                if snap.lock is None:
                    click.echo("the cluster is not locked")
                    return
                lock = snap.lock
                click.echo(f"locked by {lock.holder} for {lock.title!r} (operation {lock.op}), "
                           f"{present.duration(lock.age(time.time()))} ago")
                live = console_alive(lock.host, lock.pid, lock.beat, op=lock.op)
                if live:
                    click.echo(f"its console is not dead: {live}")
                if not yes:
                    await _confirm("Type unlock to break it", "unlock")
            await session.engine.unlock(lock)
            click.echo("lock broken")
        finally:
            await session.providers.close()
    _run(go())


@main.command()
@click.argument("op_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def abandon(ctx: click.Context, op_id: str, yes: bool) -> None:
    """Close an unfinished operation without resuming or rolling it back. Audited.

    What it took out of service stays so; its cluster lock is released."""
    session = _session(ctx)
    _permitted(session, "abandon", "abandon", op_id)
    record = _unfinished(session, op_id)
    live = record.liveness()
    if live:
        fail(EXIT_REFUSED, f"{op_id} is not dead: {live}")

    async def go():
        try:
            async with _Signals():      # until confirmed, a signal changes nothing
                snap = await _readable(session)
                click.echo(f"{record.kind} {record.target} by {record.who}: {record.state}, "
                           f"{len(record.done_steps)} of {len(record.steps)} steps done; "
                           "what it took out of service stays out")
                if not yes:
                    await _confirm(f"Type {op_id} to abandon it", op_id)
            await session.engine.abandon(record, snap.lock)
            click.echo(f"{op_id} abandoned")
        finally:
            await session.providers.close()
    _run(go())


@main.command()
@click.pass_context
def journal(ctx: click.Context) -> None:
    """List recorded operations, unfinished ones first."""
    session = _session(ctx)
    con = console()
    unfinished = session.journal.unfinished()
    if session.journal.skipped_note():
        console(stderr=True).print(Text(f"⚠ {session.journal.skipped_note()}", style="yellow"))
    for rec in unfinished:
        live = rec.liveness()
        how = live or ("written by a newer opsconsole: use that version" if rec.newer else
                       f"opsconsole resume {rec.op} | opsconsole rollback {rec.op} | "
                       f"opsconsole abandon {rec.op}")
        con.print(Text(f"UNFINISHED {rec.op}  {rec.kind} {rec.target}  by {rec.who}  "
                       f"{rec.state}  steps done {len(rec.done_steps)}/{len(rec.steps)}  "
                       f"({how})", style="bold yellow"))
    for line in session.journal.read():
        if line.get("event") not in ("begin", "end"):
            continue
        con.print(Text(f"{line.get('op', '?')}  {line['event']}  " + (
            f"{line.get('kind', '?')} {line.get('target', '?')} by {line.get('who', '?')}"
            if line["event"] == "begin" else f"{line.get('state', '?')} {line.get('error', '')}")))


def _log_source(snap: Snapshot, target: str) -> tuple[LogSource, str]:
    """A service by name, or a task by name (web.1) or id prefix -> what `logs` reads."""
    service = snap.service_named(target)
    if service is not None:
        return "service", service.swarm_id
    tasks = [t for t in snap.tasks if t.wanted and t.name == target] or \
        [t for t in snap.tasks if len(target) >= 6 and t.swarm_id.startswith(target)]
    if len(tasks) == 1:
        return "task", tasks[0].swarm_id
    if tasks:
        raise PlanError(f"{target!r} names {len(tasks)} tasks: give more of the id")
    known = ", ".join(sorted(s.name for s in snap.services)) or "none"
    raise PlanError(f"no service or task named {target!r} (services: {known}; a task: "
                    "web.1 or its id)")


@main.command()
@click.argument("target")
@click.option("--follow", "-f", is_flag=True, help="Go on printing new lines (Ctrl-C ends).")
@click.option("--tail", "-n", default=LOG_TAIL, show_default=True, type=click.IntRange(0, 100000),
              help="Lines of history to start with.")
@click.pass_context
def logs(ctx: click.Context, target: str, follow: bool, tail: int) -> None:
    """Print the log of a service or task (TARGET: web, web.1 or a task id), with
    timestamps; escape sequences from the containers are removed, long lines cut."""
    session = _session(ctx)

    async def go():
        try:
            snap = await _readable(session)
            kind, swarm_id = _log_source(snap, target)
            async for line in session.providers.swarm.logs(kind, swarm_id, tail, follow):
                click.echo(line)
        except OSError:     # the reader went away (| head): nothing more to say
            _output_gone()
        finally:
            await session.providers.close()
    _run(go())


@main.command("ssh-entry")
@click.option("--role", "granted", type=click.Choice(ROLES), required=True,
              help="The person's role (from the authorized_keys line, never from them).")
@click.option("--user", required=True, help="The person's name, for the audit.")
@click.pass_context
def ssh_entry(ctx: click.Context, granted: str, user: str) -> None:
    """The forced command of an authorized_keys line (`access add` writes them).

    Without SSH_ORIGINAL_COMMAND: the console in that role. With one: that console
    command (status, plan, run, journal, resume, rollback, abandon, unlock, with their
    own flags only), split into words but never run by a shell; anything else is refused
    (exit 3, audited)."""
    if not sshentry.NAME.fullmatch(user):
        fail(EXIT_USAGE, f"ssh-entry: user name {user!r} is not a plain name")
    parent = ctx.parent
    if parent is not None and parent.get_parameter_source("inventory") not in (
            None, ParameterSource.DEFAULT, ParameterSource.COMMANDLINE):
        fail(EXIT_USAGE, "ssh-entry: name the inventory in the forced command (-i FILE), not "
                         "in the environment (a client may be allowed to send variables)")
    o = ctx.obj
    o["role"] = lowest(o["role"], role_named(granted))
    o["identity"] = Identity.ssh(user, sshentry.exposed_key(os.environ.get("SSH_USER_AUTH",
                                                                           "")))
    text = os.environ.get("SSH_ORIGINAL_COMMAND")
    if text is None:
        if not sys.stdout.isatty():
            fail(EXIT_USAGE, "the console needs a terminal: ssh -t, or give a command "
                             "(status, plan, run, journal…)")
        _tui(ctx)
        return
    try:
        request = sshentry.parse(text)
    except sshentry.Refused as e:
        _records(ctx).audit.record("ssh command", text[:200], f"refused: {e}", role=o["role"])
        fail(EXIT_REFUSED, str(e))
    command = main.get_command(ctx, request.command)
    assert command is not None      # parse() knows only commands of main
    with command.make_context(request.command, list(request.args), parent=ctx) as sub:
        command.invoke(sub)


@main.group()
@click.option("--file", "keys_file", type=click.Path(dir_okay=False, path_type=Path),
              default=lambda: str(Path.home() / ".ssh" / "authorized_keys"),
              show_default="~/.ssh/authorized_keys",
              help="The service account's authorized_keys.")
@click.pass_context
def access(ctx: click.Context, keys_file: Path) -> None:
    """Who may SSH in to the service account, and in which role (authorized_keys)."""
    ctx.obj["keys_file"] = keys_file


def _records(ctx: click.Context) -> Records:
    """The journal, audit and access of this console: no remote system read, no secret
    asked."""
    o = ctx.obj
    try:
        inventory = load_inventory(o["inventory"]) if o["inventory"] else simulated_site()
        return open_records(inventory, o["read_only"], o["role"], o.get("identity"),
                            seed=o["seed"], scale=o["scale"])
    except ConfigError as e:
        fail(EXIT_USAGE, str(e))


def _may_manage_access(ctx: click.Context, verb: str, name: str) -> Records:
    """Exit 3 (audited) unless the role may manage access."""
    records = _records(ctx)
    try:
        require(records.access, records.audit, records.access.needs("access"), verb, name)
    except RoleError as e:
        fail(EXIT_REFUSED, str(e))
    return records


def _keys(ctx: click.Context) -> AuthorizedKeys:
    try:
        return AuthorizedKeys(ctx.obj["keys_file"])
    except AccessError as e:
        fail(EXIT_USAGE, str(e))


@access.command("add")
@click.argument("name")
@click.option("--role", "granted", type=click.Choice(ROLES), required=True)
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The person's public key (.pub).")
@click.option("--entry", default="", help="The program the forced command runs, split like "
              "a shell would (default: this opsconsole, with its --inventory).")
@click.pass_context
def access_add(ctx: click.Context, name: str, granted: str, key_file: Path, entry: str) -> None:
    """Let NAME in with the key in --key, in --role. Audited."""
    audit = _may_manage_access(ctx, "grant ssh access to", name).audit
    keys = _keys(ctx)
    try:
        key = read_key(key_file)
        program = shlex.split(entry) if entry else default_entry(ctx.obj["inventory"])
        line = keys.add(name, role_named(granted), key, program)
        keys.save()
    except (AccessError, ValueError) as e:
        fail(EXIT_USAGE, str(e))
    except OSError as e:
        fail(EXIT_USAGE, f"{keys.path}: cannot write: {e.strerror or e}")
    audit.record("grant ssh access", name, "ok", role=granted, fingerprint=key.fingerprint,
                 file=str(keys.path))
    click.echo(f"{name} may log in as {granted} with {key.fingerprint}:\n{line}")


@access.command("list")
@click.pass_context
def access_list(ctx: click.Context) -> None:
    """The people who may SSH in, their role and key."""
    keys = _keys(ctx)
    for e in keys.entries():
        click.echo(f"{e.user}  {e.role}  {e.key.type} {e.key.fingerprint}  (line {e.line})")
    click.echo(f"{keys.others()} other line(s) in {keys.path}, kept as they are")


@access.command("remove")
@click.argument("name")
@click.pass_context
def access_remove(ctx: click.Context, name: str) -> None:
    """Take NAME's keys out. Audited."""
    audit = _may_manage_access(ctx, "remove ssh access of", name).audit
    keys = _keys(ctx)
    try:
        gone = keys.remove(name)
        keys.save()
    except AccessError as e:
        fail(EXIT_USAGE, str(e))
    except OSError as e:
        fail(EXIT_USAGE, f"{keys.path}: cannot write: {e.strerror or e}")
    for entry in gone:
        audit.record("remove ssh access", name, "ok", role=entry.role,
                     fingerprint=entry.key.fingerprint, file=str(keys.path))
    click.echo(f"{name}: {len(gone)} key(s) removed from {keys.path}")
