"""Test tiers: unit/ (no I/O), ui/ (Pilot + snapshots), ssh/ (a real sshd on loopback, its
own, not the lab), lab/ (real systems).

With OPSCONSOLE_REQUIRE_ALL_TIERS=1 (set by .ci/run) the run fails when any
test was skipped or any tier ran no test: a lab that silently skips is a defect.
"""
from __future__ import annotations

import os

import pytest

TIERS = ("unit", "ui", "ssh", "lab")
_outcomes: dict[str, dict[str, int]] = {t: {"passed": 0, "skipped": 0} for t in TIERS}


def _tier(nodeid: str) -> str | None:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in TIERS else None


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A whole module skipped at collection (module-level skip, importorskip) counts too."""
    tier = _tier(report.nodeid)
    if tier is not None and report.skipped:
        _outcomes[tier]["skipped"] += 1


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tier = _tier(report.nodeid)
    if tier is None:
        return
    if report.skipped:
        _outcomes[tier]["skipped"] += 1
    elif report.when == "call" and report.passed:
        _outcomes[tier]["passed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("OPSCONSOLE_REQUIRE_ALL_TIERS") != "1":
        return
    problems = [f"tier {t}: {o['skipped']} skipped" for t, o in _outcomes.items() if o["skipped"]]
    problems += [f"tier {t}: no test passed" for t, o in _outcomes.items() if not o["passed"]]
    if problems:
        print("\nREQUIRED TIERS NOT MET: " + "; ".join(problems))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        print("\nall tiers ran: " + ", ".join(f"{t} {o['passed']} passed"
                                               for t, o in _outcomes.items()))
