"""The standing answers to on-call's two questions: what is wrong now (Problems) and what
would break if a host or VM died now (Resilience, N-1). Both are read-only views."""
from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option

from .. import present
from ..ops.diagnosis import Concern
from ..ops.guards import FAIL, OK, WARN
from ..ops.resilience import Assessment

MARKS = {FAIL: ("✘ ", "bad"), WARN: ("⚠ ", "warn"), OK: ("✔ ", "ok")}


class ProblemsScreen(ModalScreen[str]):
    """Everything wrong now, worst first; Enter jumps to the row's entity in the tree."""

    BINDINGS = [Binding("escape", "close", "Close", id="problems.close")]

    def __init__(self, concerns: list[Concern], now: float, style: Callable) -> None:
        super().__init__()
        self.concerns, self.now, self.style_pieces = concerns, now, style

    def compose(self) -> ComposeResult:
        with Vertical(id="problems", classes="standing"):
            fails = sum(c.level == FAIL for c in self.concerns)
            yield Label(Text(f"Problems: {len(self.concerns)} ({fails} failing)"
                             if self.concerns else "Problems: none", style="bold"))
            yield OptionList(*(Option(self._line(c), id=str(i))
                               for i, c in enumerate(self.concerns)), id="problems-list")
            yield Label(Text("enter: go to it   esc: close", style="dim"))

    def _line(self, c: Concern) -> Text:
        mark, role = MARKS.get(c.level, ("· ", "plain"))
        age = present.duration(self.now - c.since) if c.since else ""
        return self.style_pieces([(mark, role), (f"{age:>7}  " if age else " " * 9, "muted"),
                                  (c.message, "plain")])

    @on(OptionList.OptionSelected, "#problems-list")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        entity = self.concerns[int(event.option.id or 0)].entity
        if entity:
            self.dismiss(entity)
        else:
            self.notify("nothing in the tree to go to for this one", timeout=3)

    def action_close(self) -> None:
        self.dismiss("")


class ResilienceScreen(ModalScreen[None]):
    """N-1, domain by domain: what the loss of each host or VM would do now, and the fix."""

    BINDINGS = [Binding("escape", "close", "Close", id="resilience.close")]

    def __init__(self, answer: Assessment, style: Callable) -> None:
        super().__init__()
        self.answer, self.style_pieces = answer, style

    def compose(self) -> ComposeResult:
        with Vertical(id="resilience", classes="standing"):
            yield Label(Text(self.answer.verdict, style="bold"))
            with VerticalScroll(id="resilience-body"):
                for source in self.answer.unknown:
                    yield Static(self.style_pieces([("? ", "bad"), (
                        f"{source} cannot be read: the answer is incomplete", "plain")]))
                for o in self.answer.outcomes:
                    mark, role = MARKS[o.level if not o.survived else OK]
                    yield Static(self.style_pieces([(mark, role), (o.domain.label, "accent")]))
                    for f in o.findings:
                        m, r = MARKS.get(f.level, ("· ", "plain"))
                        yield Static(self.style_pieces([("   " + m, r), (f.message, "plain")]))
                        if f.fix:
                            yield Static(self.style_pieces([("      fix: ", "muted"),
                                                            (f.fix, "plain")]))
            yield Label(Text("esc: close   (opsconsole resilience --rehearse NAME plays a "
                             "failure on a simulated twin)", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
