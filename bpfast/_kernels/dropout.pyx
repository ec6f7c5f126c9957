"""Kernels of the Dropout layer (``bpfast.layers.Dropout``; book section 6.4.3).

The random numbers are *not* drawn here: the layer draws ``np.random.rand(*x.shape)`` from
NumPy's global legacy RNG exactly as the book does, so a seeded run consumes the same stream
and gets the same mask.  What the kernels fuse is the rest of the book's
``mask = u > ratio; out = x * mask`` (a comparison pass, a bool-to-float cast and a
multiply, each with its own temporary) into one pass that writes the mask and the output,
and ``dout * mask`` into one pass.  Multiplying by 0.0/1.0 (rather than selecting) keeps
NumPy's values exactly: ``-x * 0.0 == -0.0``, ``inf * 0.0 == nan``.

Invariants: all arrays are 1-D views of the same length (checked).
"""
from cython.parallel cimport prange
from cython cimport floating

from bpfast._kernels._parallel cimport block_start


cdef void _dropout_fwd(const floating *x, const double *u, double ratio, floating *out,
                       unsigned char *mask, Py_ssize_t n) noexcept nogil:
    # Two simple loops rather than one: each vectorises (the byte store of the mask would
    # otherwise keep the float loop scalar).  u stays in cache between them.
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = x[i] * (<floating>1.0 if u[i] > ratio else <floating>0.0)
    for i in range(n):
        mask[i] = u[i] > ratio


cdef void _dropout_bwd(const floating *dout, const unsigned char *mask, floating *dx,
                       Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dout[i] * <floating>(mask[i] != 0)


def dropout_forward(const floating[::1] x not None,         # IN
                    const double[::1] u not None,           # IN: np.random.rand draws
                    double ratio,
                    floating[::1] out not None,             # OUT: x * (u > ratio)
                    unsigned char[::1] mask_out not None,   # OUT: u > ratio, as bytes 0/1
                    *, int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], parts = max(n_threads, 1), p, lo, hi
    if u.shape[0] != n or out.shape[0] != n or mask_out.shape[0] != n:
        raise ValueError(f"dropout_forward: lengths differ: x {n}, u {u.shape[0]}, "
                         f"out {out.shape[0]}, mask_out {mask_out.shape[0]}")
    if n == 0:
        return
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
                     *, int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], parts = max(n_threads, 1), p, lo, hi
    if mask.shape[0] != n or dx_out.shape[0] != n:
        raise ValueError(f"dropout_backward: lengths differ: dout {n}, mask {mask.shape[0]}, "
                         f"dx_out {dx_out.shape[0]}")
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _dropout_bwd(&dout[0], &mask[0], &dx_out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _dropout_bwd(&dout[lo], &mask[lo], &dx_out[lo], hi - lo)
