"""Shared fixtures: the real CIFAR data root (from $STGMTL_DATA) for the tests that need it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The folder holding ``cifar100/`` and ``cifar10/`` (``.npz`` layout), from ``$STGMTL_DATA``.

    Skips the test with a clear reason when the variable is unset or the data is absent.
    """
    env = os.environ.get("STGMTL_DATA")
    if not env:
        pytest.skip("real CIFAR data not available: set STGMTL_DATA to the folder with cifar100/")
    root = Path(env)
    missing = [
        str(root / d / f)
        for d, f in (("cifar100", "test.npz"), ("cifar100", "meta.json"), ("cifar10", "test.npz"))
        if not (root / d / f).is_file()
    ]
    if missing:
        pytest.skip(f"real CIFAR data not available under STGMTL_DATA={env}: missing {missing}")
    return root


@pytest.fixture
def single_thread():
    """Run a test with one torch thread (tiny models on a shared, busy CPU), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
