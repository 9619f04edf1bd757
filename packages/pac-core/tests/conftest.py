"""Shared fixtures for the pac-core tests (helpers live in ``_utils.py``)."""

from __future__ import annotations

import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # missing native extension in a source checkout
    from pac_core import backends


#: The backends that run the CPU tensors these tests use (a CUDA-only backend such as ``triton``
#: is tested in its own file).
CPU_BACKENDS = [n for n in backends.available()
                if backends.get(n).supports(torch.device("cpu"), torch.float32)]


@pytest.fixture(params=CPU_BACKENDS)
def backend_name(request):
    """Each available backend that runs CPU tensors, in turn, selected with ``backends.use``."""
    with backends.use(request.param):
        yield request.param


@pytest.fixture
def reference_backend():
    """Run the test on the ``reference`` backend."""
    with backends.use("reference"):
        yield "reference"
