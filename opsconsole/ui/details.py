"""The right pane: every attribute of the selected entity and what hangs off it."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from .. import kinds, present
from ..model import Snapshot

SPARK = "▁▂▃▄▅▆▇█"
Style = Callable[[list[present.Piece]], Text]


def sparkline(values: list[int]) -> str:
    top = max(values) or 1
    return "".join(SPARK[min(len(SPARK) - 1, v * (len(SPARK) - 1) // top)] for v in values)


class Details(Static):
    """Rendered from the snapshot; remote text goes in as Text, never markup."""

    def __init__(self, style: Style, hint: str, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.style_pieces = style
        self.hint = hint          # the keys to move around, shown while nothing is selected
        self.history: dict[str, deque[int]] = {}   # proxy server id -> session counts

    def record(self, snap: Snapshot) -> None:
        for s in snap.servers:
            self.history.setdefault(s.id, deque(maxlen=40)).append(s.cur_sessions)

    def show(self, entity_id: str | None, snap: Snapshot) -> None:
        entity = snap.get(entity_id) if entity_id else None
        if entity is None:
            self.update(Text(f"Select something in the tree.\n\n{self.hint}", style="dim"))
            return
        title = self.style_pieces(kinds.label(entity, snap))
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, value in present.details(entity, snap):
            table.add_row(name, Text(value))
        parts: list = [title, Text(""), table]
        related = kinds.related(entity, snap)
        if related is not None:
            parts += [Text(""), self._related(related, snap.taken_at)]
        self.update(Group(*parts))

    def _tasks_table(self, title: Text, rows, where: bool = True) -> Table:
        """Tasks one row each: only the error folds, the words are never cut in two."""
        t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False,
                  expand=True)
        cols = ("task", "where", "state", "desired") if where else ("task", "state", "desired")
        for col in cols:
            t.add_column(col, no_wrap=True, overflow="ellipsis",
                         min_width=8 if col in ("state", "desired") else None)
        t.add_column("error", overflow="fold", ratio=1)
        for task, node in rows:
            t.add_row(Text(task.name), *([Text(node)] if where else []),
                      self.style_pieces([(task.state, present.TASK_ROLES.get(task.state, "warn"))]),
                      Text(task.desired_state), Text(task.error or task.message))
        return t

    def _related(self, related: kinds.Related, now: float):
        if related.tasks is not None:
            return self._tasks_table(Text(related.title), related.tasks, related.where)
        if related.sessions is not None:
            title = related.title
            if related.history:
                title += f"  {sparkline(list(self.history.get(related.history, [])))}"
            t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False,
                      expand=True)
            for col in ("session", "client", "age"):
                t.add_column(col)
            for s in related.sessions:
                t.add_row(Text(s.session_id), Text(s.client),
                          Text(present.duration(max(0, now - s.started_at))))
            return t
        return Group(*(Text(line) for line in related.lines))
