import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from edgevid.data.synth import SynthConfig, generate_synth

os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny models: as fast, and immune to a busy 2-core machine's thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    """3 classes x (4 train + 2 val) synthetic videos of 16 frames at 32x32, one copy per test module."""
    root = tmp_path_factory.mktemp("synth")
    generate_synth(root, SynthConfig(classes=3, videos_per_class=4, val_per_class=2, frames=16, size=32),
                   show_progress=False, overwrite=True)
    return root
