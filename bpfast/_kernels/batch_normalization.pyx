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

Columns are independent, so blocks of columns are split over threads: race-free, and the
result does not depend on the thread count.  Invariants (checked before the loops): every
``(N, D)`` array has the same shape, every vector has length D, N >= 1.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport sqrt, sqrtf
from libc.stdlib cimport free, malloc

from bpfast._kernels._parallel cimport block_start

# Bytes of one (N, block) slice of an array.  Blocks of columns are the unit of work of a
# thread; within a block every pass streams whole row segments.  Narrow blocks (so that a
# slice stays in L2 between passes) measured *slower* here than segments of ~8 KiB: with
# many short streams the hardware prefetchers fall behind, and the kernels are memory bound.
cdef Py_ssize_t _BLOCK_BYTES = 1 << 20


cdef inline floating _sqrt(floating v) noexcept nogil:
    if floating is float:
        return sqrtf(v)
    else:
        return sqrt(v)


cdef Py_ssize_t _block_width(Py_ssize_t n, Py_ssize_t d, Py_ssize_t itemsize) noexcept nogil:
    cdef Py_ssize_t w = _BLOCK_BYTES // (n * itemsize)
    w -= w % 8
    if w < 8:
        w = 8
    return w if w < d else d


cdef void _fwd_train_block(const floating *x, floating *mean, floating *var, floating *std,
                           floating *xc, floating *xn, const floating *gamma,
                           const floating *beta, floating *out, double *acc, Py_ssize_t n,
                           Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating v, sd, eps = <floating>1e-6
    # Pass 1: column means.
    for j in range(j0, j1):
        acc[j] = 0.0
    for i in range(n):
        for j in range(j0, j1):
            acc[j] += x[i * d + j]
    for j in range(j0, j1):
        mean[j] = <floating>(acc[j] / n)
    # Pass 2: centred values and the biased variance (the mean of xc**2).
    for j in range(j0, j1):
        acc[j] = 0.0
    for i in range(n):
        for j in range(j0, j1):
            v = x[i * d + j] - mean[j]
            xc[i * d + j] = v
            acc[j] += v * v
    for j in range(j0, j1):
        var[j] = <floating>(acc[j] / n)
        std[j] = _sqrt(<floating>(var[j] + eps))
    # Pass 3: normalised values, then scale and shift (two roundings, as in the book).
    # xn is optional: the layer can leave it to be computed on demand (xc / std again).
    if xn != NULL and out != NULL:
        for i in range(n):
            for j in range(j0, j1):
                v = xc[i * d + j] / std[j]
                xn[i * d + j] = v
                out[i * d + j] = gamma[j] * v + beta[j]
    elif out != NULL:
        for i in range(n):
            for j in range(j0, j1):
                out[i * d + j] = gamma[j] * (xc[i * d + j] / std[j]) + beta[j]
    elif xn != NULL:
        for i in range(n):
            for j in range(j0, j1):
                xn[i * d + j] = xc[i * d + j] / std[j]


cdef void _fwd_infer_block(const floating *x, const double *rmean, const double *rstd,
                           const double *gamma, const double *beta, double *out, Py_ssize_t n,
                           Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(j0, j1):
            out[i * d + j] = gamma[j] * ((<double>x[i * d + j] - rmean[j]) / rstd[j]) + beta[j]


cdef void _bwd_block(const floating *dout, const floating *xn, const floating *xc,
                     const floating *std, const floating *gamma, floating k2, floating nb,
                     floating *dx, floating *dgamma, floating *dbeta, double *acc,
                     Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    # acc holds three sums per column: acc[j], acc[d + j], acc[2d + j].
    cdef Py_ssize_t i, j
    cdef floating dv, t, dxn
    cdef double *s_beta = acc
    cdef double *s_gamma = acc + d
    cdef double *s_std = acc + 2 * d
    # Pass 1: dbeta = sum(dout), dgamma = sum(xn * dout), sum((dxn * xc) / (std * std)).
    # Without a cached xn it is recomputed as xc / std: the forward's very operation, so the
    # same value -- a division instead of reading a third (N, D) array.
    for j in range(j0, j1):
        s_beta[j] = 0.0
        s_gamma[j] = 0.0
        s_std[j] = 0.0
    if xn != NULL:
        for i in range(n):
            for j in range(j0, j1):
                t = dout[i * d + j]
                dxn = gamma[j] * t
                s_beta[j] += t
                s_gamma[j] += xn[i * d + j] * t
                s_std[j] += (dxn * xc[i * d + j]) / (std[j] * std[j])
    else:
        for i in range(n):
            for j in range(j0, j1):
                t = dout[i * d + j]
                dxn = gamma[j] * t
                s_beta[j] += t
                s_gamma[j] += (xc[i * d + j] / std[j]) * t
                s_std[j] += (dxn * xc[i * d + j]) / (std[j] * std[j])
    for j in range(j0, j1):
        dbeta[j] = <floating>s_beta[j]
        dgamma[j] = <floating>s_gamma[j]
        # dvar = 0.5 * dstd / std with dstd = -sum(...); reuse s_std for dvar.
        dv = <floating>(0.5) * (-<floating>s_std[j]) / std[j]
        s_std[j] = dv
    # Pass 2: dxc = dxn / std + (2/N) * xc * dvar, and dmu = sum(dxc) in s_beta.
    for j in range(j0, j1):
        s_beta[j] = 0.0
    for i in range(n):
        for j in range(j0, j1):
            t = (gamma[j] * dout[i * d + j]) / std[j] + (k2 * xc[i * d + j]) * <floating>s_std[j]
            dx[i * d + j] = t
            s_beta[j] += t
    # Pass 3: dx = dxc - dmu / N.
    for j in range(j0, j1):
        s_gamma[j] = <floating>(<floating>s_beta[j] / nb)
    for i in range(n):
        for j in range(j0, j1):
            dx[i * d + j] = dx[i * d + j] - <floating>s_gamma[j]


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
                     *, int n_threads=1):
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
                     *, int n_threads=1):
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
                *, int n_threads=1):
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
