"""Command line: the TUI by default; status, plan, run and journal for scripts.

Exit codes: 0 success; 2 bad input (inventory, names, usage); 3 refused (a
guard, read-only mode, or not confirmed: a wrong word or no input); 4 an
operation failed; 5 aborted or interrupted (SIGINT, SIGTERM, SIGHUP); 6 a
remote system could not be reached (status still prints what it could read).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from . import __version__, present
from .config import ConfigError, load
from .model import LOCK, ROOT_HOSTS, ROOT_PROXY, ROOT_SERVICES, ROOT_UNPLACED, SWARM, Snapshot
from .ops import catalog, registry
from .ops.actions import ReadOnlyError
from .ops.engine import ABORTED, DONE, FINISHED, INTERRUPTED, Operation, StepFailed
from .ops.plans import PlanError
from .ops.records import OpRecord, console_alive
from .providers.base import ProviderError
from .session import Session, open_session

EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED, EXIT_ABORTED, EXIT_UNREACHABLE = 2, 3, 4, 5, 6
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
        inventory = load(o["inventory"]) if o["inventory"] else None
        return open_session(inventory, read_only=o["read_only"], speed=o["speed"],
                            scale=o["scale"], seed=o["seed"])
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
    except (ReadOnlyError, StepFailed) as e:
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
@click.option("--read-only", is_flag=True, help="Monitor mode: nothing can be changed.")
@click.option("--theme", default="", help="Theme name (see themes/) for the TUI.")
@click.option("--demo", is_flag=True, help="Simulated cluster at 5x speed, for a quick tour.")
@click.option("--scale", default=0, type=click.IntRange(0, 20000),
              help="Simulated cluster with this many nodes (about 20 tasks each).")
@click.option("--seed", default=1, type=int, help="Seed of the simulated cluster.")
@click.version_option(__version__, prog_name="opsconsole")
@click.pass_context
def main(ctx: click.Context, inventory: Path | None, read_only: bool, theme: str, demo: bool,
         scale: int, seed: int) -> None:
    """Operations console for Docker Swarm on Hyper-V behind HAProxy."""
    ctx.obj = {"inventory": inventory, "read_only": read_only, "theme": theme,
               "speed": 5.0 if demo else 1.0, "scale": scale, "seed": seed}
    if ctx.invoked_subcommand is None:
        session = _session(ctx)
        from .ui.app import OpsConsole  # textual loads only for the TUI
        OpsConsole(session, theme=theme or session.inventory.theme).run()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable snapshot.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Print one snapshot of the cluster."""
    session = _session(ctx)

    async def take() -> Snapshot:
        try:
            async with _Signals():
                return await session.cluster.snapshot()
        finally:
            await session.providers.close()
    snap = _run(take())
    if as_json:
        click.echo(json.dumps(snapshot_json(snap), indent=1, sort_keys=True))
    else:
        console().print(status_tree(snap))
    if snap.problems:
        sys.exit(EXIT_UNREACHABLE)


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
        if not present.shown(entity) or entity.id.startswith("session:"):
            continue
        parent = branches.get(snap.parent_id(entity))
        if parent is not None:
            branches[entity.id] = parent.add(rich_text(present.label(entity, snap)))
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
    if session.read_only:
        fail(EXIT_REFUSED, "read-only mode: refused to change anything")
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
@click.pass_context
def plan(ctx: click.Context, operation: str, target: str, force: bool) -> None:
    session = _session(ctx)

    async def go():
        try:
            async with _Signals():
                return _build(session, operation, target, force)(await _readable(session))
        finally:
            await session.providers.close()
    p = _run(go())
    print_plan(p)
    if p.refused:
        _refused(p)


@main.command()
@click.argument("operation", type=OPERATION)
@click.argument("target")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Drain even when tasks would have nowhere to go.")
@click.pass_context
def run(ctx: click.Context, operation: str, target: str, yes: bool, force: bool) -> None:
    """Run OPERATION on TARGET headless, printing each step (see `plan` for TARGET)."""
    session = _session(ctx)
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
    _finish(ctx, op_id, yes, lambda r, snap: catalog.rebuild(r, snap, session.window_options),
            resume=True, session=session)


@main.command()
@click.argument("op_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def rollback(ctx: click.Context, op_id: str, yes: bool) -> None:
    """Bring back into service what an unfinished operation took out."""
    _finish(ctx, op_id, yes, catalog.rollback, resume=False)


def _finish(ctx: click.Context, op_id: str, yes: bool, make_plan, resume: bool,
            session: Session | None = None) -> None:
    """Resume or roll back the unfinished operation `op_id`: `make_plan(record, snapshot)`."""
    session = session or _session(ctx)
    record = _unfinished(session, op_id)
    _execute(session, lambda snap: make_plan(record, snap), yes, confirm_word=op_id,
             resume=record if resume else None)


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def unlock(ctx: click.Context, yes: bool) -> None:
    """Break the cluster's operation lock (a console died holding it). Audited."""
    session = _session(ctx)
    if session.read_only:
        fail(EXIT_REFUSED, "read-only mode: refused to break the lock")

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
            await session.engine.actions.break_lock(lock.holder)
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
    if session.read_only:
        fail(EXIT_REFUSED, "read-only mode: refused to abandon an operation")
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
