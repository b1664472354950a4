"""The registry: every operation the console offers and every key it binds, in one table.

The front ends are generated from it: the CLI's `plan`/`run` choices, config's remappable
binding ids, and in the TUI the bindings, the footer, the read-only filter, the palette, the
help screen and every "press X" hint (from the live keys, after the inventory's remapping).
Adding an operation is one entry here and its plan builder.

Each entry names the least role that may use it (`roles`: monitor < oncall < admin); with
the console's own commands that have no key (resume, rollback, abandon, unlock) they make
PERMISSIONS, which the engine enforces: nothing runs that the console's role does not allow.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..model import Snapshot
from .engine import Plan
from .maintenance import WindowOptions, host_maintenance, rolling_update, vms_named
from .plans import PlanError, Timing, activate, cordon, drain
from .roles import ADMIN, MONITOR, ONCALL, Role
from .services import image, restart, rollback_service, scale

# What an operation acts on; the TUI takes it from the selection, the palette lists them.
Target = Literal["node", "host", "vms", "service", "replicas", "image"]
TARGET_WORDS: dict[Target, str] = {
    "node": "a node or VM",                     # or, in the TUI, a task or proxy server of one
    "host": "a host",                           # or the host of the selected VM or node
    "vms": "'cluster', a host or VM names separated by commas",
    "service": "a service",                     # or the service of the selected task
    "replicas": "SERVICE=N",                    # the TUI asks for N
    "image": "SERVICE=IMAGE",                   # the TUI asks for the image
}

# The help screen's sections, in order.
SECTIONS = MOVING, NODE, SERVICE, LOOKING, WINDOWS, RUNNING, OTHER = (
    "Moving around", "Acting on the selected node (or the VM that runs it)",
    "Acting on the selected service (or the service of a task)",
    "Looking closer at what is selected", "Maintenance windows", "Operations", "Other")


@dataclass(frozen=True)
class Ask:
    """What a plan is made with besides the snapshot and the target."""
    timing: Timing = Timing()
    options: WindowOptions = WindowOptions()
    force: bool = False
    params: dict[str, Any] = field(default_factory=dict)   # recorded ones, for a resume
    moved: dict[str, int] = field(default_factory=dict)    # a resume: tasks already replaced


Builder = Callable[[Snapshot, str, Ask], Plan]


@dataclass(frozen=True, kw_only=True)
class Key:
    """A key of the console. `id` is its binding id (what `[console] keys` remaps)."""
    id: str
    key: str                # the default key, as Textual names it ("U", "slash")
    label: str              # in the footer
    help: str               # in the help screen (a new line continues it)
    section: str
    mutating: bool = False  # changes the cluster: absent and refused in read-only mode
    show: bool = True       # in the footer
    role: Role = MONITOR    # the least role that may use it

    def __post_init__(self) -> None:
        if self.mutating and self.role == MONITOR:    # a monitor changes nothing, ever
            object.__setattr__(self, "role", ONCALL)


@dataclass(frozen=True, kw_only=True)
class Operation(Key):
    """A plan the operator can run. Its name is its binding id, CLI word, plan kind and
    journal kind: one spelling everywhere."""
    targets: Target
    build: Builder
    palette: str            # the palette's help for it; {target} is the target's name
    typed: bool = False     # the TUI asks to type the target's name before it starts
    mutating: bool = True

    @property
    def name(self) -> str:
        return self.id


KEYS: dict[str, Key] = {k.id: k for k in (
    Operation(id="cordon", key="c", label="Cordon", section=NODE, targets="node",
              build=lambda snap, target, ask: cordon(snap, target),
              help="cordon: no new tasks here, running tasks stay",
              palette="cordon the Swarm node {target}"),
    Operation(id="drain", key="d", label="Drain", section=NODE, targets="node", typed=True,
              build=lambda snap, target, ask: drain(snap, target, ask.timing, ask.force, ask.moved),
              help="drain: proxy server to drain, sessions end, tasks move elsewhere",
              palette="drain the Swarm node {target}"),
    Operation(id="activate", key="a", label="Activate", section=NODE, targets="node",
              build=lambda snap, target, ask: activate(snap, target),
              help="activate: node active again, proxy server ready",
              palette="activate the Swarm node {target}"),
    Operation(id="maintenance", key="m", label="Maintain", section=WINDOWS,
              targets="host", typed=True,
              build=lambda snap, target, ask: host_maintenance(
                  snap, target, ask.timing, ask.options, ask.params, ask.force, ask.moved),
              help="maintain the selected host: drain its VMs' nodes, shut the VMs down,\n"
                   "update and restart the host, start everything, activate, rebalance",
              palette="drain {target}'s VMs, shut them down, update and restart it, "
                      "bring everything back"),
    Operation(id="rolling-update", key="U", label="Rolling update", section=WINDOWS,
              targets="vms", typed=True,
              build=lambda snap, target, ask: rolling_update(
                  snap, vms_named(snap, target), ask.timing, ask.options, ask.params,
                  label=target or "cluster", force=ask.force, moved=ask.moved),
              help="rolling update: the selected VM, the selected host's VMs, or the whole\n"
                   "cluster; workers first, then managers, one VM at a time",
              palette="update every VM, one at a time, workers first"),
    # service actions: admin only (issue 15); not in the footer, listed in help
    Operation(id="scale", key="S", label="Scale", section=SERVICE, targets="replicas",
              role=ADMIN, show=False,
              build=lambda snap, target, ask: scale(snap, target, ask.timing, ask.params,
                                                    ask.force),
              help="scale the service to N replicas (typed confirmation for 0, or fewer\n"
                   "tasks than the nodes it spans); e.g. `run scale web=3`",
              palette="scale {target} to N replicas"),
    Operation(id="restart", key="R", label="Restart", section=SERVICE, targets="service",
              role=ADMIN, show=False,
              build=lambda snap, target, ask: restart(snap, target, ask.timing, ask.params),
              help="restart the service: Swarm replaces every task (force update), watched\n"
                   "until it has converged",
              palette="restart {target}: Swarm replaces every task (force update)"),
    Operation(id="image", key="E", label="Image", section=SERVICE, targets="image",
              role=ADMIN, show=False,
              build=lambda snap, target, ask: image(snap, target, ask.timing, ask.params),
              help="change the service's image (a tag or digest): a rolling update; abort\n"
                   "sets the image back; e.g. `run image web=nginx:1.27`",
              palette="change the image of {target}"),
    Operation(id="rollback-service", key="B", label="Roll back", section=SERVICE,
              targets="service", role=ADMIN, show=False,
              build=lambda snap, target, ask: rollback_service(snap, target, ask.timing,
                                                               ask.params),
              help="roll the service back to its previous spec (Swarm's rollback), followed\n"
                   "until it has converged",
              palette="roll {target} back to its previous spec (Swarm's rollback)"),
    Key(id="logs", key="l", label="Logs", section=LOOKING, show=False,
        help="logs of the selected service or task: the last lines, then new ones\n"
             "(f pauses following, / shows lines holding a word, w wraps, esc closes)"),
    Key(id="inspect", key="i", label="Inspect", section=LOOKING, show=False,
        help="the selected object in full: Swarm's own JSON for a node, service or task"),
    Key(id="copy", key="y", label="Copy id", section=LOOKING, show=False,
        help="copy the selected object's id (or name) to the clipboard (OSC 52)"),
    Key(id="pause", key="p", label="Pause", section=RUNNING, mutating=True,
        help="pause / resume the running operation"),
    Key(id="abort", key="x", label="Abort", section=RUNNING, mutating=True,
        help="abort it: finished steps are undone (restores what it can)"),
    Key(id="filter", key="slash", label="Filter", section=MOVING,
        help="filter the tree (esc clears it)"),
    Key(id="audit", key="L", label="Audit log", section=OTHER, show=False, help="audit log"),
    Key(id="problems", key="exclamation_mark", label="Problems", section=OTHER, show=False,
        help="problems: everything wrong now, worst first (enter goes to it)"),
    Key(id="resilience", key="N", label="N-1", section=OTHER, show=False,
        help="resilience (N-1): what the loss of each host or VM would do now"),
    Key(id="help", key="question_mark", label="Help", section=OTHER, help="this help"),
    Key(id="theme", key="t", label="Theme", section=OTHER, show=False, help="next theme"),
    Key(id="quit", key="q", label="Quit", section=OTHER, help="quit"),
)}
OPERATIONS: dict[str, Operation] = {k.id: k for k in KEYS.values() if isinstance(k, Operation)}
BINDING_IDS = tuple(KEYS)


@dataclass(frozen=True, kw_only=True)
class Command:
    """What the console does besides the keyed operations (the CLI's words, the TUI's
    offers for an unfinished operation)."""
    id: str
    role: Role
    help: str


COMMANDS: dict[str, Command] = {c.id: c for c in (
    Command(id="resume", role=ONCALL, help="carry on an unfinished operation"),
    Command(id="rollback", role=ONCALL, help="bring back what an unfinished operation took out"),
    Command(id="abandon", role=ADMIN, help="close an unfinished operation as it is"),
    Command(id="unlock", role=ADMIN, help="break the cluster's operation lock"),
    Command(id="access", role=ADMIN, help="grant or remove SSH access (authorized_keys)"),
)}
# The least role for each operation and command: what the engine enforces.
PERMISSIONS: dict[str, Role] = {**{k.id: k.role for k in KEYS.values()},
                                **{c.id: c.role for c in COMMANDS.values()}}


def operation(name: str) -> Operation:
    if name not in OPERATIONS:
        raise PlanError(f"unknown operation {name!r} (known: {', '.join(OPERATIONS)})")
    return OPERATIONS[name]


def live_keys(keymap: dict[str, str]) -> dict[str, str]:
    """Binding id -> the key that triggers it now: the inventory's remapping (its first key,
    when it names several) or the default."""
    return {k.id: (keymap.get(k.id) or k.key).split(",")[0].strip() for k in KEYS.values()}


def listed(words: list[str], last: str = "or") -> str:
    """"c, d or a"."""
    return words[0] if len(words) < 2 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def target_help() -> str:
    """What TARGET is, per operation (the CLI's help)."""
    names: dict[Target, list[str]] = {}
    for op in OPERATIONS.values():
        names.setdefault(op.targets, []).append(op.name)
    return ", ".join(f"{TARGET_WORDS[t]} for {'/'.join(ops)}" for t, ops in names.items())
