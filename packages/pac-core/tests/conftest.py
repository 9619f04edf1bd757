"""Shared fixtures for the pac-core tests (helpers live in ``_utils.py``)."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # missing native extension in a source checkout
    from pac_core import backends


@pytest.fixture(params=backends.available())
def backend_name(request):
    """Each available backend in turn, selected with ``backends.use``."""
    with backends.use(request.param):
        yield request.param


@pytest.fixture
def reference_backend():
    """Run the test on the ``reference`` backend."""
    with backends.use("reference"):
        yield "reference"
