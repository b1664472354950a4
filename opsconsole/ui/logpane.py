"""A log you can read: focusable, scrolls, follows the newest line, and `/` searches it."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Log

from ..ops import registry


def searches() -> Binding:
    """In a log, the tree's filter key searches: same binding id, so the keymap moves both."""
    return Binding(registry.KEYS["filter"].key, "search", "Search", show=False, id="filter")


class LogPane(Vertical):
    """Lines are appended as they come; while a search is typed only the lines holding it
    are shown (esc shows them all again)."""

    BINDINGS = [searches(), Binding("escape", "clear_search", "Clear", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list[str] = []
        self.needle = ""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search this log…", classes="log-search")
        yield Log(classes="log-lines", auto_scroll=True)

    def on_mount(self) -> None:
        self.query_one(Input).display = False

    def show(self, lines: list[str]) -> None:
        """The log as it is now; only lines not seen yet are written."""
        new, self.lines = lines[len(self.lines):], list(lines)
        if self.needle:
            new = [line for line in new if self.needle in line.lower()]
        if new:
            self.query_one(Log).write_lines(new)

    def _refill(self) -> None:
        log = self.query_one(Log)
        log.clear()
        log.write_lines([line for line in self.lines
                         if not self.needle or self.needle in line.lower()])

    def action_search(self) -> None:
        box = self.query_one(Input)
        box.display = True
        box.focus()

    @on(Input.Changed)
    def _searched(self, event: Input.Changed) -> None:
        event.stop()
        self.needle = event.value.strip().lower()
        self._refill()

    @on(Input.Submitted)
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(Log).focus()

    def action_clear_search(self) -> None:
        box = self.query_one(Input)
        if not box.display:
            return
        box.value, box.display, self.needle = "", False, ""
        self._refill()
        self.query_one(Log).focus()
