"""The tree is updated in place: the operator's cursor and folds survive refreshes."""
from __future__ import annotations

from uikit import started, until


async def test_cursor_and_folds_survive_tasks_moving(console):
    c = console(speed=40, poll_interval=0.1)
    async with c.app.run_test(size=(120, 60)) as pilot:
        await started(pilot, c)
        tree, app = c.tree, c.app
        vm01, vm05 = c.node("vm-01"), c.node("vm-05")

        # unfold two nodes above the cursor (so lines above it come and go), fold a VM
        for node_id in (vm01.id, vm05.id):
            tree.index[node_id].expand()
        tree.index["vm:vm-04"].collapse()
        assert tree.select_id("vm:vm-06")
        await pilot.pause()
        cursor = tree.cursor_node
        assert cursor is tree.index["vm:vm-06"]
        first_line = tree.cursor_line

        shows = []
        real_show = tree.show
        tree.show = lambda snap: (shows.append(snap), real_show(snap))[1]

        # vm-05's tasks move away underneath the console (another operator's drain)
        c.sim.set_availability(vm05.swarm_id, "drain")

        def settled() -> bool:
            snap = app.snapshot
            return (len(shows) >= 5 and not snap.tasks_on_node(vm05.swarm_id)
                    and all(snap.converged(s) for s in snap.services)
                    and not any(t.state != "running" for t in snap.tasks if t.wanted))

        def stable() -> None:
            """Checked between refreshes, all the way through."""
            assert tree.cursor_node is cursor, (tree.cursor_node, cursor)
            assert tree.selected_id == "vm:vm-06"
            assert tree.index["vm:vm-06"] is cursor
            assert tree.get_node_at_line(tree.cursor_line) is cursor
            assert not tree.index["vm:vm-04"].is_expanded
            assert tree.index[vm01.id].is_expanded and tree.index[vm05.id].is_expanded

        await until(pilot, settled, "vm-05 drained and every service converged",
                    between=stable)
        await pilot.pause()
        stable()
        assert not tree.index[vm05.id].children            # its tasks left the tree...
        assert tree.cursor_line != first_line             # ...so the cursor's line moved
        moved = {t.node_id for t in app.snapshot.tasks if t.wanted and t.node_id}
        assert vm05.swarm_id not in moved
        # tasks that landed under the folded VM are there, just not shown
        vm04 = c.node("vm-04")
        assert {t.id for t in app.snapshot.tasks_on_node(vm04.swarm_id)} == \
            {n.data for n in tree.index[vm04.id].children}


async def test_select_id_right_after_a_change(console):
    """select_id moves the cursor at once, even to a node whose branch was folded."""
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        tree = c.tree
        tree.index["host:hv-02"].collapse()
        node = c.node("vm-05")
        assert tree.select_id(node.id)             # no render in between
        assert tree.selected_id == node.id
        assert tree.index["host:hv-02"].is_expanded
        await pilot.pause()
        assert tree.selected_id == node.id
        assert tree.get_node_at_line(tree.cursor_line) is tree.index[node.id]


async def test_left_and_right_fold_and_unfold(console):
    """The help says ← → fold and unfold."""
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        tree = c.tree
        assert tree.select_id("vm:vm-02")
        await pilot.press("left")
        assert not tree.index["vm:vm-02"].is_expanded
        await pilot.press("left")                         # folded: go to the parent
        assert tree.selected_id == "host:hv-01"
        assert tree.index["host:hv-01"].is_expanded
        await pilot.press("down", "right")
        assert tree.selected_id == "vm:vm-01"
        assert tree.select_id("vm:vm-02")
        await pilot.press("right")
        assert tree.index["vm:vm-02"].is_expanded


async def test_cursor_on_a_task_that_goes_away_lands_on_its_node(console):
    c = console(speed=40, poll_interval=0.1)
    async with c.app.run_test(size=(120, 60)) as pilot:
        await started(pilot, c)
        tree, vm05 = c.tree, c.node("vm-05")
        task = c.wanted_tasks_on("vm-05")[0]
        assert tree.select_id(task.id)
        await pilot.pause()
        assert tree.selected_id == task.id
        c.sim.set_availability(vm05.swarm_id, "drain")      # the task is shut down
        await until(pilot, lambda: task.id not in tree.index, "the task to leave the tree")
        await until(pilot, lambda: tree.selected_id == vm05.id,
                    "the cursor to land on the task's node")


async def test_nodes_without_a_vm_get_a_group_only_while_there_are_some(console):
    from dataclasses import replace

    from opsconsole.model import ROOT_HOSTS, ROOT_SERVICES, ROOT_UNPLACED
    c = console(manual_clock=True)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        tree = c.tree
        assert ROOT_UNPLACED not in tree.index
        vm06 = c.node("vm-06")
        c.sim.nodes[vm06.swarm_id] = replace(vm06, hostname="stray")   # no VM runs "stray"
        c.sim.changed.set()
        await until(pilot, lambda: ROOT_UNPLACED in tree.index, "the group to appear")
        order = [n.data for n in tree.root.children]
        assert order.index(ROOT_HOSTS) < order.index(ROOT_UNPLACED) < order.index(ROOT_SERVICES)
        assert tree.index[vm06.id].parent is tree.index[ROOT_UNPLACED]
        c.sim.nodes[vm06.swarm_id] = vm06
        c.sim.changed.set()
        await until(pilot, lambda: ROOT_UNPLACED not in tree.index, "the group to go")
        assert tree.index[vm06.id].parent is tree.index["vm:vm-06"]
