"""Modal screens: the confirmation every change goes through, and help."""
from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from .. import present
from ..ops.engine import Plan

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
Every change shows its plan and its checks first; drain asks you to type the name.

Operations
  p   pause / resume the running operation     x   abort it (restores what it can)

Other
  t   next theme     ?   this help     q   quit

Read-only mode (--read-only, OPSCONSOLE_READ_ONLY=1, or read_only in the
inventory) removes every key that changes something; the operations layer
refuses them too.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(HELP))

    def action_dismiss(self) -> None:
        self.dismiss(None)
