"""Shared fixtures of the bpfast test suite.

* ``rng``: a seeded ``numpy.random.Generator``; the seed comes from ``BPFAST_TEST_SEED``
  (printed in the pytest header) and is mixed with the test's id, so every test draws its own
  reproducible stream.
* ``dtype``: float32 and float64, the dtypes with compiled kernels.
* ``n_threads``: 1 and 2 kernel threads (``bpfast.set_num_threads``), restored afterwards;
  the 2-thread case is skipped in a build without OpenMP.

Hypothesis runs few examples by default (fast local runs); ``BPFAST_HYPOTHESIS_PROFILE=ci``
runs more.  ``deadline=None`` because first calls are slow (imports, cold caches).
"""

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import bpfast

SEED = int(os.environ.get("BPFAST_TEST_SEED", "20240917"))

settings.register_profile("default", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("BPFAST_HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
    # CI sets BPFAST_TEST_INSTALLED=1: the suite must test the installed package, never a
    # stray source tree on sys.path (which would hide files missing from the sdist).
    if os.environ.get("BPFAST_TEST_INSTALLED") == "1":
        location = Path(bpfast.__file__).resolve()
        if location.is_relative_to(config.rootpath.resolve()):
            raise pytest.UsageError(f"bpfast was imported from the source tree ({location})")


def pytest_report_header(config):
    return (
        f"bpfast {bpfast.__version__}: openmp_enabled={bpfast.openmp_enabled()}, "
        f"get_num_threads={bpfast.get_num_threads()}, simd_dispatch={bpfast.simd_dispatch()!r}, "
        f"BPFAST_TEST_SEED={SEED}, numpy {np.__version__}"
    )


@pytest.fixture
def rng(request):
    return np.random.default_rng([SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def n_threads(request):
    if request.param > 1 and not bpfast.openmp_enabled():
        pytest.skip("built without OpenMP: kernels run on one thread")
    previous = bpfast.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        bpfast.set_num_threads(previous)
