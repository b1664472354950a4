"""Inspect (`i`) and copy (`y`) the selected entity. Swarm objects (nodes, services, tasks)
are shown as Swarm gives them (read from the provider, pretty JSON); the rest as the
console knows them. JSON escapes every control character, so what a remote wrote cannot
reach the terminal raw; the text is cut at OUTPUT_CAP."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from ..model import VM, Host, Node, ProxyServer, ProxySession, Service, Task
from ..providers.base import OUTPUT_CAP, ProviderError, SwarmKind, SwarmProvider, cut_marker


def swarm_kind(entity: object) -> tuple[SwarmKind, str] | None:
    if isinstance(entity, Node):
        return "node", entity.swarm_id
    if isinstance(entity, Service):
        return "service", entity.swarm_id
    if isinstance(entity, Task):
        return "task", entity.swarm_id
    return None


def copy_text(entity: object) -> str:
    """What `y` copies: a Swarm object's id, else the name the console and its CLI use."""
    if isinstance(entity, (Node, Service, Task)):
        return entity.swarm_id
    if isinstance(entity, ProxyServer):
        return f"{entity.backend}/{entity.name}"
    if isinstance(entity, ProxySession):
        return entity.session_id
    if isinstance(entity, (Host, VM)):
        return entity.name
    return str(getattr(entity, "name", "") or getattr(entity, "id", ""))


def pretty(obj: Any) -> str:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    if len(text) > OUTPUT_CAP:
        text = text[:OUTPUT_CAP] + "\n" + cut_marker(len(text) - OUTPUT_CAP)
    return text


class InspectScreen(ModalScreen[None]):
    """Modal: the console's own keys (drain, scale...) do nothing while it is open."""

    BINDINGS = [Binding("escape,q,i", "dismiss", "Close", id="inspect.close")]
    DEFAULT_CSS = """
    InspectScreen { background: $surface; }
    InspectScreen #inspect-title { height: 1; padding: 0 1; background: $panel; width: 100%; }
    """

    def __init__(self, entity: object, swarm: SwarmProvider) -> None:
        super().__init__()
        self.entity, self.swarm = entity, swarm
        self.text = ""

    def compose(self) -> ComposeResult:
        kind = type(self.entity).__name__.lower()
        yield Label(f"{kind} {copy_text(self.entity)} (read-only; esc closes)",
                    id="inspect-title", markup=False)
        with VerticalScroll(id="inspect-body"):
            yield Static("reading…", id="inspect-json", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#inspect-body").focus()
        self.read()

    @work(exclusive=True, group="inspect", exit_on_error=False, description="inspect")
    async def read(self) -> None:
        found = swarm_kind(self.entity)
        try:
            obj = await self.swarm.inspect(*found) if found else \
                dataclasses.asdict(self.entity)  # type: ignore[call-overload]
            self.text = pretty(obj)
            self.query_one("#inspect-json", Static).update(
                Syntax(self.text, "json", word_wrap=True, theme="ansi_dark"))
        except ProviderError as e:
            self.text = f"✘ {e}"
            self.query_one("#inspect-json", Static).update(self.text)
