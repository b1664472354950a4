"""The operation registry is the one list: the catalog builds from it, config remaps its
binding ids (test_config), the CLI offers its operations."""
from __future__ import annotations

from unitkit import sim_snapshot

from opsconsole import cli
from opsconsole.ops import catalog, registry
from opsconsole.ops.maintenance import WindowOptions

A_TARGET = {"node": "vm-02", "host": "hv-02", "vms": "cluster",
            "service": "worker", "replicas": "api=5", "image": "worker=registry.lab/worker:2.0"}


def test_every_operation_builds_its_plan_by_its_one_name(sim):
    snap = sim_snapshot(sim)
    options = WindowOptions(update_command="true")
    for op in registry.OPERATIONS.values():
        plan = catalog.build(op.name, snap, A_TARGET[op.targets], options=options)
        assert plan.kind == op.name and plan.steps


def test_default_keys_are_distinct_and_a_remapping_takes_its_first_key():
    keys = [k.key for k in registry.KEYS.values()]
    assert len(set(keys)) == len(keys), keys
    assert registry.live_keys({"drain": "D,shift+d"})["drain"] == "D"
    assert registry.live_keys({})["rolling-update"] == "U"


def test_the_cli_offers_every_operation():
    assert list(cli.OPERATION.choices) == list(registry.OPERATIONS)
    assert "rolling-update" in cli.OPERATION.choices
