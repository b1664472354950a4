"""The TUI's side of the service actions: which service an action means (the selected
service, or the service of the selected task), and the value that scale and image ask for
before their plan is made."""
from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from ..model import Service, Snapshot, Task

SERVICE_TARGETS = ("service", "replicas", "image")
# target kind -> (what is asked, what the current one is, a hint of its form)
ASKED: dict[str, tuple[str, Callable[[Service], str], str]] = {
    "replicas": ("replicas", lambda s: str(s.replicas), "a whole number from 0"),
    "image": ("image", lambda s: s.image, "[registry/]name[:tag][@sha256:digest]"),
}


def service_of(entity: object, snap: Snapshot) -> Service | None:
    if isinstance(entity, Service):
        return entity
    if isinstance(entity, Task):
        return snap.service(entity.service_id)
    return None


def palette_services(snap: Snapshot) -> list[tuple[str, str]]:
    return [(s.name, s.name) for s in sorted(snap.services, key=lambda s: s.name)]


class ValueScreen(ModalScreen[str | None]):
    """One line: the new replica count or image of a service (escape: nothing)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="value.cancel")]
    DEFAULT_CSS = """
    ValueScreen { align: center middle; }
    #value { width: 70; max-width: 95%; height: auto; border: thick $accent;
             background: $surface; padding: 1 2; }
    """

    def __init__(self, kind: str, asked: str, service: Service) -> None:
        super().__init__()
        self.kind, self.asked, self.service = kind, asked, service

    def compose(self) -> ComposeResult:
        what, now, form = ASKED[self.asked]
        with Vertical(id="value"):
            yield Label(Text(f"{self.kind} {self.service.name}: the new {what} "
                             f"(now {now(self.service)})"), id="value-title")
            yield Input(placeholder=form, id="value-input")

    def on_mount(self) -> None:
        self.query_one("#value-input").focus()

    @on(Input.Submitted, "#value-input")
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
