"""How many threads the compiled kernels use.

Kernels split their work over OpenMP threads only above a per-kernel size threshold (below it
a thread team costs more than it saves).  The count is, in order of precedence:

1. what :func:`set_num_threads` set;
2. otherwise ``omp_get_max_threads()``, which honours ``OMP_NUM_THREADS`` and
   ``threadpoolctl.threadpool_limits(n, user_api="openmp")``,
   capped at the CPUs this process may run on.

Results never depend on the count: elementwise kernels are embarrassingly parallel, and
reductions are split so that each sum is still taken in one fixed order.

The thresholds are high (``bpfast.layers._PAR_*``: 4 Mi elements) because on the small shared
machines this was tuned on a second thread only paid for arrays of millions of elements, and
because idle OpenMP threads that spin slow down the next OpenBLAS call.  For the same reason
importing the kernels sets ``GOMP_SPINCOUNT=1000`` in ``os.environ`` unless the user set it
or ``OMP_WAIT_POLICY`` (see ``bpfast/_kernels/__init__.py``).
"""

import numbers
import os

from bpfast._kernels.runtime import omp_max_threads, openmp_enabled

__all__ = ["get_num_threads", "set_num_threads", "openmp_enabled"]

try:
    _CPUS = len(os.sched_getaffinity(0))
except (AttributeError, OSError):  # not Linux
    _CPUS = os.cpu_count() or 1

_user_threads = None


def get_num_threads():
    """Number of threads a large kernel call will use.

    Returns
    -------
    int
        At least 1; always 1 in a build without OpenMP.
    """
    if _user_threads is not None:
        return _user_threads
    return max(1, min(omp_max_threads(), _CPUS))


def set_num_threads(n):
    """Set the number of threads of the compiled kernels, process-wide.

    Parameters
    ----------
    n : int or None
        A positive count, or ``None`` to go back to the default (``OMP_NUM_THREADS`` or the
        number of usable CPUs).  Without OpenMP every kernel is serial whatever ``n`` is.

    Returns
    -------
    int or None
        The previous setting, so that it can be restored.
    """
    global _user_threads
    if n is not None:
        # numbers.Integral: NumPy integers (e.g. from array arithmetic) are counts too.
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive int or None, got {n!r}")
        n = int(n)
        if not openmp_enabled():
            n = 1
    previous, _user_threads = _user_threads, n
    return previous


def threads_for(size, threshold):
    """Thread count for a kernel call over ``size`` elements: 1 below ``threshold``."""
    if size < threshold:
        return 1
    return get_num_threads()
