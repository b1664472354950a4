"""Looking around: the tree, the details pane, the filter, help, themes."""
from __future__ import annotations

import re

from uikit import details_text, plain_labels, started, tree_ids, until, walk

from opsconsole.model import node_id, vm_id
from opsconsole.ui.screens import HelpScreen
from opsconsole.ui.tree import GROUPS, OPTIONAL


async def test_tree_shows_the_whole_cluster(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        tree, snap = c.tree, c.app.snapshot
        labels = plain_labels(tree)
        ids = tree_ids(tree)
        for host in ("hv-01", "hv-02"):
            assert f"host:{host}" in ids
            assert any(label.startswith(f"▣ {host}") for label in labels)
        for i in range(1, 7):
            assert f"vm:vm-{i:02d}" in ids
            assert f"proxy:portail/vm-{i:02d}" in ids
        assert "backend:portail" in ids
        # every node under its VM, every service, every running task
        assert {n.id for n in snap.nodes} <= ids
        assert {s.id for s in snap.services} <= ids
        assert {t.id for t in snap.tasks if t.wanted} <= ids
        for node in snap.nodes:
            assert tree.index[node.id].parent is tree.index[vm_id(node.hostname)]
        for task in (t for t in snap.tasks if t.node_id):
            assert tree.index[task.id].parent is tree.index[node_id(task.node_id)]
        assert tree.index["proxy:portail/vm-03"].parent is tree.index["backend:portail"]
        names = {n.label.plain.split()[1] for n in walk(tree.root) if n.data.startswith("service:")}
        assert names == {"api", "db", "node-exporter", "portail", "reports", "worker"}
        # the index is the tree: every indexed node hangs from the root, every attached node
        # is indexed
        def attached(node) -> bool:
            while node.parent is not None:
                node = node.parent
            return node is tree.root
        assert all(attached(node) for node in tree.index.values())
        # groups: all but "Nodes without a VM", which shows only when a node has no VM
        assert ids | (set(GROUPS) - OPTIONAL) == set(tree.index)


async def test_cursor_keys_show_the_selected_entity(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(140, 45)) as pilot:
        await started(pilot, c)
        tree = c.tree
        assert tree.has_focus
        vm03 = c.node("vm-03")

        await pilot.press("down")              # first line: the Hosts group
        assert tree.selected_id == "group:hosts"
        assert "Select something in the tree" in details_text(c.app)

        await pilot.press("down")
        assert tree.selected_id == "host:hv-01"
        text = details_text(c.app)
        assert re.search(r"id\s+host:hv-01", text)
        assert re.search(r"OS build\s+20348\.2849", text)
        assert "vm-03: running" in text      # the host's VMs

        await pilot.press("down")
        assert tree.selected_id == "vm:vm-01"
        text = details_text(c.app)
        assert re.search(r"host\s+hv-01", text)
        assert re.search(r"node hostname\s+vm-01", text)
        assert "swarm node: vm-01" in text
        assert "proxy: portail/vm-01 UP" in text

        await pilot.press("down")
        node = c.node("vm-01")
        assert tree.selected_id == node.id
        text = details_text(c.app)
        assert re.search(rf"Swarm id\s+{node.swarm_id}", text)
        assert re.search(r"role\s+manager", text)
        assert re.search(r"leader\s+yes", text)
        assert re.search(r"availability\s+active", text)
        assert "tasks on vm-01 (3, with history)" in text

        await pilot.press("up")
        assert tree.selected_id == "vm:vm-01"
        assert "swarm node: vm-01" in details_text(c.app)

        # a task: the keys reach it once its node is unfolded
        assert tree.select_id(vm03.id)
        await pilot.press("right")             # unfold the node (Tree's expand key)
        await pilot.pause()
        assert tree.index[vm03.id].is_expanded
        await pilot.press("down")
        task = c.app.snapshot.get(tree.selected_id)
        assert tree.selected_id.startswith("task:") and task.node_id == vm03.swarm_id
        text = details_text(c.app)
        assert re.search(rf"service name\s+{task.service_name}", text)
        assert re.search(r"desired state\s+running", text)

        # a proxy server: its sessions and the sparkline of their count
        assert tree.select_id("proxy:portail/vm-03")
        await pilot.pause()
        text = details_text(c.app)
        assert re.search(r"status\s+UP", text)
        assert re.search(r"check status\s+L7OK", text)
        sessions = c.app.snapshot.get("proxy:portail/vm-03").cur_sessions
        assert sessions and f"{sessions} sessions" in text


async def test_filter_keeps_matches_and_their_ancestors(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        tree = c.tree
        everything = tree_ids(tree)
        node = c.node("vm-03")

        await pilot.press("slash")
        box = c.app.query_one("#filter")
        assert box.display and box.has_focus
        await pilot.press(*"vm-03")
        await until(pilot, lambda: tree.filter_text == "vm-03", "the filter to apply")
        assert tree_ids(tree) == {"host:hv-01", "vm:vm-03", node.id,
                                  "backend:portail", "proxy:portail/vm-03"}
        # matches are unfolded so they can be seen
        for entity_id in ("host:hv-01", "vm:vm-03", "backend:portail"):
            assert tree.index[entity_id].is_expanded
        shown = [n.label.plain for n in walk(tree.root) if n.data not in GROUPS]
        assert all("vm-03" in label or label.startswith(("▣ hv-01", "⇄ portail"))
                   for label in shown), shown

        await pilot.press("enter")              # back to the tree, filter kept
        assert tree.has_focus and tree.filter_text == "vm-03"
        await pilot.press("slash", "escape")     # escape clears it
        await until(pilot, lambda: tree.filter_text == "", "the filter to clear")
        assert not box.display
        assert tree.has_focus
        assert tree_ids(tree) == everything


async def test_filter_matches_state_words(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        await pilot.press("slash", *"leader")
        await until(pilot, lambda: c.tree.filter_text == "leader", "the filter to apply")
        leader = c.node("vm-01")
        assert tree_ids(c.tree) == {"host:hv-01", "vm:vm-01", leader.id}
        await pilot.press("escape")
        await until(pilot, lambda: "vm:vm-06" in c.tree.index, "the whole tree back")


async def test_help_opens_and_closes(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(100, 30)) as pilot:
        await started(pilot, c)
        main = c.app.screen
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(c.app.screen, HelpScreen), "the help screen")
        help_text = str(c.app.screen.query_one("#help Static").content)
        assert "drain: proxy server to drain" in help_text
        await pilot.press("escape")
        await until(pilot, lambda: c.app.screen is main, "the help screen to close")
        assert c.tree.has_focus


def _styles(label) -> set[str]:
    return {str(span.style).lower() for span in label.spans}


async def test_theme_key_cycles_themes_and_recolours_the_tree(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        app, tree = c.app, c.tree
        assert app.theme == "opsconsole-dark"
        node_line = tree.index[c.node("vm-01").id]
        before = _styles(node_line.label)
        assert "#57ab5a" in before                   # dark theme's oc-ok on "ready"

        await pilot.press("t")
        assert app.theme == "opsconsole-high-contrast"
        after = _styles(tree.index[c.node("vm-01").id].label)
        assert "#00ff00" in after and "#57ab5a" not in after
        group = tree.index["group:hosts"].label
        assert "#00ffff" in _styles(group)           # groups too: oc-accent

        await pilot.press("t")
        assert app.theme == "opsconsole-light"
        assert "#1a7f37" in _styles(tree.index[c.node("vm-01").id].label)
        await pilot.press("t")
        assert app.theme == "opsconsole-dark"
        assert _styles(tree.index[c.node("vm-01").id].label) == before
