"""Modal screens: the confirmation every change goes through, the questions before quit
and abort, the unfinished operation's offer, help and the audit log.

Every dialog fits the terminal (80x24 too): its body (#confirm-body) scrolls, while the
title, the type-to-confirm box and the buttons stay in view."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from ..config import UNSAFE
from ..ops import registry
from ..ops.engine import Operation, Plan
from ..ops.records import OpRecord
from .logpane import searches

LEVEL_ROLES = {"ok": "ok", "warn": "warn", "fail": "bad"}
T = TypeVar("T")


class Dialog(ModalScreen[T]):
    """A box (#confirm) whose body (#confirm-body) gets what the rest leaves of the screen."""

    def on_mount(self) -> None:
        self.call_after_refresh(self._fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        box, body = self.query_one("#confirm"), self.query_one("#confirm-body")
        rest = sum(w.outer_size.height for w in box.children if w is not body and w.display)
        body.styles.max_height = max(3, self.size.height - box.styles.gutter.height - rest)


def step_list(titles: list[str], marks: list[str] | None = None,
              numbers: list[int] | None = None) -> list[Static]:
    """Steps one per line, numbered as in their plan (`numbers`, from 0, else in order)."""
    return [Static(Text(f"{marks[i] + ' ' if marks else ''}"
                        f"{(numbers[i] if numbers else i) + 1}. {title}"), classes="step")
            for i, title in enumerate(titles)]


class ConfirmScreen(Dialog[bool]):
    """Shows exactly what will happen and what the checks found.

    When `typed` is set the operator must type that name before Confirm
    works; a plan the guards refused can only be cancelled.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm.cancel")]

    def __init__(self, plan: Plan, style: Callable, typed: str = "",
                 rehearse: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.plan, self.style_pieces, self.typed = plan, style, typed
        self.rehearse = rehearse        # plays the plan on a simulated twin (the app's)

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="confirm"):
            yield Label(Text(f"{plan.kind} {plan.target}", style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(Text("Checks", style="bold"))
                for c in plan.checks:
                    yield Static(self.style_pieces([
                        (f"{'✔' if c.level == 'ok' else '⚠' if c.level == 'warn' else '✘'} ",
                         LEVEL_ROLES[c.level]), (f"{c.name}: ", "plain"), (c.text, "plain")]),
                        classes="check")
                yield Static(Text("\nWhat will happen", style="bold"))
                yield from step_list([step.title for step in plan.steps])
            if plan.refused:
                yield Label(Text("Refused: fix what the checks name first."), id="confirm-refused")
            elif self.typed:
                yield Input(placeholder=f"type {self.typed} to confirm", id="confirm-input")
                yield Label("", id="confirm-why")
            with Horizontal(id="confirm-buttons"):
                if not plan.refused:
                    yield Button("Confirm", variant="error" if self.typed else "primary",
                                 id="confirm-yes", disabled=bool(self.typed))
                if self.rehearse is not None:
                    yield Button("Rehearse", id="confirm-rehearse")
                yield Button("Cancel", id="confirm-no")

    def on_mount(self) -> None:
        super().on_mount()
        target = "#confirm-input" if self.typed and not self.plan.refused else \
            "#confirm-yes" if not self.plan.refused else "#confirm-no"
        self.query_one(target).focus()

    @on(Input.Changed, "#confirm-input")
    def typed_changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm-yes", Button).disabled = event.value.strip() != self.typed
        self.query_one("#confirm-why", Label).update("")

    @on(Input.Submitted, "#confirm-input")
    def typed_submitted(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if typed == self.typed:
            self.dismiss(True)
            return
        self.query_one("#confirm-why", Label).update(Text(
            f"✘ {typed!r} is not {self.typed!r}: type {self.typed} exactly to confirm"
            if typed else f"✘ type {self.typed} to confirm (or esc to cancel)"))

    @on(Button.Pressed, "#confirm-yes")
    def yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-rehearse")
    def rehearse_it(self) -> None:
        if self.rehearse is not None:
            self.rehearse()

    @on(Button.Pressed, "#confirm-no")
    def action_cancel(self) -> None:
        self.dismiss(False)


class RehearsalScreen(Dialog[None]):
    """A rehearsal's report, marked as one: nothing real was touched."""

    BINDINGS = [Binding("escape", "close", "Close", id="rehearsal.close")]

    def __init__(self, title: str, report: str, passed: bool) -> None:
        super().__init__()
        self.title_text, self.report, self.passed = title, report, passed

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(Text(self.title_text, style="bold reverse"), id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(Text(self.report))
            with Horizontal(id="confirm-buttons"):
                yield Button("Close", id="rehearsal-close")

    @on(Button.Pressed, "#rehearsal-close")
    def action_close(self) -> None:
        self.dismiss(None)


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


class QuitScreen(Dialog[bool]):
    """Quit while an operation runs: it is paused where it is (interrupted, journaled, the
    cluster lock kept), to resume later, or nothing happens."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="quit.cancel")]

    def __init__(self, title: str, op_id: str) -> None:
        super().__init__()
        self.title_, self.op_id = title, op_id

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(Text(f"{self.title_} is running", style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(Text(
                    "Pause and quit: it stops where it is and the journal records it "
                    "interrupted; the cluster lock stays with it, so no other console starts "
                    "an operation meanwhile. The next console offers to resume or roll it "
                    f"back, as do `opsconsole resume {self.op_id}` and "
                    f"`opsconsole rollback {self.op_id}`."))
            with Horizontal(id="confirm-buttons"):
                yield Button("Pause and quit (resume later)", variant="warning", id="quit-yes")
                yield Button("Cancel", id="quit-no")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#quit-no").focus()

    @on(Button.Pressed, "#quit-yes")
    def yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#quit-no")
    def action_cancel(self) -> None:
        self.dismiss(False)


def _numbered(steps: list[tuple[int, str]]) -> list[Static]:
    return step_list([title for _, title in steps], numbers=[i for i, _ in steps])


class AbortScreen(Dialog[bool]):
    """Abort asks first, and says what it will undo (newest first) and what stays."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="abort.cancel")]

    def __init__(self, op: Operation) -> None:
        super().__init__()
        self.op = op

    def compose(self) -> ComposeResult:
        op = self.op
        begun = list(enumerate(op.plan.steps[:op.begun]))
        undone = [(i, s.title) for i, s in reversed(begun) if s.undo is not None]
        kept = [(i, s.title) for i, s in begun if s.undo is None and not s.wait]
        with Vertical(id="confirm"):
            yield Label(Text(f"Abort {op.title}?", style="bold"), id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(Text(
                    f"It stops now, at step {min(op.index + 1, len(op.plan.steps))} of "
                    f"{len(op.plan.steps)}: {op.current_step or 'the end'}."))
                yield Static(Text("\nUndone, newest first", style="bold"))
                yield from _numbered(undone) if undone else [
                    Static(Text("nothing: no step with an undo has started"))]
                if kept:
                    yield Static(Text("\nStays as it is (no undo)", style="bold"))
                    yield from _numbered(kept)
            with Horizontal(id="confirm-buttons"):
                yield Button("Abort and undo", variant="error", id="abort-yes")
                yield Button("Keep running", id="abort-no")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#abort-no").focus()

    @on(Button.Pressed, "#abort-yes")
    def yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#abort-no")
    def action_cancel(self) -> None:
        self.dismiss(False)


class UnfinishedScreen(Dialog[str]):
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
                yield from step_list(list(r.steps),
                                     ["✔" if i in done else "·" for i in range(len(r.steps))])
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


AUDIT_COLUMNS = ("time", "who", "operation", "target", "result")


def audit_rows(records: list[dict], names: dict[str, str]) -> list[tuple[str, ...]]:
    """One row per record, newest first: its target by name (`names`: Swarm id -> name)
    where the record holds an id. Any JSON object is shown with what it has."""
    rows: list[tuple[str, ...]] = []
    for r in reversed(records):
        target = _cell(r.get("target"))
        rows.append((_when(r.get("time")), _cell(r.get("who")), _cell(r.get("action")),
                     names.get(target, target), _cell(r.get("result"))))
    return rows


class AuditScreen(ModalScreen[None]):
    """Every mutating action: when, who, what, on what, how it went (newest first), one row
    each; `/` searches (every column), esc clears the search, then closes."""

    BINDINGS = [Binding("escape", "back", "Close", id="audit.close"),
                Binding("q", "dismiss", "Close", show=False, id="audit.quit"),
                _closes("audit"), searches()]

    def __init__(self, records: list[dict], damaged: str = "",
                 names: dict[str, str] | None = None, search_key: str = "/") -> None:
        super().__init__()
        self.rows = audit_rows(records, names or {})
        self.damaged = damaged    # "3 damaged lines skipped…"
        self.search_key = search_key    # the filter key as the operator sees it now

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label(Text(f"audit log: {len(self.rows)} entries, newest first  "
                             f"({self.search_key} search, esc close)", style="bold"),
                        id="audit-title")
            if self.damaged:
                yield Static(Text(f"⚠ {self.damaged}"), id="audit-damaged")
            yield Input(placeholder="search: who, operation, target, result…", id="audit-search")
            table: DataTable = DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(*AUDIT_COLUMNS)
            yield table
            if not self.rows:
                yield Static(Text("nothing audited yet"), id="audit-empty")

    def on_mount(self) -> None:
        self.query_one("#audit-search").display = False
        self._show("")
        self.query_one("#audit-table").focus()

    def _show(self, needle: str) -> None:
        table = self.query_one("#audit-table", DataTable)
        table.clear()
        needle = needle.lower()
        for row in self.rows:
            if not needle or any(needle in cell.lower() for cell in row):
                table.add_row(*(Text(cell, no_wrap=True, overflow="ellipsis") for cell in row))

    def action_search(self) -> None:
        box = self.query_one("#audit-search", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#audit-search")
    def _searched(self, event: Input.Changed) -> None:
        self._show(event.value.strip())

    @on(Input.Submitted, "#audit-search")
    def _search_done(self) -> None:
        self.query_one("#audit-table").focus()

    def action_back(self) -> None:
        box = self.query_one("#audit-search", Input)
        if box.display:
            box.value, box.display = "", False
            self.query_one("#audit-table").focus()
        else:
            self.dismiss()


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="help.close"), _closes("help")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(self.text))
