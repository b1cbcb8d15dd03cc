"""Shared fixtures. Tests never touch the network and never need a GPU."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # hub weights are never fetched by tests
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist (`make test` runs `-n 3` on two cores): one intra-op thread per worker, here and in
    # what it starts (notebook kernels, servers, torchrun children inherit the environment). Processes of
    # one thread beat one of two on this suite's small batches, and the waits of one worker (a kernel
    # starting, a browser rendering) overlap the others' compute.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models, restored afterwards: a second thread gains
    nothing there, and on a shared, loaded 2-core machine every parallel op waits ~0.1 s at its barrier
    (measured: index_add_ on 600 floats 0.12 s with 2 threads vs 1e-5 s with 1). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``; a module-level ``torch.set_num_threads(1)``
    would run every later test of the session, the heavy ones too, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def zoo_cnn():
    from workbench.models import load_model

    return load_model("zoo:resnet_shapes")


@pytest.fixture(scope="session")
def shapes_small():
    from workbench.data import planted_shapes

    return planted_shapes(64, size=64, seed=123)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # Under pytest-xdist: one block per worker, of equal count and about equal time, each longest first
    # (see tests/xdist_order.py). A serial run keeps the collection order. Last, after `-m` has deselected
    # (`-m "not slow"`, say): the blocks must be equal among the tests that run.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        from xdist_order import balanced_order

        items[:] = balanced_order(items, workers)
