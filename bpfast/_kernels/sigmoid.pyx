"""Kernels of the Sigmoid layer (``bpfast.layers.Sigmoid``; book section 5.5.2).

The forward pass needs exp, so its primitive is the dispatched C loop ``bp_sigmoid_*`` of
``simd.h``; the backward pass is plain arithmetic and is written here.

Invariants the primitives assume: all buffers are C-contiguous, of the same length ``n``.
"""
from cython.parallel cimport prange
from cython cimport floating

from bpfast._kernels._parallel cimport block_start
from bpfast._kernels._simd cimport bp_sigmoid_f32, bp_sigmoid_f64


cdef inline void _sigmoid_fwd(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_sigmoid_f32(x, out, n)
    else:
        bp_sigmoid_f64(x, out, n)


cdef void _sigmoid_bwd(const floating *dout, const floating *out, floating *dx,
                       Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        # Same evaluation order as the book's `dout * (1.0 - out) * out`: bit-identical.
        # The cast matters: Cython turns a bare `1` into the double literal 1.0, which would
        # compute float32 in double and round differently from NumPy.
        dx[i] = dout[i] * (<floating>1 - out[i]) * out[i]


def sigmoid_forward(const floating[::1] x not None,  # IN
                    floating[::1] out not None,      # OUT
                    int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], parts = max(n_threads, 1), p, lo, hi
    if out.shape[0] != n:
        raise ValueError(f"sigmoid_forward: lengths differ: x {n}, out {out.shape[0]}")
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _sigmoid_fwd(&x[0], &out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _sigmoid_fwd(&x[lo], &out[lo], hi - lo)


def sigmoid_backward(const floating[::1] dout not None,  # IN
                     const floating[::1] out not None,   # IN: the forward output
                     floating[::1] dx_out not None,      # OUT
                     int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], parts = max(n_threads, 1), p, lo, hi
    if out.shape[0] != n or dx_out.shape[0] != n:
        raise ValueError(f"sigmoid_backward: lengths differ: dout {n}, out {out.shape[0]}, "
                         f"dx_out {dx_out.shape[0]}")
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _sigmoid_bwd(&dout[0], &out[0], &dx_out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _sigmoid_bwd(&dout[lo], &out[lo], &dx_out[lo], hi - lo)
