# SPDX-License-Identifier: MIT
"""pytest fixtures for bring-up tests that run on the model in CI and on the card in the lab.

    pytest_plugins = ["vfioq.pytest_plugin"]      # in conftest.py

    def test_scratch(card):                       # the built-in model, or --vfioq-device
        card.regs.SCRATCH = 0x5A5A
        assert card.regs.SCRATCH == 0x5A5A

    def test_an_error_status(faulty_card):        # the model only: skipped on a real device
        card = faulty_card(faults=["1:status"])

`pytest --vfioq-device vfio-user:/run/card.sock` (or a PCI address) runs the same
tests against that device.
"""

import pytest

import vfioq


def pytest_addoption(parser):
    parser.addoption("--vfioq-device", default="model",
                     help='the device the `card` fixture opens: "model" (default), "vfio-user:PATH" or a PCI address')


@pytest.fixture
def vfioq_device(request):
    """The address the tests run against."""
    return request.config.getoption("--vfioq-device")


@pytest.fixture
def card(vfioq_device):
    """The device, opened for this test alone."""
    c = vfioq.open(vfioq_device)
    yield c
    c.close()


@pytest.fixture
def faulty_card(vfioq_device):
    """A maker of model cards set up to misbehave (model options as vfioq.open takes them); the test
    is skipped when the run is against a real device, where faults cannot be asked for."""
    if vfioq_device != "model":
        pytest.skip(f"fault injection needs the model, and this run is against {vfioq_device}")
    made = []

    def make(**options):
        made.append(vfioq.open("model", **options))
        return made[-1]

    yield make
    for c in made:
        c.close()
