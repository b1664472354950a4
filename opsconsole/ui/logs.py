"""The logs screen (`l`): a service's or task's log as the Swarm gives it, the last lines
then new ones as they come. Lines are text, never markup (the provider has already removed
escape sequences and cut long lines); only the last KEEP lines are kept. `f` pauses or
resumes following, `/` shows only the lines holding a word, `w` wraps long lines."""
from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, RichLog

from ..model import Service, Task
from ..providers.base import LOG_TAIL, LogSource, ProviderError, SwarmProvider

KEEP = 5000             # lines held for scrolling back and searching


def log_source(entity: object) -> tuple[LogSource, str, str] | None:
    """(kind, swarm id, name) of the log the selected entity has, if it has one."""
    if isinstance(entity, Service):
        return "service", entity.swarm_id, entity.name
    if isinstance(entity, Task):
        return "task", entity.swarm_id, entity.name
    return None


class LogsScreen(ModalScreen[None]):
    """Modal: the console's own keys (drain, scale...) do nothing while it is open."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="logs.close"),
                Binding("f", "follow", "Follow", id="logs.follow"),
                Binding("slash", "search", "Search", id="logs.search"),
                Binding("w", "wrap", "Wrap", id="logs.wrap")]
    DEFAULT_CSS = """
    LogsScreen { background: $surface; }
    LogsScreen #logs-status { height: 1; padding: 0 1; background: $panel; width: 100%; }
    LogsScreen #logs-search { display: none; }
    LogsScreen #logs-search.shown { display: block; }
    """

    def __init__(self, title: str, lines: Callable[[], AsyncIterator[str]]) -> None:
        super().__init__()
        self.title_text, self.source = title, lines
        self.lines: deque[str] = deque(maxlen=KEEP)
        self.following, self.search, self.ended = True, "", ""

    @classmethod
    def of(cls, kind: LogSource, swarm_id: str, name: str, swarm: SwarmProvider,
           tail: int = LOG_TAIL) -> LogsScreen:
        return cls(f"logs of {kind} {name}",
                   lambda: swarm.logs(kind, swarm_id, tail=tail, follow=True))

    def compose(self) -> ComposeResult:
        yield Label("", id="logs-status")
        yield Input(placeholder="show lines holding… (empty: all)", id="logs-search")
        yield RichLog(max_lines=KEEP, wrap=False, markup=False, highlight=False,
                      auto_scroll=True, id="logs-view")
        yield Footer()

    def on_mount(self) -> None:
        self._status()
        self.query_one(RichLog).focus()
        self.stream()

    @work(exclusive=True, group="logs", exit_on_error=False, description="follow the log")
    async def stream(self) -> None:
        try:
            async for line in self.source():
                self.lines.append(line)
                if self._shown(line):
                    self.query_one(RichLog).write(Text(line))
            self.ended = "the log ended"
        except ProviderError as e:
            self.ended = f"✘ {e}"
        self._status()

    def _shown(self, line: str) -> bool:
        return not self.search or self.search.lower() in line.lower()

    def _status(self) -> None:
        parts = [self.title_text, "following" if self.following else "paused (f follows)"]
        if self.search:
            parts.append(f"showing lines holding {self.search!r}")
        if self.ended:
            parts.append(self.ended)
        self.query_one("#logs-status", Label).update(Text(" · ".join(parts)))

    def _redraw(self) -> None:
        view = self.query_one(RichLog)
        view.clear()
        for line in self.lines:
            if self._shown(line):
                view.write(Text(line))

    def action_follow(self) -> None:
        self.following = not self.following
        view = self.query_one(RichLog)
        view.auto_scroll = self.following
        if self.following:
            view.scroll_end(animate=False)
        self._status()

    def action_wrap(self) -> None:
        view = self.query_one(RichLog)
        view.wrap = not view.wrap
        self._redraw()

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.add_class("shown")
        box.value = self.search
        box.focus()

    @on(Input.Submitted, "#logs-search")
    def searched(self, event: Input.Submitted) -> None:
        self.search = event.value.strip()
        event.input.remove_class("shown")
        self.query_one(RichLog).focus()
        self._redraw()
        self._status()

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "logs")     # closes the stream
