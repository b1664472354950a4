"""Usable at 80x24 and by a new user: quit and abort ask, read-only says so once, the filter
gives back folds and selection, leaves have no expander, the logs can be read and searched."""
from __future__ import annotations

import re

from textual.widgets import Button, DataTable, Input, Log
from uikit import (
    Rig,
    details_text,
    render_text,
    started,
    summary_text,
    table_rows,
    until,
    walk,
)

from opsconsole.ops.plans import Timing
from opsconsole.ui.details import Details
from opsconsole.ui.header import fit
from opsconsole.ui.logpane import LogPane
from opsconsole.ui.screens import AbortScreen, AuditScreen, ConfirmScreen, QuitScreen
from opsconsole.ui.tree import GROUPS

WAITS = Timing(sessions_timeout=600)    # with the clock standing still, the drain waits


def _screen(c: Rig, kind):
    return c.app.screen if isinstance(c.app.screen, kind) else None


async def _draining(pilot, c: Rig):
    """A drain of vm-03 started from the keyboard, waiting for vm-03's sessions."""
    await started(pilot, c)
    assert c.tree.select_id(c.node("vm-03").id)
    await pilot.press("d")
    await until(pilot, lambda: _screen(c, ConfirmScreen) is not None, "the drain's plan")
    await pilot.press(*"vm-03", "enter")
    engine = c.session.engine
    await until(pilot, lambda: engine.running is not None and engine.running.index == 1,
                "the drain to wait for sessions")
    return engine.running


async def test_quit_while_an_operation_runs_asks_and_leaves_it_resumable(console):
    c = console(manual_clock=True, timing=WAITS)
    async with c.app.run_test(size=(80, 24)) as pilot:
        op = await _draining(pilot, c)
        await pilot.press("q")
        await until(pilot, lambda: _screen(c, QuitScreen) is not None, "the question")
        buttons = [str(b.label) for b in c.app.screen.query(Button)]
        assert buttons == ["Pause and quit (resume later)", "Cancel"]
        await pilot.press("escape")                       # cancel: nothing happens
        await until(pilot, lambda: _screen(c, QuitScreen) is None, "the question to close")
        assert op.state == "running" and c.app.return_code is None

        await pilot.press("q")
        await until(pilot, lambda: _screen(c, QuitScreen) is not None, "the question")
        c.app.screen.query_one("#quit-yes", Button).press()
        await until(pilot, lambda: c.app.return_code is not None, "the console to quit")
    assert op.state == "interrupted" and op.unfinished
    assert [r.op for r in c.session.journal.unfinished()] == [op.id]
    assert c.sim.lock is not None and c.sim.lock.op == op.id      # held until resumed
    assert c.sim.admin[("portail", "vm-03")] == "drain"           # nothing undone


async def test_quit_with_nothing_running_quits_at_once(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await started(pilot, c)
        await pilot.press("q")
        await until(pilot, lambda: c.app.return_code is not None, "the console to quit")


async def test_abort_says_what_it_undoes_and_asks(console):
    c = console(manual_clock=True, timing=WAITS)
    async with c.app.run_test(size=(80, 24)) as pilot:
        op = await _draining(pilot, c)
        await pilot.press("x")
        await until(pilot, lambda: _screen(c, AbortScreen) is not None, "the question")
        text = " ".join(str(s.content) for s in c.app.screen.query(".step"))
        assert text == "1. set proxy server portail/vm-03 to drain"
        assert c.app.screen.focused.id == "abort-no"      # enter alone does not abort
        await pilot.press("enter")
        await until(pilot, lambda: _screen(c, AbortScreen) is None, "the question to close")
        assert op.state == "running" and not op._abort

        await pilot.press("x")
        await until(pilot, lambda: _screen(c, AbortScreen) is not None, "the question")
        c.app.screen.query_one("#abort-yes", Button).press()
        await until(pilot, lambda: op.state == "aborted" and op.finished, "the abort")
        assert c.sim.admin[("portail", "vm-03")] == "ready"
        # the status line says how it ended, not what the wait last saw
        step = c.app.query_one(".op-step")
        steps = len(op.plan.steps)
        await until(pilot, lambda: str(step.content) == f"aborted at step 2/{steps}",
                    "the panel")


async def test_read_only_says_so_once_for_a_burst_of_mutating_keys(console):
    c = console(manual_clock=True, read_only=True)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(c.node("vm-03").id)
        before = c.world()
        for key in "dcdax":
            await pilot.press(key)
        await pilot.pause()
        said = [n.message for n in c.app._notifications if "read-only" in n.message]
        assert len(said) == 1, said
        assert c.app.screen is c.app.screen_stack[0] and c.world() == before
        assert "press" not in str(c.app.query_one("#ops-empty").content)


async def test_a_wrong_name_in_the_drain_box_says_what_is_wrong(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(c.node("vm-03").id)
        await pilot.press("d")
        await until(pilot, lambda: _screen(c, ConfirmScreen) is not None, "the drain's plan")
        await pilot.press(*"vm-3", "enter")
        why = c.app.screen.query_one("#confirm-why")
        await until(pilot, lambda: "'vm-3' is not 'vm-03'" in str(why.content), "the reason")
        assert why.region.bottom <= 24 and _screen(c, ConfirmScreen) is not None
        await pilot.press("backspace", *"03")
        await until(pilot, lambda: not str(why.content), "the reason to go as one types")
        assert not c.session.engine.operations


async def test_every_dialog_keeps_its_input_and_buttons_on_screen_at_80x24(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await started(pilot, c)
        c.app.request("maintenance", "hv-01")          # the longest plan there is
        await until(pilot, lambda: _screen(c, ConfirmScreen) is not None, "the plan")
        await pilot.pause()
        screen = c.app.screen
        for part in ("#confirm-input", "#confirm-yes", "#confirm-no"):
            region = screen.query_one(part).region
            assert region.y >= 0 and region.bottom <= 24, (part, region)
        body = screen.query_one("#confirm-body")
        assert body.max_scroll_y > 0         # the plan scrolls inside the box
        screen.query_one("#confirm-input", Input).value = "hv-01"
        await until(pilot, lambda: not screen.query_one("#confirm-yes", Button).disabled,
                    "Confirm to be enabled")


async def test_filter_keeps_and_gives_back_folds_and_selection(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        tree, vm03 = c.tree, c.node("vm-03")
        tree.index["host:hv-02"].collapse()
        assert tree.select_id(vm03.id)
        await pilot.pause()
        await pilot.press("slash", *"manager")         # the leader is a manager too
        await until(pilot, lambda: tree.filter_text == "manager", "the filter")
        managers = {f"node:{n.swarm_id}" for n in c.sim.nodes.values() if n.role == "manager"}
        shown = {n.data for n in walk(tree.root) if str(n.data).startswith("node:")}
        assert shown == managers, shown
        # the details follow the cursor: never vm-03, which the filter took away
        assert vm03.id not in tree.index
        assert "vm-03" not in details_text(c.app).splitlines()[0]
        await pilot.press("escape")
        await until(pilot, lambda: tree.filter_text == "", "the filter to clear")
        assert not tree.index["host:hv-02"].is_expanded and tree.index["host:hv-01"].is_expanded
        assert tree.selected_id == vm03.id
        assert "vm-03" in details_text(c.app).splitlines()[0]


async def test_leaves_have_no_expander(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        nodes = [n for n in walk(c.tree.root) if n.data not in GROUPS]
        assert all(n.allow_expand == bool(n.children) for n in nodes), \
            [n.data for n in nodes if n.allow_expand != bool(n.children)]
        assert any(str(n.data).startswith("task:") for n in nodes)
        assert any(n.allow_expand for n in nodes)


async def test_details_use_words_not_field_names(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        assert c.tree.select_id(c.node("vm-01").id)
        await pilot.pause()
        text = details_text(c.app)
        assert re.search(r"leader\s+yes", text) and re.search(r"CPUs\s+\d", text)
        assert "nano" not in text and "True" not in text
        # a narrow pane cuts no word of the task table in two ("runnin/g")
        narrow = render_text(c.app.query_one(Details).content, width=36)
        table = narrow[narrow.index("tasks on vm-01"):]
        assert "running" in table and not re.search(r"runnin\b|shutdo\b", table), table
        assert c.tree.select_id("host:hv-01")
        await pilot.pause()
        assert "uptime " in details_text(c.app) and "uptime s" not in details_text(c.app)


async def test_the_operations_log_can_be_focused_scrolled_and_searched(console):
    c = console(manual_clock=True, timing=WAITS)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await _draining(pilot, c)
        pane = c.app.query_one(LogPane)
        log = pane.query_one(Log)
        assert log.region.height >= 3
        log.focus()
        await pilot.press("slash", *"proxy")
        await until(pilot, lambda: pane.needle == "proxy", "the search")
        lines = [str(line) for line in log.lines]
        assert lines and all("proxy" in line for line in lines)
        assert len(lines) < len(c.session.engine.running.log)
        await pilot.press("escape")
        await until(pilot, lambda: len(log.lines) == len(pane.lines), "every line again")


async def test_audit_is_one_row_per_record_and_searchable(console):
    c = console(speed=30)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await started(pilot, c)
        for name in ("cordon", "activate"):
            c.app.request(name, c.node_id("vm-02"))
            await until(pilot, lambda: _screen(c, ConfirmScreen) is not None
                        and c.app.screen.query("#confirm-yes"), "the plan")
            c.app.screen.query_one("#confirm-yes", Button).press()
            await until(pilot, lambda: _screen(c, ConfirmScreen) is None, "it to close")
            await until(pilot, lambda n=name: any(o.plan.kind == n and o.finished
                                                  for o in c.session.engine.operations), name)
        await pilot.press("L")
        await until(pilot, lambda: _screen(c, AuditScreen) is not None, "the audit log")
        table = c.app.screen.query_one(DataTable)
        records = list(c.session.engine.actions.audit.read())
        assert table.row_count == len(records) and table.columns    # one row each
        await pilot.press("slash", *"availability")
        await until(pilot, lambda: table.row_count < len(records), "the search")
        assert {row[3] for row in table_rows(table)} == {"vm-02"}
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == len(records), "the search to clear")
        await pilot.press("escape")
        await until(pilot, lambda: _screen(c, AuditScreen) is None, "the audit log to close")


async def test_the_header_keeps_the_lock_and_problems_first_when_narrow(console):
    c = console(manual_clock=True, timing=WAITS)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await _draining(pilot, c)
        await until(pilot, lambda: "LOCKED" in summary_text(c.app), "the lock in the header")
        text = summary_text(c.app)
        assert text.startswith("LOCKED drain vm-03") and len(text) <= 80, text


def test_header_fit_leaves_out_the_last_parts_and_says_so():
    from rich.text import Text
    parts = [Text("LOCKED drain vm-03 by ann"), Text("tolerates 0 losses"), Text("nodes 6/6")]
    assert fit(parts, 80).plain == "LOCKED drain vm-03 by ann  tolerates 0 losses  nodes 6/6"
    assert fit(parts, 50).plain == "LOCKED drain vm-03 by ann  tolerates 0 losses …"
    assert fit(parts, 10).plain == "LOCKED dr…"


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


async def test_tree_guides_are_readable_in_every_theme(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await started(pilot, c)
        assert len(c.app._theme_names) >= 3
        for name in c.app._theme_names:
            c.app.theme = name
            await pilot.pause()
            style = c.tree.get_component_rich_style("tree--guides", partial=False)
            fg, bg = (_luminance(tuple(col.get_truecolor())) for col in (style.color, style.bgcolor))
            contrast = (max(fg, bg) + 0.05) / (min(fg, bg) + 0.05)
            assert contrast >= 3.0, (name, round(contrast, 2))     # WCAG: graphics 3:1


async def test_tab_reaches_the_operations_log(console):
    c = console(manual_clock=True, timing=WAITS)
    async with c.app.run_test(size=(80, 24)) as pilot:
        await _draining(pilot, c)
        log = c.app.query_one(LogPane).query_one(Log)
        for _ in range(4):
            if c.app.focused is log:
                break
            await pilot.press("tab")
        assert c.app.focused is log, c.app.focused
