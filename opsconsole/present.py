"""How entities read on screen: glyphs, words and a semantic role per piece.

Shared by the TUI tree and `opsconsole status`; each kind's label is in kinds.py.
Roles (ok, warn, bad, muted, accent, plain) are mapped to colours by each front end --
the TUI from the current theme's variables, the CLI from rich's named colours -- so
nothing here knows a colour. Remote strings stay plain text: never markup.
"""
from __future__ import annotations

from collections.abc import Iterable

from .model import (
    ACTIVE,
    DRAIN,
    HYPERV,
    MAINT,
    NOLB,
    PAUSE,
    PROXY,
    ROOT_HOSTS,
    ROOT_PROXY,
    ROOT_SERVICES,
    ROOT_UNPLACED,
    RUNNING,
    SWARM,
    UP,
    Entity,
    Problem,
    Snapshot,
)

Piece = tuple[str, str]          # (text, role)
OK, WARN, BAD, MUTED, ACCENT, PLAIN = "ok", "warn", "bad", "muted", "accent", "plain"

GROUP_TITLES = {ROOT_HOSTS: "Hosts", ROOT_UNPLACED: "Nodes without a VM",
                ROOT_SERVICES: "Services", ROOT_PROXY: "Proxy"}

TASK_ROLES = {RUNNING: OK, "failed": BAD, "rejected": BAD, "orphaned": BAD,
              "shutdown": MUTED, "complete": MUTED, "remove": MUTED}
VM_ROLES = {RUNNING: OK, "off": BAD, "saved": WARN, "unknown": MUTED}
HOST_ROLES = {"up": OK, "unreachable": BAD, "unknown": MUTED}
AVAILABILITY = {ACTIVE: ("▶ active", OK), PAUSE: ("‖ pause", WARN), DRAIN: ("⇣ drain", WARN)}


def proxy_role(status: str) -> str:
    word = status.split()[0] if status else ""
    return {UP: OK, "DRAIN": WARN, MAINT: WARN, NOLB: WARN}.get(word, BAD)


# Which sources a tree group's rows come from: when one cannot be read, the rows are old.
GROUP_SOURCES = {ROOT_HOSTS: (HYPERV, SWARM), ROOT_UNPLACED: (SWARM,),
                 ROOT_SERVICES: (SWARM,), ROOT_PROXY: (PROXY,)}


def group_label(group_id: str, snap: Snapshot) -> list[Piece]:
    out = [(GROUP_TITLES[group_id], ACCENT)]
    stale = snap.unreadable(*GROUP_SOURCES.get(group_id, ()))
    if stale:
        out.append((f"  STALE: {stale[0].source} unreadable for "
                    f"{duration(snap.taken_at - (stale[0].since or snap.taken_at))}", BAD))
    return out


def problem(p: Problem, now: float) -> str:
    """A problem with its age: how old the data shown for that source is."""
    age = f" (for {duration(now - p.since)})" if p.since and now - p.since >= 1 else ""
    return f"{p}{age}"


def summary(snap: Snapshot) -> list[Piece]:
    """The header line: what an on-call engineer checks first, first."""
    return [p for i, part in enumerate(summary_parts(snap))
            for p in ([("  ", PLAIN)] if i else []) + part]


def summary_parts(snap: Snapshot) -> list[list[Piece]]:
    """The header's parts by priority (a narrow terminal keeps the first ones): problems
    and the lock holder, then quorum, then the counts."""
    if not snap.nodes:
        return [[("swarm not seen yet", BAD)]] + [
            [("⚠ ", BAD), (problem(pr, snap.taken_at), BAD)] for pr in snap.problems]
    out: list[list[Piece]] = []
    if snap.unreadable(SWARM):
        out.append([("STALE", BAD)])      # what follows is not now
    out += [[("⚠ ", BAD), (problem(pr, snap.taken_at), BAD)] for pr in snap.problems]
    if snap.lock is not None:
        age = duration(snap.lock.age(snap.taken_at)) if snap.lock.since else "?"
        lock = snap.lock
        seen = f", seen {duration(snap.taken_at - lock.beat)} ago" if lock.beat else ""
        where = f" (pid {lock.pid} on {lock.host}{seen})" if lock.pid else ""
        out.append([("LOCKED ", BAD), (f"{lock.title} by {lock.holder}, {age}{where}", WARN)])
    if snap.proxy_read_only:
        out.append([("proxy read-only", WARN)])
    tol = snap.quorum_tolerance
    out.append([(f"managers {len(snap.managers)}, ", PLAIN),
                ("quorum lost" if tol < 0 else
                 f"tolerates {tol} loss" + ("" if tol == 1 else "es"), BAD if tol <= 0 else OK)])
    converged = sum(1 for s in snap.services if snap.converged(s))
    out.append([(f"nodes {snap.nodes_ready}/{len(snap.nodes)} ready",
                 OK if snap.nodes_ready == len(snap.nodes) else WARN)])
    out.append([(f"services {converged}/{len(snap.services)} converged",
                 OK if converged == len(snap.services) else WARN)])
    if snap.servers:
        out.append([(f"sessions {snap.session_count}", PLAIN)])
    return out


def plain(pieces: Iterable[Piece]) -> str:
    return "".join(text for text, _ in pieces)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def details(entity: Entity, snap: Snapshot) -> list[tuple[str, str]]:
    """Every attribute as (name, value) rows, plus what hangs off the entity."""
    from dataclasses import fields
    rows = [("id", entity.id)]
    for f in fields(entity):
        value = getattr(entity, f.name)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif f.name in ("memory_bytes", "reserve_memory_bytes") and value:
            value = size(value)
        elif f.name in ("nano_cpus", "reserve_nano_cpus") and value:
            value = f"{value / 1e9:g}"
        elif f.name == "cpu_pct":
            value = f"{value:g} %"
        elif f.name == "uptime_s":
            value = duration(value)
        elif f.name == "started_at":
            value = f"{duration(max(0, snap.taken_at - value))} ago"
        elif f.name == "labels":
            value = ", ".join(f"{k}={v}" for k, v in value) or "-"
        elif isinstance(value, tuple):
            value = ", ".join(map(str, value)) or "-"
        rows.append((FIELD_WORDS.get(f.name, f.name.replace("_", " ")),
                     str(value) if value != "" else "-"))
    return rows


# How a field is named in the details when its name is not the word (the rest: "_" -> " ").
FIELD_WORDS = {"uptime_s": "uptime", "nano_cpus": "CPUs", "reserve_nano_cpus": "CPUs reserved",
               "memory_bytes": "memory", "reserve_memory_bytes": "memory reserved",
               "cpu_pct": "CPU", "swarm_id": "Swarm id", "os_build": "OS build",
               "engine_version": "Docker version", "started_at": "started",
               "cur_sessions": "sessions now", "total_sessions": "sessions in total",
               "pending_reboot": "reboot pending", "node_id": "node id",
               "service_id": "service id"}
