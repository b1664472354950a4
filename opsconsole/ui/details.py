"""The right pane: every attribute of the selected entity and what hangs off it."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from .. import present
from ..model import VM, Host, Node, ProxyServer, Service, Snapshot

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
        title = self.style_pieces(present.label(entity, snap))
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, value in present.details(entity, snap):
            table.add_row(name, Text(value))
        parts: list = [title, Text(""), table]
        related = self._related(entity, snap)
        if related is not None:
            parts += [Text(""), related]
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

    def _related(self, entity, snap: Snapshot):
        if isinstance(entity, Node):
            tasks = snap.tasks_on_node(entity.swarm_id, wanted_only=False)
            title = Text(f"tasks on {entity.hostname} ({len(tasks)}, with history)")
            return self._tasks_table(title, [(t, entity.hostname) for t in tasks], where=False)
        if isinstance(entity, Service):
            def where(t):
                n = snap.get(f"node:{t.node_id}")
                return n.hostname if isinstance(n, Node) else "unassigned"
            tasks = sorted(snap.tasks_of_service(entity.swarm_id), key=lambda t: (where(t), t.slot))
            running, desired = snap.convergence(entity)
            return self._tasks_table(Text(f"tasks by node: {running}/{desired} running"),
                                     [(t, where(t)) for t in tasks])
        if isinstance(entity, ProxyServer):
            sessions = snap.sessions_of_server(entity)
            t = Table(title=f"{len(sessions)} sessions  "
                            f"{sparkline(list(self.history.get(entity.id, [])))}",
                      title_justify="left", show_edge=False, pad_edge=False, expand=True)
            for col in ("session", "client", "age"):
                t.add_column(col)
            for s in sorted(sessions, key=lambda s: s.started_at):
                t.add_row(Text(s.session_id), Text(s.client),
                          Text(present.duration(max(0, snap.taken_at - s.started_at))))
            return t
        if isinstance(entity, VM):
            node = snap.node_of_vm(entity)
            lines = [Text(f"swarm node: {node.hostname if node else 'none'}")]
            lines += [Text(f"proxy: {s.backend}/{s.name} {s.status}, {s.cur_sessions} sessions")
                      for s in snap.servers_of_vm(entity.name)]
            return Group(*lines)
        if isinstance(entity, Host):
            vms = [v for v in snap.vms if v.host == entity.name]
            return Group(*(Text(f"{v.name}: {v.state}") for v in vms))
        return None
