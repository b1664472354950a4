"""The audit screen on a damaged audit log, and the header's transport warning."""
from __future__ import annotations

from textual.widgets import DataTable, Static
from uikit import render_text, started, summary_text, table_rows, until

from opsconsole.ui.screens import AuditScreen

DAMAGED = [
    b'"x"',                                             # JSON, not an object: skipped
    b"\xff\xfe\xfd",                                    # not UTF-8: skipped
    b"[1]",                                             # skipped
    b'{"time": "notanumber", "who": "ann@box", "action": "cordon", "target": "vm-01", '
    b'"result": "ok"}',
    b'{"time": 1e999, "action": "drain", "target": "vm-02"}',       # no who, no result
    b'{"time": null, "who": ["a", 1], "action": "\\u001b[2Jwipe", "target": {"k": 2}}',
    b'{}',
    b'{"time": 1700000000, "who": "bob@box", "action": "activate", "target": "vm-0',   # torn
]


async def test_audit_screen_shows_what_it_can_of_damaged_lines(console):
    c = console(manual_clock=True)
    audit = c.session.engine.actions.audit
    audit.path.parent.mkdir(parents=True, exist_ok=True)
    audit.path.write_bytes(b"\n".join(DAMAGED))
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        await pilot.press("L")
        await until(pilot, lambda: isinstance(c.app.screen, AuditScreen), "the audit log")
        screen = c.app.screen
        note = render_text(screen.query_one("#audit-damaged", Static).content, width=160)
        assert f"4 damaged lines skipped in {audit.path}" in note
        table = "\n".join(" ".join(row) for row in table_rows(screen.query_one(DataTable)))
        for words in ("ann@box", "cordon", "vm-01", "drain", "vm-02", "\\x1b[2Jwipe",
                      "['a', 1]", "{'k': 2}"):
            assert words in table, (words, table)
        assert "\x1b" not in table
        assert table.count("?") >= 3           # three times that are not times
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(c.app.screen, AuditScreen), "it to close")
        # the console goes on, and appends after the damaged lines
        audit.record("test", "vm-03", "ok")
        assert [r.get("target") for r in audit.read()][-1] == "vm-03" and audit.skipped == 4


async def test_header_shows_the_sessions_warnings(console):
    c = console(manual_clock=True)
    c.session.warnings.append("plain-text Docker API to tcp://mgr-2:2375")
    async with c.app.run_test(size=(200, 40)) as pilot:
        await started(pilot, c)
        await until(pilot, lambda: "⚠ plain-text Docker API to tcp://mgr-2:2375"
                    in summary_text(c.app), "the warning in the header")
