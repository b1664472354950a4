"""Helpers shared by the UI tests (imported as a plain module: tests/ui is on sys.path).

Every wait here polls a real condition with a deadline; nothing sleeps for a
fixed "long enough". The deadlines are generous because CI runs on a loaded
2-core machine: a passing test returns as soon as its condition holds.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Label
from textual.widgets.tree import TreeNode

from opsconsole.config import Inventory, WindowOptions
from opsconsole.model import Node
from opsconsole.ops.plans import Timing
from opsconsole.providers.sim import ManualClock, SimCluster
from opsconsole.session import Session, open_session
from opsconsole.ui.app import OpsConsole
from opsconsole.ui.details import Details
from opsconsole.ui.tree import GROUPS, ClusterTree

WAIT = 30.0          # seconds: the most any condition may take before the test fails


@dataclass
class Rig:
    """One console under test and the simulated world behind it."""
    app: OpsConsole
    sim: SimCluster
    session: Session
    clock: ManualClock | None
    state_dir: Path

    @property
    def tree(self) -> ClusterTree:
        return self.app.query_one(ClusterTree)

    def node_id(self, hostname: str) -> str:
        """The sim's swarm id of a node, by hostname."""
        return next(n.swarm_id for n in self.sim.nodes.values() if n.hostname == hostname)

    def node(self, hostname: str) -> Node:
        return self.sim.nodes[self.node_id(hostname)]

    def world(self) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """What a mutating key would change: node availabilities, proxy admin states."""
        return ({n.hostname: n.availability for n in self.sim.nodes.values()},
                dict(self.sim.admin))

    def wanted_tasks_on(self, hostname: str) -> list:
        nid = self.node_id(hostname)
        return [t for t in self.sim.tasks.values() if t.node_id == nid and t.wanted]


def make_console(tmp_path: Path, *, speed: float = 30.0, manual_clock: bool = False,
                 read_only: bool = False, timing: Timing = Timing(), theme: str = "",
                 poll_interval: float = 0.25, seed: int = 1,
                 prepare: Callable[[SimCluster], None] | None = None,
                 maintenance: WindowOptions = WindowOptions(), sim: SimCluster | None = None,
                 keys: dict[str, str] | None = None, role: str = "admin",
                 identity=None) -> Rig:
    """A console on its own simulated cluster, with journal and audit under tmp_path.

    `manual_clock` freezes the sim: it moves only when the test advances the clock.
    `prepare` may change the sim before the console's first snapshot. `keys`: the
    inventory's `[console] keys`.
    """
    clock = ManualClock() if manual_clock else None
    sim = sim or SimCluster(seed=seed, speed=speed, **({"clock": clock} if clock else {}))
    if prepare:
        prepare(sim)
    state_dir = tmp_path / "state"
    session = open_session(Inventory(state_dir=state_dir, timing=timing,
                                     maintenance=maintenance, keys=keys or {}),
                           read_only=read_only, providers=sim.providers(), role=role,
                           identity=identity)
    app = OpsConsole(session, theme=theme, poll_interval=poll_interval)
    return Rig(app, sim, session, clock, state_dir)


async def until(pilot: Pilot, cond: Callable[[], object], what: str,
                timeout: float = WAIT, step: float = 0.02,
                between: Callable[[], None] | None = None) -> None:
    """Let the app run until `cond()` is true; fail naming `what` after `timeout`.

    `between` runs before each check (e.g. to move a manual clock on).
    """
    deadline = time.monotonic() + timeout
    while True:
        if between is not None:
            between()
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(step)


async def started(pilot: Pilot, c: Rig) -> None:
    """Wait for the first snapshot to be in the tree."""
    await until(pilot, lambda: c.app.snapshot.nodes and "vm:vm-01" in c.tree.index,
                "the first snapshot in the tree")


def walk(node: TreeNode) -> list[TreeNode]:
    """Every node under `node` (not itself), depth first, in display order."""
    out: list[TreeNode] = []
    for child in node.children:
        out.append(child)
        out.extend(walk(child))
    return out


def tree_ids(tree: ClusterTree) -> set[str]:
    """Entity ids in the tree (groups left out)."""
    return {n.data for n in walk(tree.root) if n.data not in GROUPS}


def plain_labels(tree: ClusterTree) -> list[str]:
    return [n.label.plain for n in walk(tree.root)]


def render_text(renderable, width: int = 200) -> str:
    """A renderable as the plain text a terminal would show."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def details_text(app: OpsConsole) -> str:
    return render_text(app.query_one(Details).content)


def footer_keys(c: Rig) -> dict[str, str]:
    """The actions the footer offers right now, and the key it shows for each."""
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey
    return {key.action: key.key_display for key in c.app.query_one(Footer).query(FooterKey)}


def footer_actions(c: Rig) -> set[str]:
    """The actions the footer offers right now."""
    return set(footer_keys(c))


def summary_text(app: OpsConsole) -> str:
    return str(app.query_one("#summary", Label).content)


def table_rows(table) -> list[list[str]]:
    """A DataTable's rows as the plain text of their cells, top to bottom."""
    return [[str(getattr(cell, "plain", cell)) for cell in table.get_row_at(i)]
            for i in range(table.row_count)]
