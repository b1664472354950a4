"""The Textual app: summary on top, tree and details, operations below.

Workers never touch widgets: the refresh loop and the engine post messages,
and the handlers here update the screen. Read-only is enforced twice: keys
and palette entries are absent here, and the ops layer refuses regardless. The same holds
for what the console's role does not allow (read-only is the monitor role).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.events import Key, Resize
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Tree
from textual.worker import Worker, WorkerState

from .. import kinds, present, rehearsal
from ..model import VM, Host, Node, Snapshot
from ..ops import catalog, registry, resilience
from ..ops.diagnosis import Concern, Diagnosis
from ..ops.engine import FINISHED, INTERRUPTED, Operation, Plan, StepFailed
from ..ops.guards import FAIL
from ..ops.plans import PlanError
from ..ops.records import OpRecord
from ..ops.roles import ADMIN, MONITOR, RoleError
from ..session import Session
from .details import Details
from .header import fit
from .inspect import InspectScreen, copy_text
from .logs import LogsScreen, log_source
from .opspanel import OpsPanel
from .screens import (
    AbortScreen,
    AuditScreen,
    ConfirmScreen,
    HelpScreen,
    QuitScreen,
    RehearsalScreen,
    UnfinishedScreen,
    help_text,
)
from .services import ASKED, SERVICE_TARGETS, ValueScreen, palette_services, service_of
from .standing import ProblemsScreen, ResilienceScreen
from .themes import DEFAULT, ROLE_FALLBACKS, ROLE_VARIABLES, load_themes
from .tree import ClusterTree


def _binding(key: registry.Key) -> Binding:
    """An operation runs as `op('<name>')` (one action for all, whatever the name's
    spelling); the console's own keys run `action_<id>`."""
    action = f"op({key.id!r})" if isinstance(key, registry.Operation) else key.id
    return Binding(key.key, action, key.label, show=key.show, id=key.id)


KEY_BINDINGS = [_binding(k) for k in registry.KEYS.values()]
MUTATING_ACTIONS = frozenset(b.action for b in KEY_BINDINGS if registry.KEYS[str(b.id)].mutating)
READ_ONLY_SAID_S = 5.0      # a burst of mutating keys in read-only mode says so once
N1_INLINE_NODES = 100       # up to this size N-1 is assessed with every refresh
N1_EVERY_S = 30.0           # above it, in a thread at most this often


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class OperationChanged(Message):
    def __init__(self, op: Operation) -> None:
        super().__init__()
        self.op = op


def _palette_targets(kind: registry.Target, snap: Snapshot) -> list[tuple[str, str]]:
    """(target, its name) of every entry the palette offers for an operation on `kind`."""
    if kind == "node":
        return [(n.swarm_id, n.hostname) for n in sorted(snap.nodes, key=lambda n: n.hostname)]
    if kind == "host":
        return [(h.name, h.name) for h in snap.hosts]
    if kind in SERVICE_TARGETS:
        return palette_services(snap)
    return [("cluster", "cluster")]


class NodeCommands(Provider):
    """Palette entries such as "drain vm-03"; no mutating one in read-only mode."""

    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, OpsConsole):
            return
        matcher = self.matcher(query)
        for op in registry.OPERATIONS.values():
            if not app.session.access.allows(op.id):
                continue
            for target, name in _palette_targets(op.targets, app.snapshot):
                text = f"{op.name} {name}"
                score = matcher.match(text)
                if score > 0:
                    yield Hit(score, _highlight(matcher, text),
                              lambda op=op.name, target=target: app.request(op, target),
                              help=escape(op.palette.format(target=name)))


def _highlight(matcher, text: str) -> Content:
    """Like matcher.highlight(), which reads its text as markup: a node's name must not be."""
    content = Content(text)
    for offset in matcher.fuzzy_search.match(matcher.query, text)[1]:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class OpsConsole(App):
    CSS_PATH = "app.tcss"
    TITLE = "opsconsole"
    COMMANDS = App.COMMANDS | {NodeCommands}
    BINDINGS: ClassVar[list[BindingType]] = [*KEY_BINDINGS]

    def __init__(self, session: Session, theme: str = "", poll_interval: float = 2.0) -> None:
        super().__init__()
        self.session = session
        self.snapshot = Snapshot()
        self.poll_interval = poll_interval
        self._theme_wanted = theme
        self._keys = dict(session.inventory.keys)     # [console] keys: binding id -> key(s)
        # binding id -> its key now (remapped or default) as shown: every hint says these
        self.shown = {id_: self.get_key_display(Binding(key, ""))
                      for id_, key in registry.live_keys(self._keys).items()}
        self._roles: dict[str, str] = {}
        self._theme_names: list[str] = []
        self._offered: set[str] = set()     # unfinished operations already offered
        # key -> binding id of every console key, remapped: a key whose binding is hidden
        # now (read-only, or not for this selection) still gets an answer (on_key)
        self._key_ids = {key.strip(): id_ for id_, k in registry.KEYS.items()
                         for key in (self._keys.get(id_) or k.key).split(",")}
        self._read_only_said = -READ_ONLY_SAID_S
        self._diagnosis = Diagnosis()
        self._concerns: list[Concern] = []
        self._n1: resilience.Assessment | None = None
        self._n1_at = -N1_EVERY_S
        self._unfinished: list[OpRecord] = []   # as last offered: the journal is read there
        session.engine.keys = {a: self.shown[a] for a in ("pause", "abort")}
        session.engine.listen(lambda op: self.post_message(OperationChanged(op)))

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            if self._badge():
                yield Label(self._badge(), id="read-only")
            yield Label("", id="summary")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder="filter: name, state, service…", id="filter")
                yield ClusterTree(self.style_pieces, id="tree")
            with VerticalScroll(id="right"):
                yield Details(self.style_pieces, self._details_hint(), id="details")
        yield OpsPanel(self._ops_hint(), id="ops")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        themes, errors = load_themes()
        for theme in themes:
            self.register_theme(theme)
        self._theme_names = [t.name for t in themes]
        for error in errors:
            self.notify(error, title="theme not loaded", severity="warning")
        wanted = self._theme_wanted or DEFAULT
        if wanted not in self.available_themes:
            self.notify(f"no theme {wanted!r}; known: {', '.join(self._theme_names)}",
                        severity="error")
            wanted = DEFAULT
        self.theme = wanted
        if self._keys:
            self.set_keymap(self._keys)
        self.query_one("#filter").display = False
        self.query_one(ClusterTree).focus()
        self.sub_title = self.session.source
        unfinished = self._unfinished = self.session.journal.unfinished()
        if self.session.journal.skipped_note():
            self.notify(self.session.journal.skipped_note(), severity="warning", timeout=15)
        if unfinished:
            self.call_after_refresh(self._offer_unfinished, unfinished[0])
        self.refresh_loop()
        self.set_interval(1.0, self.query_one(OpsPanel).tick)

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual reads messages as markup by default; ours carry remote names and
        errors ("[/x]" would crash the toast), so here they are plain text."""
        super().notify(message, title=title, severity=severity, timeout=timeout,
                       markup=markup)

    def _badge(self) -> str:
        """READ-ONLY for a monitor, the role's name for any other role but a local admin;
        and who, when the person came in through ssh-entry."""
        access = self.session.access
        local = not access.identity.over_ssh
        if access.role == MONITOR:
            word = "READ-ONLY"
        else:
            word = "" if local and access.role == ADMIN else access.role.upper()
        return " · ".join(filter(None, (word, "" if local else access.identity.who)))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Over ssh-entry the files are the service account's: no screenshot saved there."""
        for command in super().get_system_commands(screen):
            if command.title != "Screenshot" or not self.session.access.identity.over_ssh:
                yield command

    def _ops_hint(self) -> str:
        if self.session.read_only:
            return "No operation yet. Read-only: nothing can be changed from here."
        keys = [self.shown[op.id] for op in registry.OPERATIONS.values() if op.targets == "node"]
        return f"No operation yet. Select a node and press {registry.listed(keys)}."

    def _details_hint(self) -> str:
        return f"↑↓ move  ←→ fold  {self.shown['filter']} filter  {self.shown['help']} help"

    # -- colours from the theme ----------------------------------------------------
    def watch_theme(self) -> None:
        variables = self.get_css_variables()
        self._roles = {role: variables.get(var) or variables.get(ROLE_FALLBACKS[var], "")
                       for role, var in ROLE_VARIABLES.items()}
        if self._theme_names:    # the widgets exist: draw them in the new colours
            self.query_one(ClusterTree).relabel_all()
            self._show_details()

    def style_pieces(self, pieces: list[present.Piece]) -> Text:
        roles = self._roles
        return Text.assemble(*((text, roles.get(role, "")) for text, role in pieces))

    # -- the live picture -----------------------------------------------------------
    @work(group="refresh", exclusive=True, exit_on_error=False,
          description="poll the cluster; wake on its events")
    async def refresh_loop(self) -> None:
        swarm = self.session.providers.swarm
        while True:
            snap = await self.session.cluster.snapshot()
            # servers a finished operation left out (a failed VM, an unfinished run) stay
            # out across a HAProxy restart while this console runs
            await self.session.engine.keep_holds(snap)
            self.post_message(SnapshotReady(snap))
            await swarm.wait_for_change(self.poll_interval)
            await asyncio.sleep(0.2)   # coalesce event bursts into one refresh

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if not self.is_running:     # shutting down: the widgets may be gone already
            return
        for notice in set(message.snapshot.notices) - set(self.snapshot.notices):
            self.notify(notice, title="the console acted", severity="warning", timeout=15)
        if message.snapshot.endpoint != self.snapshot.endpoint and self.snapshot.endpoint:
            self.notify(f"now using {message.snapshot.endpoint}", title="swarm manager changed",
                        severity="warning", timeout=15)
        snap = self.snapshot = message.snapshot
        self.query_one(Details).record(snap)
        self.query_one(ClusterTree).show(snap)
        self._concerns = self._diagnosis(snap, self._unfinished)
        if len(snap.nodes) <= N1_INLINE_NODES:      # a few ms: with every refresh
            self._n1 = resilience.assess(snap)
        elif time.monotonic() - self._n1_at > N1_EVERY_S:
            self._n1_at = time.monotonic()
            self._assess_in_thread(snap)
        self._show_summary()
        self._show_details()

    @work(thread=True, exclusive=True, group="n-1")
    def _assess_in_thread(self, snap: Snapshot) -> None:
        """A large cluster's N-1 takes a second or more: off the event loop, now and then."""
        answer = resilience.assess(snap)
        self.call_from_thread(self._assessed, answer)

    def _assessed(self, answer: resilience.Assessment) -> None:
        self._n1 = answer
        self._show_summary()

    def _show_summary(self) -> None:
        """The header: what matters most first; what does not fit the width is left out."""
        parts = present.summary_parts(self.snapshot)
        running = self.session.engine.running
        first = sum(1 for part in parts if part[0][1] == "bad" or part[0][0] == "LOCKED ")
        extra = [[("▶ ", "accent"), (f"{running.title} {running.state}", "warn")]] \
            if running else []
        extra += [[("⚠ ", "warn"), (w, "warn")] for w in self.session.warnings]
        fails = sum(c.level == FAIL for c in self._concerns)
        if self._concerns:      # the way to the list of everything wrong
            n = len(self._concerns)
            extra.append([(f"{self.shown['problems']} {n} problem{'' if n == 1 else 's'}",
                           "bad" if fails else "warn")])
        parts = parts[:first] + extra + parts[first:]
        if self._n1 is not None:    # right after quorum, its nearest kin
            at = next((i + 1 for i, part in enumerate(parts)
                       if part[0][0].startswith("managers")), len(parts))
            parts.insert(at, [(self._n1.verdict, "ok" if self._n1.survived else "bad")])
        label = self.query_one("#summary", Label)
        width = (label.content_size.width or self.size.width) - 1
        label.update(fit([self.style_pieces(part) for part in parts], width))

    def on_resize(self, event: Resize) -> None:
        if self.snapshot.nodes:
            self.call_after_refresh(self._show_summary)

    def _show_details(self) -> None:
        self.query_one(Details).show(self.query_one(ClusterTree).selected_id, self.snapshot)

    @on(Tree.NodeHighlighted)
    def _highlighted(self) -> None:
        self._show_details()
        self.refresh_bindings()     # the footer offers what applies to the selection

    def on_operation_changed(self, message: OperationChanged) -> None:
        if not self.is_running:     # shutting down: the widgets may be gone already
            return
        self.query_one(OpsPanel).show(message.op)
        self._show_summary()
        self.refresh_bindings()
        op = message.op
        # (not one this console interrupted to quit: the next console offers that one)
        if op.unfinished and op.finished and op.state != INTERRUPTED \
                and op.id not in self._offered:
            # it failed after taking capacity out: offer resume or roll back right here
            self._offered.add(op.id)
            self._unfinished = self.session.journal.unfinished()
            record = next((r for r in self._unfinished if r.op == op.id), None)
            if record is not None:
                self._offer_unfinished(record)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors become something a person reads."""
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.description or event.worker.name}: "
                        f"{event.worker.error}", title="error", severity="error", timeout=15)

    # -- actions ------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """What the footer offers and the keys run: read-only, no mutating key at all;
        else the operations that fit the selection while none runs, pause and abort while
        one does. A key left out still answers (on_key says why it does nothing)."""
        key = registry.KEYS.get(str(parameters[0]) if action == "op" and parameters else action)
        if key is None:
            return True
        if not self.session.access.allows(key.id):     # the role (monitor: read-only)
            return False
        if not key.mutating:
            return True
        running = self.session.engine.running is not None
        if isinstance(key, registry.Operation):
            return not running and self._fits(key.targets)
        return running      # pause, abort

    def _fits(self, kind: registry.Target) -> bool:
        """The selection gives the operation a target (the same rule as `_target`)."""
        if kind == "node":
            return self._selected_node() is not None
        if kind == "host":
            entity, node = self._selected(), self._selected_node()
            vm = entity if isinstance(entity, VM) else \
                self.snapshot.vm_of_node(node) if node else None
            return isinstance(entity, Host) or vm is not None
        return True

    def on_key(self, event: Key) -> None:
        """Esc closes the filter; a console key whose binding is left out now says why.
        Only on the main screen: a dialog or a view on top of it owns the keys."""
        if len(self.screen_stack) > 1:
            return
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.display:
            self._filter_closed()
            event.stop()
            return
        key = registry.KEYS.get(self._key_ids.get(event.key, ""))
        if key is None or (not key.mutating and self.session.access.allows(key.id)):
            return
        event.stop()
        access = self.session.access
        if not access.allows(key.id):
            if time.monotonic() - self._read_only_said > READ_ONLY_SAID_S:
                self._read_only_said = time.monotonic()
                said = (f"read-only: {key.label.lower()} changes the cluster, and this "
                        "console changes nothing") if access.read_only else \
                    access.refusal(access.needs(key.id), key.label.lower())
                self.notify(said, severity="warning", timeout=READ_ONLY_SAID_S)
        elif isinstance(key, registry.Operation):
            running = self.session.engine.running
            if running is not None:
                self.notify(f"{running.title} is running: one operation at a time",
                            severity="warning")
            else:
                self.action_op(key.name)    # says what to select
        else:
            self.notify("no operation is running")

    def _selected_node(self) -> Node | None:
        return kinds.node_of(self._selected(), self.snapshot)

    def _selected(self):
        entity_id = self.query_one(ClusterTree).selected_id
        return self.snapshot.get(entity_id) if entity_id else None

    def action_op(self, name: str) -> None:
        """Operation `name` on what is selected, as its registry entry's targets say."""
        op = registry.OPERATIONS[name]
        target = self._target(op.targets)
        if target:
            self.request(op.name, target)

    def _target(self, kind: registry.Target) -> str:
        """node: the selected node (or the node of the selected VM, task, proxy server);
        host: the selected host (or the host of what is selected); vms: the selected VM,
        the selected host's VMs, or else the whole cluster. "" (said) when nothing fits."""
        entity, snap, node = self._selected(), self.snapshot, self._selected_node()
        if kind in SERVICE_TARGETS:
            service = service_of(entity, snap)
            if service is None:
                self.notify("Select a service (or one of its tasks) first.", severity="warning")
            return service.name if service else ""
        if kind == "node":
            if node is None:
                self.notify("Select a Swarm node (or the VM, task or proxy server of one) "
                            "first.", severity="warning")
            return node.swarm_id if node else ""
        vm = entity if isinstance(entity, VM) else snap.vm_of_node(node) if node else None
        if kind == "host":
            host = entity.name if isinstance(entity, Host) else vm.host if vm else ""
            if not host:
                self.notify("Select a host (or one of its VMs) first.", severity="warning")
            return host
        return entity.name if isinstance(entity, Host) else vm.name if vm else "cluster"

    def request(self, kind: str, target: str) -> None:
        """Plan, confirm, start: the only way the TUI changes anything."""
        if not self.session.access.allows(kind):
            self.notify(self.session.access.refusal(self.session.access.needs(kind),
                                                    f"{kind} {target}"), severity="error")
            return
        service = self.snapshot.service_named(target)
        asked = registry.operation(kind).targets
        if asked in ASKED and service is not None:      # web -> web=N, web=IMAGE
            def given(value: str | None) -> None:
                if value:
                    self.request(kind, f"{target}={value}")
            self.push_screen(ValueScreen(kind, asked, service), given)
            return
        try:
            plan = catalog.build(kind, self.snapshot, target, self.session.inventory.timing,
                                 self.session.window_options)
        except PlanError as e:
            self.notify(str(e), severity="error")
            return
        typed = registry.operation(kind).typed or plan.typed
        self._confirm_and_start(plan, plan.target if typed else "")

    def _confirm_and_start(self, plan: Plan, typed: str, resume: OpRecord | None = None) -> None:
        def confirmed(ok: bool | None) -> None:
            if not ok:
                self.notify(f"{plan.kind} {plan.target}: cancelled, nothing changed")
                return
            try:
                self.query_one(OpsPanel).show(self.session.engine.start(plan, resume=resume))
            except (StepFailed, RoleError) as e:
                self.notify(str(e), severity="error")
        rehearse = None if resume else lambda: self._rehearse(plan)
        self.push_screen(ConfirmScreen(plan, self.style_pieces, typed=typed,
                                       rehearse=rehearse), confirmed)

    @work(exclusive=True, group="rehearsal")
    async def _rehearse(self, plan: Plan) -> None:
        """The plan played to its end on a simulated twin of what the console sees now."""
        self.notify(f"{rehearsal.MARK}: {plan.kind} {plan.target} on a simulated twin "
                    f"(x{rehearsal.SPEED:g}; nothing real is touched)…", timeout=5)
        played = await rehearsal.rehearse(self.snapshot, plan.kind, plan.target,
                                          self.session.inventory.timing,
                                          self.session.window_options)
        verdict = "would end done" if played.passed else "would NOT end done"
        report = played.report or "refused on the twin: " + "; ".join(
            c.text for c in played.plan.refused)
        self.push_screen(RehearsalScreen(f"{rehearsal.MARK}: {plan.kind} {plan.target} "
                                         f"{verdict}", report, played.passed))

    def _offer_unfinished(self, record: OpRecord) -> None:
        """A console died mid-operation: say so first, and offer resume or roll back (only
        when its console is gone: a live one is shown as running, where and since when)."""
        def chosen(choice: str | None) -> None:
            if not self.session.access.allows(choice or "") or \
                    choice not in ("resume", "rollback"):
                self.notify(f"{record.kind} {record.target} stays unfinished "
                            f"(journal {record.op}); `opsconsole resume` or `rollback` "
                            "can finish it later", severity="warning", timeout=20)
                return
            try:
                if choice == "resume":
                    plan = catalog.rebuild(record, self.snapshot, self.session.window_options)
                else:
                    plan = catalog.rollback(record, self.snapshot)
            except PlanError as e:
                self.notify(str(e), severity="error")
                return
            self._confirm_and_start(plan, record.op, resume=record if choice == "resume"
                                    else None)

        async def when_seen() -> None:      # plans need the cluster as it is now
            while not self.snapshot.nodes:  # noqa: ASYNC110 - set by a message handler
                await asyncio.sleep(0.1)
            cannot = not self.session.access.allows("resume")
            self.push_screen(UnfinishedScreen(record, cannot), chosen)
        self.run_worker(when_seen(), group="journal", description="wait for the first snapshot")

    def action_problems(self) -> None:
        def chosen(entity: str | None) -> None:
            if entity and not self.query_one(ClusterTree).select_id(entity):
                self.notify(f"{entity} is not in the tree now", severity="warning")
        self.push_screen(ProblemsScreen(self._concerns, self.snapshot.taken_at,
                                        self.style_pieces), chosen)

    def action_resilience(self) -> None:
        if self._n1 is None:
            self.notify("N-1 is being computed (a large cluster takes a moment)", timeout=4)
            return
        self.push_screen(ResilienceScreen(self._n1, self.style_pieces))

    def action_logs(self) -> None:
        source = log_source(self._selected())
        if source is None:
            self.notify("Select a service or a task first.", severity="warning")
            return
        self.push_screen(LogsScreen.of(*source, self.session.providers.swarm))

    def action_inspect(self) -> None:
        entity = self._selected()
        if entity is None:
            self.notify("Select something first.", severity="warning")
            return
        self.push_screen(InspectScreen(entity, self.session.providers.swarm))

    def action_copy(self) -> None:
        text = copy_text(self._selected())
        if text:
            self.copy_to_clipboard(text)
            self.notify(f"copied {text}", markup=False)

    def action_audit(self) -> None:
        audit = self.session.engine.actions.audit
        records = list(audit.read())[-500:]
        snap = self.snapshot        # a record names a node or service by its Swarm id
        names = {n.swarm_id: n.hostname for n in snap.nodes} | \
            {s.swarm_id: s.name for s in snap.services}
        self.push_screen(AuditScreen(records, audit.skipped_note(), names, self.shown["filter"]))

    async def action_quit(self) -> None:
        """Quit; while an operation runs, ask first: pause it (interrupted, journaled, the
        lock kept: resumable) and quit, or stay."""
        op = self.session.engine.running
        if op is None:
            self.exit()
            return

        async def chosen(ok: bool | None) -> None:
            if not ok or op.finished:
                if ok:
                    self.exit()
                return
            self.session.engine.interrupt(op, "paused: the operator quit the console; "
                                              "resume it later")
            if op.task is not None:
                await asyncio.wait([op.task], timeout=10)
            self.exit()
        self.push_screen(QuitScreen(op.title, op.id), chosen)

    def action_pause(self) -> None:
        op = self.session.engine.running
        if op is None:
            self.notify("no operation is running")
        elif op.state == "paused":
            self.session.engine.resume(op)
        else:
            self.session.engine.pause(op)
        if op is not None:
            self.query_one(OpsPanel).show(op)

    def action_abort(self) -> None:
        """Abort asks first, saying what it will undo."""
        op = self.session.engine.running
        if op is None:
            self.notify("no operation is running")
            return

        def chosen(ok: bool | None) -> None:
            if not ok:
                self.notify(f"{op.title} goes on")
            elif op.state in FINISHED:
                self.notify(f"{op.title} already ended: {op.state}")
            else:
                self.session.engine.abort(op)
                self.notify(f"aborting {op.title}: finished steps are being undone")
        self.push_screen(AbortScreen(op), chosen)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(ClusterTree).set_filter(event.value)
        self._show_details()        # never the details of a row the filter took away

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(ClusterTree).focus()

    def _filter_closed(self) -> None:
        """Esc: no filter, and the tree's folds and selection as they were before it."""
        box = self.query_one("#filter", Input)
        with box.prevent(Input.Changed):
            box.value = ""
        box.display = False
        tree = self.query_one(ClusterTree)
        tree.set_filter("")
        tree.focus()
        self._show_details()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_text(self.shown)))

    def action_theme(self) -> None:
        names = self._theme_names
        self.theme = names[(names.index(self.theme) + 1) % len(names)] \
            if self.theme in names else names[0]
        self.notify(f"theme: {self.theme}", timeout=2)

    async def on_unmount(self) -> None:
        await self.session.providers.close()
