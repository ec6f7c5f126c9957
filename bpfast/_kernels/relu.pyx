"""Kernels of the Relu layer (``bpfast.layers.Relu``; book section 5.5.1).

Layering (after scikit-learn's ``_loss``): the primitives are ``noexcept nogil`` loops on raw
pointers -- here the dispatched C loops ``bp_relu_*`` of ``simd.h`` (see there why they are in
C); ``relu_forward``/``relu_backward`` take typed memoryviews, check the invariants the
primitives assume (equal lengths) and split the work over OpenMP threads; the Python layer
validates dtypes and shapes, allocates, and keeps the layer state.
"""
from cython.parallel cimport prange
from cython cimport floating

from bpfast._kernels._parallel cimport block_start
from bpfast._kernels._simd cimport bp_relu_bwd_f32, bp_relu_bwd_f64, bp_relu_fwd_f32, bp_relu_fwd_f64


cdef inline void _relu_fwd(const floating *x, floating *out, unsigned char *mask,
                           Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_relu_fwd_f32(x, out, mask, n)
    else:
        bp_relu_fwd_f64(x, out, mask, n)


cdef inline void _relu_bwd(const floating *dout, const unsigned char *mask, floating *dx,
                           Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_relu_bwd_f32(dout, mask, dx, n)
    else:
        bp_relu_bwd_f64(dout, mask, dx, n)


def relu_forward(const floating[::1] x not None,        # IN
                 floating[::1] out not None,            # OUT
                 unsigned char[::1] mask_out not None,  # OUT: 1 where x <= 0
                 int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], parts = max(n_threads, 1), p, lo, hi
    if out.shape[0] != n or mask_out.shape[0] != n:
        raise ValueError(f"relu_forward: lengths differ: x {n}, out {out.shape[0]}, "
                         f"mask_out {mask_out.shape[0]}")
    if n == 0:
        return
    if parts == 1:
        # Not through prange: even a one-thread OpenMP region costs ~1.5 us per call here.
        with nogil:
            _relu_fwd(&x[0], &out[0], &mask_out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _relu_fwd(&x[lo], &out[lo], &mask_out[lo], hi - lo)


def relu_backward(const floating[::1] dout not None,       # IN
                  const unsigned char[::1] mask not None,  # IN
                  floating[::1] dx_out not None,           # OUT (may be dout itself)
                  int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], parts = max(n_threads, 1), p, lo, hi
    if mask.shape[0] != n or dx_out.shape[0] != n:
        raise ValueError(f"relu_backward: lengths differ: dout {n}, mask {mask.shape[0]}, "
                         f"dx_out {dx_out.shape[0]}")
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _relu_bwd(&dout[0], &mask[0], &dx_out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _relu_bwd(&dout[lo], &mask[lo], &dx_out[lo], hi - lo)
