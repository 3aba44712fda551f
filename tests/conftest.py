"""Shared fixtures: the real clips in ../shared/data and a small synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AAD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real clips not found at {path} (set AAD_SHARED_DATA to their folder)")
    return path


@pytest.fixture(scope="session")
def mimii_mini() -> Path:
    """Raw MIMII layout, 8-channel: 4 types x ids 00/02/04/06, 1 normal + 1 abnormal each."""
    return _shared("mimii-mini")


@pytest.fixture(scope="session")
def dcase2020_mini() -> Path:
    """DCASE 2020 Task 2 names, 6 machine types, test clips only."""
    return _shared("dcase2020-mini")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic DCASE 2020 tree, made once per session (2 types, 2 ids, 2 s clips)."""
    from aad.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(
        root,
        machine_types=("fan", "valve"),
        machine_ids=("id_00", "id_02"),
        n_train=12,
        n_test_normal=6,
        n_test_anomaly=6,
        duration_s=2.0,
        seed=0,
    )


@pytest.fixture
def one_thread():
    """One torch thread: small models and feature batches run fastest so on 2 cores
    (more threads contend). Modules opt in with ``pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
