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
from ..ops import registry
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


# Keys of the tree and of Textual itself, not remappable: they head "Moving around".
FIXED_KEYS = [("↑ ↓ PgUp PgDn", "move in the tree"),
              ("← →", "fold / unfold (shift+← parent)"),
              ("ctrl+p", 'command palette: every action on every node ("drain vm-03")')]


def help_text(shown: dict[str, str]) -> str:
    """The help screen, from the registry, naming each key as `shown` (binding id -> key
    as the operator sees it now)."""
    out = []
    for title in registry.SECTIONS:
        rows = FIXED_KEYS if title == registry.MOVING else []
        rows = rows + [(shown[k.id], k.help) for k in registry.KEYS.values()
                       if k.section == title]
        width = max(3, *(len(key) for key, _ in rows)) + 2
        out.append(title)
        out += ["  " + key.ljust(width) + words.replace("\n", "\n  " + " " * width)
                for key, words in rows]
        out.append("")
    typed = [op.name for op in registry.OPERATIONS.values() if op.typed]
    return "\n".join(out) + (
        f"\nEvery change shows its plan and its checks first; {registry.listed(typed, 'and')}\n"
        "ask you to type the target's name. One operation at a time in the whole cluster:\n"
        "the lock is in the Swarm, and the header shows who holds it.\n\n"
        "Read-only mode (--read-only, OPSCONSOLE_READ_ONLY=1, or read_only in the\n"
        "inventory) removes every key that changes something; the operations layer\n"
        "refuses them too.\n")


def _closes(binding_id: str) -> Binding:
    """The key that opened a screen closes it: same binding id, so the keymap moves both."""
    return Binding(registry.KEYS[binding_id].key, "dismiss", "Close", show=False, id=binding_id)


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

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="audit.close"), _closes("audit")]

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
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="help.close"), _closes("help")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(self.text))
