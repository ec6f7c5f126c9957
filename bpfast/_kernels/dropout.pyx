"""Kernels of the Dropout layer (``bpfast.layers.Dropout``; book section 6.4.3).

The random numbers are *not* drawn here: the layer draws ``np.random.rand(*x.shape)`` from
NumPy's global legacy RNG exactly as the book does, so a seeded run consumes the same stream
and gets the same mask.  What the kernels fuse is the rest of the book's
``mask = u > ratio; out = x * mask`` (a comparison pass, a bool-to-float cast and a
multiply, each with its own temporary) into one pass that writes the mask and the output,
and ``dout * mask`` into one pass.  Multiplying by 0.0/1.0 (rather than selecting) keeps
NumPy's values exactly: ``-x * 0.0 == -0.0``, ``inf * 0.0 == nan``.

The loops are C (``dropout.h``), compiled per instruction set with run-time dispatch.
Invariants: all arrays are 1-D views of the same length, outputs overlap nothing (checked).
"""
from cython.parallel cimport prange
from cython cimport floating

from bpfast._kernels._parallel cimport block_start


cdef extern from "dropout.h" nogil:
    void bp_dropout_fwd_f64(const double *x, const double *u, double ratio, double *out,
                            unsigned char *mask, Py_ssize_t n) noexcept
    void bp_dropout_fwd_f32(const float *x, const double *u, double ratio, float *out,
                            unsigned char *mask, Py_ssize_t n) noexcept
    void bp_dropout_bwd_f64(const double *dout, const unsigned char *mask, double *dx,
                            Py_ssize_t n) noexcept
    void bp_dropout_bwd_f32(const float *dout, const unsigned char *mask, float *dx,
                            Py_ssize_t n) noexcept


cdef inline void _dropout_fwd(const floating *x, const double *u, double ratio, floating *out,
                              unsigned char *mask, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_dropout_fwd_f32(x, u, ratio, out, mask, n)
    else:
        bp_dropout_fwd_f64(x, u, ratio, out, mask, n)


cdef inline void _dropout_bwd(const floating *dout, const unsigned char *mask, floating *dx,
                              Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_dropout_bwd_f32(dout, mask, dx, n)
    else:
        bp_dropout_bwd_f64(dout, mask, dx, n)


cdef bint _overlap(const void *a, Py_ssize_t na, const void *b, Py_ssize_t nb) noexcept:
    cdef const char *pa = <const char *>a
    cdef const char *pb = <const char *>b
    return pa < pb + nb and pb < pa + na


def dropout_forward(const floating[::1] x not None,         # IN
                    const double[::1] u not None,           # IN: np.random.rand draws
                    double ratio,
                    floating[::1] out not None,             # OUT: x * (u > ratio)
                    unsigned char[::1] mask_out not None,   # OUT: u > ratio, as bytes 0/1
                    int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], parts = max(n_threads, 1), p, lo, hi
    if u.shape[0] != n or out.shape[0] != n or mask_out.shape[0] != n:
        raise ValueError(f"dropout_forward: lengths differ: x {n}, u {u.shape[0]}, "
                         f"out {out.shape[0]}, mask_out {mask_out.shape[0]}")
    if n == 0:
        return
    if (_overlap(&out[0], n * sizeof(floating), &x[0], n * sizeof(floating))
            or _overlap(&out[0], n * sizeof(floating), &u[0], n * sizeof(double))
            or _overlap(&mask_out[0], n, &x[0], n * sizeof(floating))
            or _overlap(&mask_out[0], n, &u[0], n * sizeof(double))
            or _overlap(&mask_out[0], n, &out[0], n * sizeof(floating))):
        raise ValueError("dropout_forward: an output array overlaps another argument")
    if parts == 1:
        with nogil:
            _dropout_fwd(&x[0], &u[0], ratio, &out[0], &mask_out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _dropout_fwd(&x[lo], &u[lo], ratio, &out[lo], &mask_out[lo], hi - lo)


def dropout_backward(const floating[::1] dout not None,         # IN
                     const unsigned char[::1] mask not None,    # IN: bool bytes
                     floating[::1] dx_out not None,             # OUT: dout * mask
                     int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], parts = max(n_threads, 1), p, lo, hi
    if mask.shape[0] != n or dx_out.shape[0] != n:
        raise ValueError(f"dropout_backward: lengths differ: dout {n}, mask {mask.shape[0]}, "
                         f"dx_out {dx_out.shape[0]}")
    if n == 0:
        return
    if (_overlap(&dx_out[0], n * sizeof(floating), &dout[0], n * sizeof(floating))
            or _overlap(&dx_out[0], n * sizeof(floating), &mask[0], n)):
        raise ValueError("dropout_backward: dx_out overlaps another argument")
    if parts == 1:
        with nogil:
            _dropout_bwd(&dout[0], &mask[0], &dx_out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _dropout_bwd(&dout[lo], &mask[lo], &dx_out[lo], hi - lo)
