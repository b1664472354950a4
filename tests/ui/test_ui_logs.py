"""The logs screen: `l` on a service or task streams its log; what a container writes
reaches the screen as text (no escape sequence, no markup); follow, search, close."""
from __future__ import annotations

from textual.widgets import RichLog
from uikit import Rig, started, until

from opsconsole.model import service_id, task_id
from opsconsole.ui.logs import LogsScreen


def _svc(c: Rig, name: str):
    return next(s for s in c.sim.services.values() if s.name == name)


def _logs(c: Rig) -> LogsScreen | None:
    return c.app.screen if isinstance(c.app.screen, LogsScreen) else None


def _text(screen: LogsScreen) -> str:
    return "\n".join(strip.text for strip in screen.query_one(RichLog).lines)


HOSTILE = (b"\x1b]52;c;cm0gLXJmIC8=\x07clip \x1b[2J\x1b[31mred\x1b[0m [bold]not markup[/]"
           b" \x9b6n\n")


async def test_l_streams_a_services_log_as_plain_text(console):
    c = console(speed=30)
    api = _svc(c, "api")
    c.sim.raw_logs[api.swarm_id] = [HOSTILE, b"y" * 200_000 + b"\n"]
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(service_id(api.swarm_id))
        await pilot.press("l")
        await until(pilot, lambda: _logs(c) is not None, "the logs screen")
        screen = _logs(c)
        await until(pilot, lambda: "clip red [bold]not markup[/]" in _text(screen),
                    "the hostile line, cleaned")
        text = _text(screen)
        assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
        assert "bytes cut" in text and max(len(line) for line in screen.lines) < 70_000
        await until(pilot, lambda: "GET" in _text(screen) or "job done" in _text(screen),
                    "made-up log lines")
        before = len(screen.lines)
        await until(pilot, lambda: len(screen.lines) > before + 2, "new lines (following)")
        assert "following" in str(screen.query_one("#logs-status").content)

        for key in ("d", "S", "c"):         # the console's keys do nothing here
            await pilot.press(key)
        assert _logs(c) is c.app.screen and not c.session.engine.operations

        await pilot.press("f")
        assert "paused" in str(screen.query_one("#logs-status").content)
        assert not screen.query_one(RichLog).auto_scroll

        await pilot.press("slash")
        for key in "health":
            await pilot.press(key)
        await pilot.press("enter")
        await pilot.pause(0.1)
        shown = [s.text for s in screen.query_one(RichLog).lines]
        assert shown and all("health" in line.lower() for line in shown)

        await pilot.press("escape")
        await until(pilot, lambda: _logs(c) is None, "the logs screen to close")
        assert not [w for w in c.app.workers if w.group == "logs" and w.is_running]


async def test_l_on_a_task_and_on_a_node(console):
    c = console(speed=30)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(c.node("vm-01").id)
        await pilot.press("l")
        await pilot.pause(0.1)
        assert _logs(c) is None                 # a node has no Swarm log: said, not opened
        worker = _svc(c, "worker")
        task = next(t for t in c.sim.tasks.values()
                    if t.service_id == worker.swarm_id and t.wanted and t.node_id)
        assert c.tree.select_id(task_id(task.swarm_id))
        await pilot.press("l")
        await until(pilot, lambda: _logs(c) is not None, "the task's logs")
        await until(pilot, lambda: task.swarm_id[:12] in _text(_logs(c)), "its lines")
        assert f"logs of task {task.name}" in str(_logs(c).query_one("#logs-status").content)
        assert all(task.swarm_id[:12] in line for line in _logs(c).lines)
