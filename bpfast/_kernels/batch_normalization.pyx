"""Kernels of the BatchNormalization layer (``bpfast.layers.BatchNormalization``; book 6.3).

The book normalises every column (activation) of an ``(N, D)`` matrix -- a 4-D input is
flattened to ``(N, C*H*W)`` first -- with eps ``10e-7`` (= 1e-6) and the biased variance, and
caches ``xc``, ``xn`` and ``std`` for backward.  It takes about a dozen NumPy passes (each
with a temporary) per direction; these kernels take three, over blocks of columns narrow
enough that a block of ``x``/``xc`` stays in cache between the passes:

* forward (training): column sums -> mean; ``xc = x - mean`` and its squared sums -> var,
  std; ``xn = xc / std`` (stored only if asked: the layer recomputes it on demand, which
  saves writing one array here and reading it in backward) and ``out = gamma * xn + beta``;
* forward (inference): one pass, ``out = gamma * ((x - running_mean) / sqrt(running_var +
  1e-6)) + beta``;
* backward: the sums ``dbeta``, ``dgamma`` and ``dstd``; ``dxc`` and its sum ``dmu``;
  ``dx = dxc - dmu / N``.

Every elementwise operation is the book's, in the book's order and dtype, and every column
sum starts from +0.0 and adds the rows in order -- what NumPy's ``sum(axis=0)`` does on a
C-contiguous matrix (so a column of -0.0 sums to +0.0) -- so float64 results are
bit-identical to the book's.  Sums are
accumulated in double; for float32 this is more accurate than NumPy's float32 sums (results
then agree to float32 rounding, not bit for bit).

The loops themselves are C (``batch_normalization.h``): compiled per instruction set with
run-time dispatch, and without fused multiply-adds (see there why).  Columns are
independent, so blocks of columns are split over threads: race-free, and the result does
not depend on the thread count.  Invariants (checked before the loops): every
``(N, D)`` array has the same shape, every vector has length D, N >= 1.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

from bpfast._kernels._parallel cimport block_start

# Bytes of one (N, block) slice of an array.  Blocks of columns are the unit of work of a
# thread; within a block every pass streams whole row segments.  Narrow blocks (so that a
# slice stays in L2 between passes) measured *slower* here than segments of ~8 KiB: with
# many short streams the hardware prefetchers fall behind, and the kernels are memory bound.
cdef Py_ssize_t _BLOCK_BYTES = 1 << 20


cdef extern from "batch_normalization.h" nogil:
    void bp_bn_fwd_train_f64(const double *x, double *mean, double *var, double *std,
                             double *xc, double *xn, const double *gamma, const double *beta,
                             double *out, double *acc, Py_ssize_t n, Py_ssize_t d,
                             Py_ssize_t j0, Py_ssize_t j1) noexcept
    void bp_bn_fwd_train_f32(const float *x, float *mean, float *var, float *std,
                             float *xc, float *xn, const float *gamma, const float *beta,
                             float *out, double *acc, Py_ssize_t n, Py_ssize_t d,
                             Py_ssize_t j0, Py_ssize_t j1) noexcept
    void bp_bn_fwd_infer_f64(const double *x, const double *rmean, const double *rstd,
                             const double *gamma, const double *beta, double *out,
                             Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept
    void bp_bn_fwd_infer_f32(const float *x, const double *rmean, const double *rstd,
                             const double *gamma, const double *beta, double *out,
                             Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept
    void bp_bn_bwd_f64(const double *dout, const double *xn, const double *xc,
                       const double *std, const double *gamma, double k2, double nb,
                       double *dx, double *dgamma, double *dbeta, double *acc, Py_ssize_t n,
                       Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept
    void bp_bn_bwd_f32(const float *dout, const float *xn, const float *xc,
                       const float *std, const float *gamma, float k2, float nb,
                       float *dx, float *dgamma, float *dbeta, double *acc, Py_ssize_t n,
                       Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept


cdef Py_ssize_t _block_width(Py_ssize_t n, Py_ssize_t d, Py_ssize_t itemsize) noexcept nogil:
    cdef Py_ssize_t w = _BLOCK_BYTES // (n * itemsize)
    w -= w % 8
    if w < 8:
        w = 8
    return w if w < d else d


cdef inline void _fwd_train_block(const floating *x, floating *mean, floating *var,
                                  floating *std, floating *xc, floating *xn,
                                  const floating *gamma, const floating *beta, floating *out,
                                  double *acc, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                                  Py_ssize_t j1) noexcept nogil:
    if floating is float:
        bp_bn_fwd_train_f32(x, mean, var, std, xc, xn, gamma, beta, out, acc, n, d, j0, j1)
    else:
        bp_bn_fwd_train_f64(x, mean, var, std, xc, xn, gamma, beta, out, acc, n, d, j0, j1)


cdef inline void _fwd_infer_block(const floating *x, const double *rmean, const double *rstd,
                                  const double *gamma, const double *beta, double *out,
                                  Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                                  Py_ssize_t j1) noexcept nogil:
    if floating is float:
        bp_bn_fwd_infer_f32(x, rmean, rstd, gamma, beta, out, n, d, j0, j1)
    else:
        bp_bn_fwd_infer_f64(x, rmean, rstd, gamma, beta, out, n, d, j0, j1)


cdef inline void _bwd_block(const floating *dout, const floating *xn, const floating *xc,
                            const floating *std, const floating *gamma, floating k2,
                            floating nb, floating *dx, floating *dgamma, floating *dbeta,
                            double *acc, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                            Py_ssize_t j1) noexcept nogil:
    if floating is float:
        bp_bn_bwd_f32(dout, xn, xc, std, gamma, k2, nb, dx, dgamma, dbeta, acc, n, d, j0, j1)
    else:
        bp_bn_bwd_f64(dout, xn, xc, std, gamma, k2, nb, dx, dgamma, dbeta, acc, n, d, j0, j1)


cdef struct _Span:
    const char *lo
    const char *hi
    bint out


cdef int _check_disjoint(_Span *spans, int k) except -1:
    # The C loops take `restrict` pointers: an output overlapping any other array would give
    # wrong numbers silently, so it is an error here.  (Empty spans are skipped.)
    cdef int a, b
    for a in range(k):
        for b in range(a + 1, k):
            if (spans[a].out or spans[b].out) and spans[a].lo < spans[a].hi \
                    and spans[b].lo < spans[b].hi \
                    and spans[a].lo < spans[b].hi and spans[b].lo < spans[a].hi:
                raise ValueError("batch normalization kernels: an output array overlaps "
                                 "another argument")
    return 0


cdef inline _Span _span(const void *p, Py_ssize_t nbytes, bint out) noexcept:
    cdef _Span s
    s.lo = <const char *>p
    s.hi = <const char *>p + nbytes
    s.out = out
    return s


cdef int _check_matrix(str name, Py_ssize_t r, Py_ssize_t c, Py_ssize_t n,
                       Py_ssize_t d) except -1:
    if r != n or c != d:
        raise ValueError(f"{name} has shape ({r}, {c}), expected ({n}, {d})")
    return 0


cdef int _check_vector(str name, Py_ssize_t length, Py_ssize_t d) except -1:
    if length != d:
        raise ValueError(f"{name} has length {length}, expected {d}")
    return 0


def bn_forward_train(const floating[:, ::1] x not None,   # IN: (N, D)
                     floating[::1] mean_out not None,    # OUT: (D,)
                     floating[::1] var_out not None,     # OUT: (D,) biased variance
                     floating[::1] std_out not None,     # OUT: (D,) sqrt(var + 1e-6)
                     floating[:, ::1] xc_out not None,   # OUT: (N, D) x - mean
                     floating[:, ::1] xn_out,            # OUT: (N, D) xc / std, or None
                     const floating[::1] gamma,          # IN: (D,), or None with out None
                     const floating[::1] beta,           # IN: (D,), or None with out None
                     floating[:, ::1] out,               # OUT: (N, D) gamma*xn + beta, or None
                     int n_threads=1):
    """Training forward.  ``xn_out=None`` skips storing xn (the caller recomputes it on
    demand); ``out=None`` (with ``gamma``/``beta`` None) skips the scale and shift, for
    gamma/beta of another dtype, which the caller then applies with NumPy."""
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], w, blocks, parts, t, b, lo, hi, j1
    cdef double *acc
    cdef const floating *g = NULL
    cdef const floating *bt = NULL
    cdef floating *o = NULL
    cdef floating *xnp = NULL
    if n < 1 or d < 1:
        raise ValueError(f"bn_forward_train: x has shape ({n}, {d}), need N, D >= 1")
    _check_vector("mean_out", mean_out.shape[0], d)
    _check_vector("var_out", var_out.shape[0], d)
    _check_vector("std_out", std_out.shape[0], d)
    _check_matrix("xc_out", xc_out.shape[0], xc_out.shape[1], n, d)
    if xn_out is not None:
        _check_matrix("xn_out", xn_out.shape[0], xn_out.shape[1], n, d)
        xnp = &xn_out[0, 0]
    if out is not None:
        if gamma is None or beta is None:
            raise ValueError("bn_forward_train: out needs gamma and beta")
        _check_vector("gamma", gamma.shape[0], d)
        _check_vector("beta", beta.shape[0], d)
        _check_matrix("out", out.shape[0], out.shape[1], n, d)
        g = &gamma[0]
        bt = &beta[0]
        o = &out[0, 0]
    cdef Py_ssize_t m = n * d * sizeof(floating), v = d * sizeof(floating)
    cdef _Span spans[9]
    spans[0] = _span(&x[0, 0], m, False)
    spans[1] = _span(&mean_out[0], v, True)
    spans[2] = _span(&var_out[0], v, True)
    spans[3] = _span(&std_out[0], v, True)
    spans[4] = _span(&xc_out[0, 0], m, True)
    spans[5] = _span(xnp, m if xnp != NULL else 0, True)
    spans[6] = _span(g, v if g != NULL else 0, False)
    spans[7] = _span(bt, v if bt != NULL else 0, False)
    spans[8] = _span(o, m if o != NULL else 0, True)
    _check_disjoint(spans, 9)
    acc = <double *>malloc(d * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    w = _block_width(n, d, sizeof(floating))
    blocks = (d + w - 1) // w
    parts = max(1, min(n_threads, blocks))
    try:
        if parts == 1:
            with nogil:
                for b in range(blocks):
                    j1 = min(d, (b + 1) * w)
                    _fwd_train_block(&x[0, 0], &mean_out[0], &var_out[0], &std_out[0],
                                     &xc_out[0, 0], xnp, g, bt, o, acc, n, d, b * w, j1)
        else:
            for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
                lo = block_start(blocks, parts, t)
                hi = block_start(blocks, parts, t + 1)
                for b in range(lo, hi):
                    j1 = min(d, (b + 1) * w)
                    _fwd_train_block(&x[0, 0], &mean_out[0], &var_out[0], &std_out[0],
                                     &xc_out[0, 0], xnp, g, bt, o, acc, n, d, b * w, j1)
    finally:
        free(acc)


def bn_forward_infer(const floating[:, ::1] x not None,  # IN: (N, D)
                     const double[::1] running_mean not None,  # IN: (D,)
                     const double[::1] running_var not None,   # IN: (D,)
                     const double[::1] gamma not None,         # IN: (D,)
                     const double[::1] beta not None,          # IN: (D,)
                     double[:, ::1] out not None,              # OUT: (N, D)
                     int n_threads=1):
    """Inference forward with the running statistics (float64, as the book's are)."""
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1], w, blocks, parts, t, b, lo, hi, j, j1
    cdef double *rstd
    if n < 1 or d < 1:
        raise ValueError(f"bn_forward_infer: x has shape ({n}, {d}), need N, D >= 1")
    _check_vector("running_mean", running_mean.shape[0], d)
    _check_vector("running_var", running_var.shape[0], d)
    _check_vector("gamma", gamma.shape[0], d)
    _check_vector("beta", beta.shape[0], d)
    _check_matrix("out", out.shape[0], out.shape[1], n, d)
    cdef _Span spans[6]
    spans[0] = _span(&x[0, 0], n * d * sizeof(floating), False)
    spans[1] = _span(&running_mean[0], d * sizeof(double), False)
    spans[2] = _span(&running_var[0], d * sizeof(double), False)
    spans[3] = _span(&gamma[0], d * sizeof(double), False)
    spans[4] = _span(&beta[0], d * sizeof(double), False)
    spans[5] = _span(&out[0, 0], n * d * sizeof(double), True)
    _check_disjoint(spans, 6)
    rstd = <double *>malloc(d * sizeof(double))
    if rstd == NULL:
        raise MemoryError()
    for j in range(d):
        rstd[j] = sqrt(running_var[j] + 1e-6)
    w = _block_width(n, d, sizeof(double))
    blocks = (d + w - 1) // w
    parts = max(1, min(n_threads, blocks))
    try:
        if parts == 1:
            with nogil:
                _fwd_infer_block(&x[0, 0], &running_mean[0], rstd, &gamma[0], &beta[0],
                                 &out[0, 0], n, d, 0, d)
        else:
            for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
                lo = block_start(blocks, parts, t)
                hi = block_start(blocks, parts, t + 1)
                for b in range(lo, hi):
                    j1 = min(d, (b + 1) * w)
                    _fwd_infer_block(&x[0, 0], &running_mean[0], rstd, &gamma[0], &beta[0],
                                     &out[0, 0], n, d, b * w, j1)
    finally:
        free(rstd)


def bn_backward(const floating[:, ::1] dout not None,  # IN: (N, D)
                const floating[:, ::1] xn,             # IN: (N, D) cached xn, or None
                const floating[:, ::1] xc not None,    # IN: (N, D) cached by forward
                const floating[::1] std not None,      # IN: (D,) cached by forward
                const floating[::1] gamma not None,    # IN: (D,)
                Py_ssize_t batch_size,
                floating[:, ::1] dx_out not None,      # OUT: (N, D)
                floating[::1] dgamma_out not None,     # OUT: (D,)
                floating[::1] dbeta_out not None,      # OUT: (D,)
                int n_threads=1):
    """Backward with the cached statistics; ``batch_size`` is the book's ``self.batch_size``;
    ``xn=None`` recomputes it as ``xc / std``."""
    cdef Py_ssize_t n = dout.shape[0], d = dout.shape[1], w, blocks, parts, t, b, lo, hi, j1
    cdef double *acc
    cdef const floating *xnp = NULL
    # The book's Python scalars (2.0 / batch_size, and the divisor of dmu) meet arrays of
    # the compute dtype, so NumPy rounds them to that dtype first.
    cdef floating k2 = <floating>(2.0 / batch_size) if batch_size else 0
    cdef floating nb = <floating>batch_size
    if n < 1 or d < 1 or batch_size != n:
        raise ValueError(f"bn_backward: dout has shape ({n}, {d}) and batch_size is "
                         f"{batch_size}; need N, D >= 1 and batch_size == N")
    if xn is not None:
        _check_matrix("xn", xn.shape[0], xn.shape[1], n, d)
        xnp = &xn[0, 0]
    _check_matrix("xc", xc.shape[0], xc.shape[1], n, d)
    _check_matrix("dx_out", dx_out.shape[0], dx_out.shape[1], n, d)
    _check_vector("std", std.shape[0], d)
    _check_vector("gamma", gamma.shape[0], d)
    _check_vector("dgamma_out", dgamma_out.shape[0], d)
    _check_vector("dbeta_out", dbeta_out.shape[0], d)
    cdef Py_ssize_t m = n * d * sizeof(floating), v = d * sizeof(floating)
    cdef _Span spans[8]
    spans[0] = _span(&dout[0, 0], m, False)
    spans[1] = _span(xnp, m if xnp != NULL else 0, False)
    spans[2] = _span(&xc[0, 0], m, False)
    spans[3] = _span(&std[0], v, False)
    spans[4] = _span(&gamma[0], v, False)
    spans[5] = _span(&dx_out[0, 0], m, True)
    spans[6] = _span(&dgamma_out[0], v, True)
    spans[7] = _span(&dbeta_out[0], v, True)
    _check_disjoint(spans, 8)
    acc = <double *>malloc(3 * d * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    w = _block_width(n, d, sizeof(floating))
    blocks = (d + w - 1) // w
    parts = max(1, min(n_threads, blocks))
    try:
        if parts == 1:
            with nogil:
                for b in range(blocks):
                    j1 = min(d, (b + 1) * w)
                    _bwd_block(&dout[0, 0], xnp, &xc[0, 0], &std[0], &gamma[0], k2, nb,
                               &dx_out[0, 0], &dgamma_out[0], &dbeta_out[0], acc, n, d, b * w, j1)
        else:
            for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
                lo = block_start(blocks, parts, t)
                hi = block_start(blocks, parts, t + 1)
                for b in range(lo, hi):
                    j1 = min(d, (b + 1) * w)
                    _bwd_block(&dout[0, 0], xnp, &xc[0, 0], &std[0], &gamma[0], k2, nb,
                               &dx_out[0, 0], &dgamma_out[0], &dbeta_out[0], acc, n, d, b * w, j1)
    finally:
        free(acc)


def bn_running_update(const floating[::1] mean not None,        # IN: (D,) batch mean
                      const floating[::1] var not None,         # IN: (D,) batch variance
                      const double[::1] running_mean not None,  # IN: (D,)
                      const double[::1] running_var not None,   # IN: (D,)
                      double momentum, double one_minus,
                      double[::1] running_mean_out not None,    # OUT: (D,) new array
                      double[::1] running_var_out not None):    # OUT: (D,) new array
    """``momentum * running + (1 - momentum) * batch`` for both statistics, as the book's
    NumPy expression computes it: ``one_minus`` is the caller's ``1 - momentum`` (a Python
    float), which meets a float32 statistic in float32 (NumPy casts a Python float to the
    array's dtype) and is added to the float64 running value."""
    cdef Py_ssize_t d = mean.shape[0], j
    _check_vector("var", var.shape[0], d)
    _check_vector("running_mean", running_mean.shape[0], d)
    _check_vector("running_var", running_var.shape[0], d)
    _check_vector("running_mean_out", running_mean_out.shape[0], d)
    _check_vector("running_var_out", running_var_out.shape[0], d)
    with nogil:
        for j in range(d):
            running_mean_out[j] = momentum * running_mean[j] + \
                <double>(<floating>one_minus * mean[j])
            running_var_out[j] = momentum * running_var[j] + \
                <double>(<floating>one_minus * var[j])
