"""What the compiled kernels were built with, and the vector exp exposed for its tests."""
from cython cimport floating

from bpfast._kernels._openmp cimport BPFAST_OPENMP, omp_get_max_threads
from bpfast._kernels._simd cimport bp_dispatch_name, bp_exp_array_f32, bp_exp_array_f64


def openmp_enabled():
    """True when the kernels were compiled and linked with OpenMP."""
    return bool(BPFAST_OPENMP)


def omp_max_threads():
    """``omp_get_max_threads()``: honours ``OMP_NUM_THREADS`` and threadpoolctl; 1 without OpenMP."""
    return omp_get_max_threads()


def simd_dispatch():
    """How the exp loops are dispatched across instruction sets (a build-time string)."""
    return bp_dispatch_name().decode()


def vec_exp(const floating[::1] x not None, floating[::1] out not None):
    """``out[i] = exp(x[i])`` with the vector exp of ``simd.h`` (used to test its accuracy)."""
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"vec_exp: lengths differ: x {x.shape[0]}, out {out.shape[0]}")
    if x.shape[0] == 0:
        return
    with nogil:
        if floating is float:
            bp_exp_array_f32(&x[0], &out[0], x.shape[0])
        else:
            bp_exp_array_f64(&x[0], &out[0], x.shape[0])
