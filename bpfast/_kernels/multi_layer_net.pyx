"""Kernels of the fused MultiLayerNet(Extend) step (``bpfast._network.FusedGradient``).

A hidden block of ``MultiLayerNetExtend`` with Batch Normalization and the Relu activation is
``Affine -> BatchNorm -> Relu [-> Dropout]``.  Layer by layer, each layer writes its output
and each backward step its gradient: about ten passes over an ``(N, D)`` array per direction,
every one through memory.  Around the two matrix products (which stay NumPy's):

* ``hidden_forward``: bias add, BatchNorm's training forward, Relu and Dropout in one call
  of four passes over a block of columns, writing only what the layers keep (``xc``, the
  Relu and Dropout masks) and the block's output;
* ``hidden_backward``: Dropout's and Relu's backward, BatchNorm's backward and the Affine
  bias gradient ``db`` (the column sums of BatchNorm's ``dx``), in one call;
* ``weight_decay_grad``: the book's ``dW + weight_decay_lambda * W`` in one pass into a
  buffer (NumPy: two passes and two new arrays of the weight's size).

The numbers are the drop-in layers' bit for bit: the loops (``multi_layer_net.h``) are theirs
composed, in the same operations, order and dtype; the random numbers for Dropout are drawn
by the caller from NumPy's global stream, as the layer does.  Columns are independent, so
blocks of columns split over threads without changing any result.  Invariants (checked
before the loops): every ``(N, D)`` array has the same shape, every vector has length D,
N >= 1, no output overlaps another argument.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.stdlib cimport free, malloc

from bpfast._kernels._parallel cimport block_start


cdef extern from "multi_layer_net.h" nogil:
    void bp_mln_hidden_fwd_f64(const double *z, const double *b, const double *gamma,
                               const double *beta, const double *u, double ratio,
                               double *mean, double *var, double *std, double *xc, double *xn,
                               unsigned char *rmask, unsigned char *dmask, double *h,
                               double *acc, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept
    void bp_mln_hidden_fwd_f32(const float *z, const float *b, const float *gamma,
                               const float *beta, const double *u, double ratio,
                               float *mean, float *var, float *std, float *xc, float *xn,
                               unsigned char *rmask, unsigned char *dmask, float *h,
                               double *acc, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept
    void bp_mln_hidden_bwd_f64(const double *dh, const unsigned char *dmask,
                               const unsigned char *rmask, const double *xn, const double *xc,
                               const double *std, const double *gamma, double k2, double nb,
                               double *dx, double *dgamma, double *dbeta, double *db,
                               double *acc, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept
    void bp_mln_hidden_bwd_f32(const float *dh, const unsigned char *dmask,
                               const unsigned char *rmask, const float *xn, const float *xc,
                               const float *std, const float *gamma, float k2, float nb,
                               float *dx, float *dgamma, float *dbeta, float *db,
                               double *acc, Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept
    void bp_mln_decay_f64(const double *dW, const double *W, double lam, double *out,
                          Py_ssize_t n) noexcept
    void bp_mln_decay_f32(const float *dW, const float *W, float lam, float *out,
                          Py_ssize_t n) noexcept


cdef inline void _fwd(const floating *z, const floating *b, const floating *gamma,
                      const floating *beta, const double *u, double ratio, floating *mean,
                      floating *var, floating *std, floating *xc, floating *xn,
                      unsigned char *rmask, unsigned char *dmask, floating *h, double *acc,
                      Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if floating is float:
        bp_mln_hidden_fwd_f32(z, b, gamma, beta, u, ratio, mean, var, std, xc, xn, rmask,
                              dmask, h, acc, n, d, j0, j1)
    else:
        bp_mln_hidden_fwd_f64(z, b, gamma, beta, u, ratio, mean, var, std, xc, xn, rmask,
                              dmask, h, acc, n, d, j0, j1)


cdef inline void _bwd(const floating *dh, const unsigned char *dmask,
                      const unsigned char *rmask, const floating *xn, const floating *xc,
                      const floating *std,
                      const floating *gamma, floating k2, floating nb, floating *dx,
                      floating *dgamma, floating *dbeta, floating *db, double *acc,
                      Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if floating is float:
        bp_mln_hidden_bwd_f32(dh, dmask, rmask, xn, xc, std, gamma, k2, nb, dx, dgamma,
                              dbeta, db, acc, n, d, j0, j1)
    else:
        bp_mln_hidden_bwd_f64(dh, dmask, rmask, xn, xc, std, gamma, k2, nb, dx, dgamma,
                              dbeta, db, acc, n, d, j0, j1)


cdef inline void _decay(const floating *dW, const floating *W, floating lam, floating *out,
                        Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_mln_decay_f32(dW, W, lam, out, n)
    else:
        bp_mln_decay_f64(dW, W, lam, out, n)


cdef struct _Span:
    const char *lo
    const char *hi
    bint out


cdef inline _Span _span(const void *p, Py_ssize_t nbytes, bint out) noexcept:
    cdef _Span s
    s.lo = <const char *>p
    s.hi = <const char *>p + (nbytes if p != NULL else 0)
    s.out = out
    return s


cdef int _check_disjoint(str kernel, _Span *spans, int k) except -1:
    # The C loops take `restrict` pointers: an output overlapping another array would give
    # wrong numbers silently.  (Empty spans are skipped.)
    cdef int a, b
    for a in range(k):
        for b in range(a + 1, k):
            if (spans[a].out or spans[b].out) and spans[a].lo < spans[a].hi \
                    and spans[b].lo < spans[b].hi \
                    and spans[a].lo < spans[b].hi and spans[b].lo < spans[a].hi:
                raise ValueError(f"{kernel}: an output array overlaps another argument")
    return 0


cdef int _check_matrix(str name, Py_ssize_t r, Py_ssize_t c, Py_ssize_t n,
                       Py_ssize_t d) except -1:
    if r != n or c != d:
        raise ValueError(f"{name} has shape ({r}, {c}), expected ({n}, {d})")
    return 0


cdef int _check_vector(str name, Py_ssize_t length, Py_ssize_t d) except -1:
    if length != d:
        raise ValueError(f"{name} has length {length}, expected {d}")
    return 0


def hidden_forward(const floating[:, ::1] z not None,      # IN: (N, D) x @ W
                   const floating[::1] b not None,         # IN: (D,) Affine bias
                   const floating[::1] gamma not None,     # IN: (D,)
                   const floating[::1] beta not None,      # IN: (D,)
                   const double[:, ::1] u,                 # IN: (N, D) uniform draws, or None
                   double ratio,                           # Dropout ratio (unused without u)
                   floating[::1] mean_out not None,        # OUT: (D,)
                   floating[::1] var_out not None,         # OUT: (D,)
                   floating[::1] std_out not None,         # OUT: (D,)
                   floating[:, ::1] xc_out not None,       # OUT: (N, D) x - mean
                   floating[:, ::1] xn_out not None,       # OUT: (N, D) xc / std
                   unsigned char[:, ::1] rmask_out not None,  # OUT: (N, D) Relu mask
                   unsigned char[:, ::1] dmask_out,        # OUT: (N, D) Dropout mask, or None
                   floating[:, ::1] h_out not None,        # OUT: (N, D) block output
                   int n_threads=1):
    """``h = dropout(relu(batchnorm(z + b)))`` with the layers' caches; ``u=None``: no
    Dropout (``dmask_out`` must then be None too)."""
    cdef Py_ssize_t n = z.shape[0], d = z.shape[1], parts, t, lo, hi
    cdef const double *up = NULL
    cdef unsigned char *dm = NULL
    cdef double *acc
    if n < 1 or d < 1:
        raise ValueError(f"hidden_forward: z has shape ({n}, {d}), need N, D >= 1")
    _check_vector("b", b.shape[0], d)
    _check_vector("gamma", gamma.shape[0], d)
    _check_vector("beta", beta.shape[0], d)
    _check_vector("mean_out", mean_out.shape[0], d)
    _check_vector("var_out", var_out.shape[0], d)
    _check_vector("std_out", std_out.shape[0], d)
    _check_matrix("xc_out", xc_out.shape[0], xc_out.shape[1], n, d)
    _check_matrix("xn_out", xn_out.shape[0], xn_out.shape[1], n, d)
    _check_matrix("rmask_out", rmask_out.shape[0], rmask_out.shape[1], n, d)
    _check_matrix("h_out", h_out.shape[0], h_out.shape[1], n, d)
    if (u is None) != (dmask_out is None):
        raise ValueError("hidden_forward: u and dmask_out must both be given or both be None")
    if u is not None:
        _check_matrix("u", u.shape[0], u.shape[1], n, d)
        _check_matrix("dmask_out", dmask_out.shape[0], dmask_out.shape[1], n, d)
        up = &u[0, 0]
        dm = &dmask_out[0, 0]
    cdef Py_ssize_t m = n * d * sizeof(floating), v = d * sizeof(floating)
    cdef _Span spans[13]
    spans[12] = _span(&xn_out[0, 0], m, True)
    spans[0] = _span(&z[0, 0], m, False)
    spans[1] = _span(&b[0], v, False)
    spans[2] = _span(&gamma[0], v, False)
    spans[3] = _span(&beta[0], v, False)
    spans[4] = _span(up, n * d * sizeof(double), False)
    spans[5] = _span(&mean_out[0], v, True)
    spans[6] = _span(&var_out[0], v, True)
    spans[7] = _span(&std_out[0], v, True)
    spans[8] = _span(&xc_out[0, 0], m, True)
    spans[9] = _span(&rmask_out[0, 0], n * d, True)
    spans[10] = _span(dm, n * d, True)
    spans[11] = _span(&h_out[0, 0], m, True)
    _check_disjoint("hidden_forward", spans, 13)
    acc = <double *>malloc(d * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    parts = max(1, min(n_threads, d // 8))
    try:
        if parts == 1:
            with nogil:
                _fwd(&z[0, 0], &b[0], &gamma[0], &beta[0], up, ratio, &mean_out[0],
                     &var_out[0], &std_out[0], &xc_out[0, 0], &xn_out[0, 0],
                     &rmask_out[0, 0], dm,
                     &h_out[0, 0], acc, n, d, 0, d)
        else:
            for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
                lo = block_start(d, parts, t)
                hi = block_start(d, parts, t + 1)
                _fwd(&z[0, 0], &b[0], &gamma[0], &beta[0], up, ratio, &mean_out[0],
                     &var_out[0], &std_out[0], &xc_out[0, 0], &xn_out[0, 0],
                     &rmask_out[0, 0], dm,
                     &h_out[0, 0], acc, n, d, lo, hi)
    finally:
        free(acc)


def hidden_backward(const floating[:, ::1] dh not None,   # IN: (N, D) gradient of h
                    const unsigned char[:, ::1] dmask,    # IN: (N, D) Dropout mask, or None
                    const unsigned char[:, ::1] rmask not None,  # IN: (N, D) Relu mask
                    const floating[:, ::1] xn not None,   # IN: (N, D) BatchNorm's cache
                    const floating[:, ::1] xc not None,   # IN: (N, D) BatchNorm's cache
                    const floating[::1] std not None,     # IN: (D,) BatchNorm's cache
                    const floating[::1] gamma not None,   # IN: (D,)
                    floating[:, ::1] dx_out not None,     # OUT: (N, D) gradient of z
                    floating[::1] dgamma_out not None,    # OUT: (D,)
                    floating[::1] dbeta_out not None,     # OUT: (D,)
                    floating[::1] db_out not None,        # OUT: (D,) Affine's db
                    int n_threads=1):
    """Dropout, Relu and BatchNorm backward, and the Affine bias gradient, of one block."""
    cdef Py_ssize_t n = dh.shape[0], d = dh.shape[1], parts, t, lo, hi
    cdef const unsigned char *dm = NULL
    cdef double *acc
    # As in BatchNormalization.backward: the book's Python scalars meet arrays of the
    # compute dtype and are rounded to it (batch_size == N here).
    cdef floating k2 = <floating>(2.0 / n) if n else 0
    cdef floating nb = <floating>n
    if n < 1 or d < 1:
        raise ValueError(f"hidden_backward: dh has shape ({n}, {d}), need N, D >= 1")
    if dmask is not None:
        _check_matrix("dmask", dmask.shape[0], dmask.shape[1], n, d)
        dm = &dmask[0, 0]
    _check_matrix("rmask", rmask.shape[0], rmask.shape[1], n, d)
    _check_matrix("xn", xn.shape[0], xn.shape[1], n, d)
    _check_matrix("xc", xc.shape[0], xc.shape[1], n, d)
    _check_matrix("dx_out", dx_out.shape[0], dx_out.shape[1], n, d)
    _check_vector("std", std.shape[0], d)
    _check_vector("gamma", gamma.shape[0], d)
    _check_vector("dgamma_out", dgamma_out.shape[0], d)
    _check_vector("dbeta_out", dbeta_out.shape[0], d)
    _check_vector("db_out", db_out.shape[0], d)
    cdef Py_ssize_t m = n * d * sizeof(floating), v = d * sizeof(floating)
    cdef _Span spans[11]
    spans[10] = _span(&xn[0, 0], m, False)
    spans[0] = _span(&dh[0, 0], m, False)
    spans[1] = _span(dm, n * d, False)
    spans[2] = _span(&rmask[0, 0], n * d, False)
    spans[3] = _span(&xc[0, 0], m, False)
    spans[4] = _span(&std[0], v, False)
    spans[5] = _span(&gamma[0], v, False)
    spans[6] = _span(&dx_out[0, 0], m, True)
    spans[7] = _span(&dgamma_out[0], v, True)
    spans[8] = _span(&dbeta_out[0], v, True)
    spans[9] = _span(&db_out[0], v, True)
    _check_disjoint("hidden_backward", spans, 11)
    acc = <double *>malloc(4 * d * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    parts = max(1, min(n_threads, d // 8))
    try:
        if parts == 1:
            with nogil:
                _bwd(&dh[0, 0], dm, &rmask[0, 0], &xn[0, 0], &xc[0, 0], &std[0], &gamma[0], k2,
                     nb,
                     &dx_out[0, 0], &dgamma_out[0], &dbeta_out[0], &db_out[0], acc, n, d,
                     0, d)
        else:
            for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
                lo = block_start(d, parts, t)
                hi = block_start(d, parts, t + 1)
                _bwd(&dh[0, 0], dm, &rmask[0, 0], &xn[0, 0], &xc[0, 0], &std[0], &gamma[0], k2,
                     nb,
                     &dx_out[0, 0], &dgamma_out[0], &dbeta_out[0], &db_out[0], acc, n, d,
                     lo, hi)
    finally:
        free(acc)


def weight_decay_grad(const floating[::1] dW not None,   # IN
                      const floating[::1] W not None,    # IN
                      double lam,                        # rounded to the dtype, as NumPy does
                      floating[::1] out not None,        # OUT: dW + lam * W
                      int n_threads=1):
    cdef Py_ssize_t n = dW.shape[0], parts = max(n_threads, 1), p, lo, hi
    cdef floating lam_t = <floating>lam
    if W.shape[0] != n or out.shape[0] != n:
        raise ValueError(f"weight_decay_grad: lengths differ: dW {n}, W {W.shape[0]}, "
                         f"out {out.shape[0]}")
    if n == 0:
        return
    cdef _Span spans[3]
    spans[0] = _span(&dW[0], n * sizeof(floating), False)
    spans[1] = _span(&W[0], n * sizeof(floating), False)
    spans[2] = _span(&out[0], n * sizeof(floating), True)
    _check_disjoint("weight_decay_grad", spans, 3)
    if parts == 1:
        with nogil:
            _decay(&dW[0], &W[0], lam_t, &out[0], n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        _decay(&dW[lo], &W[lo], lam_t, &out[lo], hi - lo)

