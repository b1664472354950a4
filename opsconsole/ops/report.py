"""The markdown report written at the end of a maintenance run."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .guards import LANDED, SCALED

if TYPE_CHECKING:       # the engine writes reports: no import back at run time
    from .engine import Operation


def markdown(op: Operation, who: str) -> str:
    plan = op.plan
    lines = [f"# {op.title}", "",
             f"- operation: `{op.id}`",
             f"- by: {who}",
             f"- result: **{op.state}**" + (" (UNFINISHED: resume, roll back or abandon it)"
                                             if op.unfinished else "")
             + (f" — {op.error}" if op.error else ""),
             f"- duration: {op.elapsed:.1f} s",
             f"- written: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]
    lines += ["## Checks before the start", ""]
    lines += [f"- {c.level}: {c.name}: {c.text}" for c in plan.checks] or ["- none"]
    lines += ["", "## Steps", "", "| # | step | status | took |", "|---|---|---|---|"]
    t0 = op.started
    for i, step in enumerate(plan.steps):
        times = op.times.get(i, [])
        if i in op.skip:
            status, took = "done before a restart", ""
        elif len(times) == 2:
            status, took = "done", f"{times[1] - times[0]:.1f} s (at +{times[0] - t0:.0f} s)"
        elif times:
            status, took = op.state if i == op.index else "failed", ""
        else:
            status, took = "not reached", ""
        title = step.title.replace("|", "\\|")
        lines.append(f"| {i + 1} | {title} | {status} | {took} |")
    lines += ["", "## Failures", ""]
    lines += [f"- {f}" for f in op.failed_groups] or (
        [f"- {op.error}"] if op.error else ["- none"])
    skipped = [s.title for i, s in enumerate(plan.steps) if i not in op.times and i not in op.skip]
    lines += ["", "## Skipped or not reached", ""]
    lines += [f"- {t}" for t in skipped] or ["- nothing"]
    waits = [f"- {s.title}: {t[1] - t[0]:.1f} s" for i, s in enumerate(plan.steps)
             if s.wait and len(t := op.times.get(i, [])) == 2]
    lines += ["", "## Waits (sessions, tasks, VMs, nodes, health)", ""]
    lines += waits or ["- none ran"]
    lines += ["", "## Moves (tasks started elsewhere before their node drained)", ""]
    lines += floor_lines(op.notes, op.floor)
    lines += ["", "## Log", "", "```", *op.log, "```", ""]
    return "\n".join(lines)


def floor_lines(notes: dict[str, object], floor: dict[str, tuple[int, int]]) -> list[str]:
    """The moves of replica-preserving drains, per service, from the journal's notes (how
    many tasks, where their replacements landed), then the replica floor per service."""
    def step(key: str) -> int:
        head = key.split(":", 1)[0]
        return int(head) if head.isdigit() else -1
    lines = []
    for key in sorted((k for k in notes if k.endswith(f":{SCALED}")), key=step):
        scaled, landed = notes[key], notes.get(f"{step(key)}:{LANDED}")
        for s in (scaled.values() if isinstance(scaled, dict) else ()):
            where = landed.get(s["name"]) if isinstance(landed, dict) else None
            low = floor.get(s["name"])
            lines.append(f"- {s['name']}: {s['tasks']} task(s) moved first; replacements on "
                         f"{', '.join(where) if where else 'not recorded'}"
                         + ("" if low is None else "; floor held" if low[0] >= low[1]
                            else f"; floor fell to {low[0]} of {low[1]}"))
    lines = lines or ["- none"]
    lines += ["", "## Replica floor (lowest running of desired, sampled on every read)", ""]
    lines += [f"- {name}: {low} of {want}" + (" (held)" if low >= want else
                                              f" (dipped by {want - low})")
              for name, (low, want) in sorted(floor.items())] or ["- not sampled"]
    return lines
