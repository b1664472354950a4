"""The lab as fixtures.  Every test in tests/lab is marked `lab`.

One lab at a time lives under /tmp/ocl: the default one (5 VMs) for most
tests, the reference one (6 VMs, two hosts with one manager each) for the
maintenance windows. Tests that use the reference lab run last, so the lab
switches layout once. Fixtures fail, never skip: CI must not go green with
the lab silently missing.
"""
import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from opsconsole.config import load
from opsconsole.session import open_session

from .swarm_lab import WINRM_PASSWORD, WINRM_PASSWORD_ENV, WINRM_USER, WINRM_USER_ENV, Lab, LabError

HERE = Path(__file__).parent
REFERENCE_FIXTURES = {"reference_lab", "ref_lab"}


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs the local Docker Swarm lab (root + docker.io)")


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if HERE in Path(str(item.fspath)).parents]
    for item in ours:  # this hook sees the whole session's items: mark only ours
        item.add_marker(pytest.mark.lab)
    # the reference layout last, so the lab changes layout once in a run
    late = [item for item in ours if REFERENCE_FIXTURES & set(item.fixturenames)]
    for item in late:
        items.remove(item)
    items.extend(late)


class Labs:
    """The one lab of the session, in the layout a test asks for."""

    def __init__(self) -> None:
        self.lab: Lab | None = None

    def get(self, reference: bool) -> Lab:
        if self.lab is not None and self.lab.reference == reference:
            return self.lab
        if self.lab is not None:
            self.lab.down()
            self.lab = None
        lab = Lab(reference=reference)
        try:
            lab.up()  # cleans up after itself if it fails
        except LabError as e:
            pytest.fail(str(e), pytrace=False)
        self.lab = lab
        return lab

    def down(self) -> None:
        if self.lab is not None:
            self.lab.down()
            self.lab = None


@pytest.fixture(scope="session")
def _labs():
    if os.geteuid() != 0:
        pytest.fail("the swarm lab needs root (network namespaces, dockerd)", pytrace=False)
    if not shutil.which("dockerd"):
        pytest.fail("dockerd not found: tests/host-packages.sh installs what the lab needs",
                    pytrace=False)
    # what the lab inventory's [winrm] names: the emulators' credentials
    os.environ[WINRM_USER_ENV], os.environ[WINRM_PASSWORD_ENV] = WINRM_USER, WINRM_PASSWORD
    labs = Labs()
    try:
        yield labs
    finally:
        labs.down()


@pytest.fixture
def swarm_lab(_labs) -> Lab:
    """The default lab: vm-01..03 managers on hv-01, vm-04, vm-05 workers on hv-02."""
    return _labs.get(reference=False)


@pytest.fixture
def reference_lab(_labs) -> Lab:
    """The reference layout: vm-01 (manager), vm-02, vm-03 on hv-01; vm-04 (manager),
    vm-05, vm-06 on hv-02. No `pinned`; web has 3 replicas spread over the hosts."""
    return _labs.get(reference=True)


@pytest.fixture
def lab(swarm_lab):
    """The default lab, whole before the test and put back after it."""
    swarm_lab.restore()
    yield swarm_lab
    swarm_lab.restore()


@pytest.fixture
def ref_lab(reference_lab):
    """The reference lab, whole before the test and put back after it."""
    reference_lab.restore()
    yield reference_lab
    reference_lab.restore()


def lab_inventory(lab: Lab, tmp_path: Path):
    """The lab's inventory as the console loads it; journal and audit under tmp_path."""
    return dataclasses.replace(load(lab.inventory_path), state_dir=tmp_path / "state")


@pytest.fixture
def inventory(lab, tmp_path):
    return lab_inventory(lab, tmp_path)


@pytest.fixture
def ref_inventory(ref_lab, tmp_path):
    return lab_inventory(ref_lab, tmp_path)


async def _session(inventory):
    session = open_session(inventory)
    try:
        yield session
    finally:
        thread = session.providers.swarm._events_thread
        await session.providers.close()
        assert thread is None or not thread.is_alive(), "the event thread outlived close()"


@pytest.fixture
async def console(inventory):
    """The console's session on the lab (every real provider); closing it leaves no thread."""
    async for session in _session(inventory):
        yield session


@pytest.fixture
async def ref_console(ref_inventory):
    async for session in _session(ref_inventory):
        yield session
