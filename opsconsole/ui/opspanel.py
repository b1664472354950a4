"""The bottom pane: each operation with its progress, current step, time and log.

The newest operation has the room: its log (a LogPane: focus it with tab, scroll, `/` to
search) fills the pane; older ones keep their title line."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar, Static

from .. import present
from ..ops.engine import DONE, FINISHED, PAUSED, RUNNING, Operation
from .logpane import LogPane

UNIT_MARKS = {"done": "✔", "failed": "✘", "current": "▶", "pending": "·"}


class OperationView(Vertical):
    def __init__(self, op: Operation) -> None:
        super().__init__(classes="operation")
        self.op = op
        self.ready = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="op-head"):
            yield Label("", classes="op-title")
            yield ProgressBar(total=1.0, show_eta=False, classes="op-bar")
            yield Label("", classes="op-time")
        yield Label("", classes="op-step")
        yield Label("", classes="op-units")
        yield LogPane(classes="op-log")

    def on_mount(self) -> None:
        self.ready = True
        self.refresh_view()

    def refresh_view(self) -> None:
        if not self.ready:      # mounted, not composed yet: its mount shows it
            return
        op = self.op
        self.set_class(op.state == "paused", "-paused")
        self.set_class(op.state == "failed", "-failed")
        self.set_class(op.state == "done", "-done")
        self.query_one(".op-title", Label).update(Text(f"{op.title}  [{op.state}]"))
        self.query_one(ProgressBar).update(progress=op.progress)
        n = len(op.plan.steps)
        self.query_one(".op-time", Label).update(Text(present.duration(op.elapsed)))
        at = f"step {min(op.index + 1, n)}/{n}"
        if op.state == DONE:        # an ended one says how it ended, never a stale "now"
            step = "finished"
        elif op.state in FINISHED:
            step = f"{op.state} at {at}" + (f": {op.error}" if op.error else "")
        else:
            step = f"{at}: {op.current_step}" + (f"  — {op.detail}" if op.detail else "")
        self.query_one(".op-step", Label).update(Text(step))
        self.query_one(LogPane).show(op.log)
        units = op.units()
        box = self.query_one(".op-units", Label)
        box.display = bool(units)
        box.update(Text("  ".join(f"{UNIT_MARKS[status]} {group}" for group, status in units)))


class OpsPanel(VerticalScroll, can_focus=False):
    """Newest operation first; views are kept and refreshed, not rebuilt. Tab goes past
    it, straight to the newest operation's log."""

    def __init__(self, hint: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hint = hint          # shown until the first operation: which keys start one
        self.views: dict[str, OperationView] = {}

    def compose(self) -> ComposeResult:
        yield Static(self.hint, id="ops-empty")

    def show(self, op: Operation) -> None:
        view = self.views.get(op.id)
        if view is None:
            self.query("#ops-empty").remove()
            for older in self.views.values():
                older.add_class("-old")
            self.add_class("-busy")
            view = self.views[op.id] = OperationView(op)
            self.mount(view, before=0)
        else:
            view.refresh_view()

    def tick(self) -> None:
        if not self.app.is_running:  # shutting down: the views may be gone already
            return
        for view in self.views.values():
            if view.op.state in (RUNNING, PAUSED):
                view.refresh_view()
