"""Compiled kernels, one extension module per layer (see the docstring of each).

Every kernel takes ``n_threads`` as an ordinary trailing parameter, not a keyword-only one:
Cython 3.3 reports a wrong ``__signature__`` for fused ``def`` functions with keyword-only
defaults (the default moves onto the previous parameter), which breaks ``mypy.stubtest``
against the ``.pyi`` stubs.  Callers still pass it by keyword.
"""

import os

# libgomp's idle OpenMP threads spin for a while after every parallel region (300,000
# iterations by default) before they sleep.  On a small machine that
# spinning holds the cores NumPy's OpenBLAS threads want next.  On a shared 2-core VM
# (`python tools/bench_omp_blas.py`), a (100, 784) x (784, 50) np.dot right after a
# two-thread bpfast kernel took ~11 ms with the default and ~0.3 ms with GOMP_SPINCOUNT=1000
# in one run; in others a neighbour's load made two-thread OpenBLAS slow whatever the
# setting, and a large spin count (100000) made the OpenMP region itself cost 7-14 ms.  The few
# kernels that still use threads (arrays of millions of elements, see bpfast/_threads.py)
# run for milliseconds, so the slower futex wake-up costs nothing there.  libgomp reads its
# environment once, when it is loaded -- i.e. when the first kernel module is imported, right
# after this -- so this is the place; a value the user set (or OMP_WAIT_POLICY) wins, and an
# already loaded libgomp (another extension imported first) keeps its own setting.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
