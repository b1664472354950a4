"""The Docker Swarm lab as a session fixture.  Every test in tests/lab is marked `lab`."""
import os
import shutil
from pathlib import Path

import pytest

from .swarm_lab import Lab, LabError

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: needs the local Docker Swarm lab (root + docker.io)")


def pytest_collection_modifyitems(config, items):
    for item in items:  # this hook sees the whole session's items: mark only ours
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def swarm_lab():
    # Fail, never skip: CI must not go green with the lab silently missing.
    if os.geteuid() != 0:
        pytest.fail("the swarm lab needs root (network namespaces, dockerd)", pytrace=False)
    if not shutil.which("dockerd"):
        pytest.fail("dockerd not found: apt-get install docker.io busybox-static iproute2", pytrace=False)
    lab = Lab()
    try:
        lab.up()  # cleans up after itself if it fails
    except LabError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield lab
    finally:
        lab.down()
