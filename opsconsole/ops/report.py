"""The markdown report written at the end of a maintenance run."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

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
    lines += [f"- {c.level}: {c.name}: {c.message}" for c in plan.checks] or ["- none"]
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
    moves = [ln for ln in op.log if "session(s)" in ln or "task(s)" in ln]
    lines += ["", "## Sessions and tasks", ""]
    lines += [f"- {ln}" for ln in moves[-10:]] or ["- no waits were needed"]
    lines += ["", "## Log", "", "```", *op.log, "```", ""]
    return "\n".join(lines)
