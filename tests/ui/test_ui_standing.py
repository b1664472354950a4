"""The Problems (!) and Resilience (N) views: what is wrong now, and what would break."""
from __future__ import annotations

from textual.widgets import OptionList
from uikit import started, until

from opsconsole.model import DRAIN, node_id, vm_id
from opsconsole.ui.screens import ConfirmScreen, RehearsalScreen
from opsconsole.ui.standing import ProblemsScreen, ResilienceScreen


def _drain_vm02(sim) -> None:
    node = next(n for n in sim.nodes.values() if n.hostname == "vm-02")
    sim.set_availability(node.swarm_id, DRAIN)


async def test_problems_lists_what_is_wrong_and_enter_goes_to_it(console):
    c = console(manual_clock=True, prepare=_drain_vm02)
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        await until(pilot, lambda: "problems" in str(c.app.query_one("#summary").content),
                    "the header's problem count")
        await pilot.press("exclamation_mark")
        await until(pilot, lambda: isinstance(c.app.screen, ProblemsScreen), "the problems view")
        options = c.app.screen.query_one(OptionList)
        texts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        drained = next(i for i, t in enumerate(texts) if "vm-02 is drain" in t)
        assert any("quorum tolerates no manager loss" in t for t in texts)
        options.highlighted = drained
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(c.app.screen, ProblemsScreen), "it closes")
        assert c.tree.selected_id == node_id(c.node_id("vm-02"))


async def test_resilience_shows_the_reference_finding(console):
    c = console(manual_clock=True)
    async with c.app.run_test(size=(160, 40)) as pilot:
        await started(pilot, c)
        assert "N-1 ✘ hv-01: quorum" in str(c.app.query_one("#summary").content)
        await pilot.press("N")
        await until(pilot, lambda: isinstance(c.app.screen, ResilienceScreen), "the N-1 view")
        shown = " ".join(str(w.content) for w in c.app.screen.query("Static"))
        assert "Raft loses quorum: vm-01 goes" in shown and "third failure domain" in shown
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(c.app.screen, ResilienceScreen), "it closes")


async def test_the_plan_dialog_rehearses_on_a_twin_and_changes_nothing(console):
    c = console(speed=1)
    async with c.app.run_test(size=(120, 40)) as pilot:
        await started(pilot, c)
        before = c.world()
        assert c.tree.select_id(vm_id("vm-02"))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(c.app.screen, ConfirmScreen), "the plan")
        await pilot.click("#confirm-rehearse")
        await until(pilot, lambda: isinstance(c.app.screen, RehearsalScreen), "the rehearsal",
                    timeout=60)
        title = str(c.app.screen.query_one("#confirm-title").content)
        assert title.startswith("REHEARSAL: drain vm-02 would end done"), title
        assert c.world() == before                   # the real (simulated) site: untouched
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(c.app.screen, ConfirmScreen), "back to the plan")
