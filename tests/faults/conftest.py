"""Shared by the fault tests: one intra-op thread and a 2-class synthetic dataset of 8-frame videos."""

import pytest

from edgevid.data.synth import SynthConfig, generate_synth


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one intra-op thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synth(root, SynthConfig(classes=2, videos_per_class=2, val_per_class=1, frames=8, size=32),
                   show_progress=False, overwrite=True)
    return root
