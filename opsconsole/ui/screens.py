"""Modal screens: the confirmation every change goes through, and help."""
from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..config import UNSAFE
from ..ops.engine import Plan
from ..ops.records import OpRecord

LEVEL_ROLES = {"ok": "ok", "warn": "warn", "fail": "bad"}


class ConfirmScreen(ModalScreen[bool]):
    """Shows exactly what will happen and what the checks found.

    When `typed` is set the operator must type that name before Confirm
    works; a plan the guards refused can only be cancelled.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm.cancel")]

    def __init__(self, plan: Plan, style: Callable, typed: str = "") -> None:
        super().__init__()
        self.plan, self.style_pieces, self.typed = plan, style, typed

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="confirm"):
            yield Label(Text(f"{plan.kind} {plan.target}", style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(Text("Checks", style="bold"))
                for c in plan.checks:
                    yield Static(self.style_pieces([
                        (f"{'✔' if c.level == 'ok' else '⚠' if c.level == 'warn' else '✘'} ",
                         LEVEL_ROLES[c.level]), (f"{c.name}: ", "plain"), (c.message, "plain")]),
                        classes="check")
                yield Static(Text("\nWhat will happen", style="bold"))
                for i, step in enumerate(plan.steps, 1):
                    yield Static(Text(f"{i}. {step.title}"), classes="step")
            if plan.refused:
                yield Label(Text("Refused: fix what the checks name first."), id="confirm-refused")
            elif self.typed:
                yield Input(placeholder=f"type {self.typed} to confirm", id="confirm-input")
            with Horizontal(id="confirm-buttons"):
                if not plan.refused:
                    yield Button("Confirm", variant="error" if self.typed else "primary",
                                 id="confirm-yes", disabled=bool(self.typed))
                yield Button("Cancel", id="confirm-no")

    def on_mount(self) -> None:
        target = "#confirm-input" if self.typed and not self.plan.refused else \
            "#confirm-yes" if not self.plan.refused else "#confirm-no"
        self.query_one(target).focus()

    @on(Input.Changed, "#confirm-input")
    def typed_changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm-yes", Button).disabled = event.value.strip() != self.typed

    @on(Input.Submitted, "#confirm-input")
    def typed_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.typed:
            self.dismiss(True)

    @on(Button.Pressed, "#confirm-yes")
    def yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def action_cancel(self) -> None:
        self.dismiss(False)


HELP = """\
Moving around
  ↑ ↓ PgUp PgDn   move in the tree        ← →  fold / unfold (shift+← parent)
  /               filter the tree         esc  clear the filter
  ctrl+p          command palette: every action on every node ("drain vm-03")

Acting on the selected node (or the VM that runs it)
  c   cordon: no new tasks here, running tasks stay
  d   drain: proxy server to drain, sessions end, tasks move elsewhere
  a   activate: node active again, proxy server ready

Maintenance windows
  m   maintain the selected host: drain its VMs' nodes, shut the VMs down,
      update and restart the host, start everything, activate, rebalance
  U   rolling update: the selected VM, the selected host's VMs, or the whole
      cluster; workers first, then managers, one VM at a time
Every change shows its plan and its checks first; drain and the windows ask
you to type the target's name. One operation at a time in the whole cluster:
the lock is in the Swarm, and the header shows who holds it.

Operations
  p   pause / resume the running operation     x   abort it (restores what it can)

Other
  L   audit log     t   next theme     ?   this help     q   quit

Read-only mode (--read-only, OPSCONSOLE_READ_ONLY=1, or read_only in the
inventory) removes every key that changes something; the operations layer
refuses them too.
"""


class UnfinishedScreen(ModalScreen[str]):
    """An operation a dead console left behind: resume it, roll it back, or later."""

    BINDINGS = [Binding("escape", "later", "Later", id="unfinished.later")]

    def __init__(self, record: OpRecord, read_only: bool) -> None:
        super().__init__()
        self.record, self.read_only = record, read_only

    def compose(self) -> ComposeResult:
        r = self.record
        done = set(r.done_steps)
        live = r.liveness()
        why = (f"It is still live: {live}. It cannot be resumed or rolled back from here."
               if live else "It was written by a newer opsconsole: use that version."
               if r.newer else f"It stopped {r.state} after {len(done)} of {len(r.steps)} "
               "steps" + (f": {r.error}" if r.error else "."))
        with Vertical(id="confirm"):
            yield Label(Text(f"{'Running' if live else 'Unfinished'}: {r.kind} {r.target}",
                             style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(Text(f"Started by {r.who or '?'} (journal {r.op}). {why}"))
                for i, title in enumerate(r.steps):
                    mark = "✔" if i in done else "·"
                    yield Static(Text(f"{mark} {i + 1}. {title}"), classes="step")
            with Horizontal(id="confirm-buttons"):
                if not (self.read_only or live or r.newer):
                    yield Button("Resume", variant="primary", id="unfinished-resume")
                    yield Button("Roll back", variant="warning", id="unfinished-rollback")
                yield Button("Later", id="unfinished-later")

    @on(Button.Pressed, "#unfinished-resume")
    def resume(self) -> None:
        self.dismiss("resume")

    @on(Button.Pressed, "#unfinished-rollback")
    def rollback(self) -> None:
        self.dismiss("rollback")

    @on(Button.Pressed, "#unfinished-later")
    def action_later(self) -> None:
        self.dismiss("later")


def _when(value: object) -> str:
    try:
        return time.strftime("%m-%d %H:%M:%S", time.localtime(float(value)))  # type: ignore
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _cell(value: object, most: int = 200) -> str:
    """A record's value as plain text: control characters shown escaped, long ones cut."""
    text = "" if value is None else str(value)
    text = UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    return text if len(text) <= most else text[:most - 1] + "…"


class AuditScreen(ModalScreen[None]):
    """Every mutating action: who, from where, what, when, how it went (newest first)."""

    BINDINGS = [Binding("escape,q,L", "dismiss", "Close", id="audit.close")]

    def __init__(self, records: list[dict], damaged: str = "") -> None:
        super().__init__()
        self.records, self.damaged = records, damaged    # damaged: "3 damaged lines skipped…"

    def compose(self) -> ComposeResult:
        from rich.table import Table
        table = Table(title="audit log", expand=True, show_edge=False)
        for col in ("when", "who", "action", "target", "result"):
            table.add_column(col, overflow="fold")
        for r in reversed(self.records):     # any JSON object: show what it has, "?" for odd
            table.add_row(Text(_when(r.get("time"))), *(
                Text(_cell(r.get(k))) for k in ("who", "action", "target", "result")))
        with VerticalScroll(id="help"):
            if self.damaged:
                yield Static(Text(f"⚠ {self.damaged}"), id="audit-damaged")
            yield Static(table if self.records else Text("nothing audited yet"))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(HELP))
