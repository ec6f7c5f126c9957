"""Fused kernels of the network-level training step (``bpfast.TwoLayerNet``; book 5.7).

The book's ``TwoLayerNet.gradient`` runs Affine -> Relu -> Affine -> SoftmaxWithLoss forward
and backward layer by layer, each operation a separate NumPy pass with its own temporary.
``bpfast.TwoLayerNet`` keeps the four matrix products in NumPy (``np.dot`` with ``out=``,
into buffers it owns) and does everything between them here, one pass each:

* ``bias_relu_forward``: ``h = relu(a + b1)`` in place on the GEMM output, with the Relu mask;
* ``bias_softmax_xent``: ``s += b2``, row softmax, cross-entropy; ``bias_softmax_xent_grad``
  also the gradient ``dy = (y - onehot(t)) / N``, its column sum ``db2`` and on request the
  SGD update of ``b2`` (``*_onehot*`` for one-hot targets);
* ``relu_backward_colsum``: ``dh[mask] = 0``, its column sum ``db1``, and on request the SGD
  update of ``b1``;
* ``sgd_weights``: the SGD step of both weight matrices in one call (``W -= lr * dW``), the
  loops of ``optimizers.h``, so bit-identical to ``bpfast.optimizers.SGD``.

Numerics are those of the drop-in layers (``relu.pyx``, ``affine.pyx``,
``softmax_with_loss.pyx``): the bias add and Relu are the book's operations bit for bit;
softmax uses the vector exp of ``simd.h`` (< 2 ulp); column sums accumulate in double, row
by row in order, so for float64 they equal NumPy's ``sum(axis=0)`` bit for bit; the SGD
update is ``b -= lr * db`` with ``lr`` rounded to b's precision, as NumPy does.

Threads: rows are split in contiguous blocks for the row-wise work, columns for the column
sums, so every sum is taken in the same order whatever the thread count.  Labels are checked
with the GIL before any nogil loop indexes with them.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.stdlib cimport malloc, free

from bpfast._kernels._parallel cimport block_start
from bpfast._kernels._simd cimport bp_softmax_rows_f32, bp_softmax_rows_f64
from bpfast._kernels._xent cimport argmax_row, label_t, log_picked, target_t

cdef extern from "optimizers.h" nogil:
    void bp_sgd_f64(double *p, const double *g, double lr, Py_ssize_t n) noexcept
    void bp_sgd_f32(float *p, const float *g, float lr, Py_ssize_t n) noexcept

cdef extern from "two_layer_net.h" nogil:
    void bp_bias_relu_f64(double *a, const double *b, unsigned char *mask, Py_ssize_t rows,
                          Py_ssize_t m) noexcept
    void bp_bias_relu_f32(float *a, const float *b, unsigned char *mask, Py_ssize_t rows,
                          Py_ssize_t m) noexcept
    void bp_relu_bwd_colsum_f64(double *dh, const unsigned char *mask, double *acc,
                                Py_ssize_t n, Py_ssize_t m, Py_ssize_t lo,
                                Py_ssize_t hi) noexcept
    void bp_relu_bwd_colsum_f32(float *dh, const unsigned char *mask, double *acc,
                                Py_ssize_t n, Py_ssize_t m, Py_ssize_t lo,
                                Py_ssize_t hi) noexcept



# ------------------------------------------------------------------------------ primitives

cdef inline void _bias_relu_rows(floating *a, const floating *b, unsigned char *mask,
                                 Py_ssize_t rows, Py_ssize_t m) noexcept nogil:
    # a = a + b; mask = a <= 0; a[mask] = +0.0 (NaN passes, -0.0 becomes +0.0): two_layer_net.h
    if floating is float:
        bp_bias_relu_f32(a, b, mask, rows, m)
    else:
        bp_bias_relu_f64(a, b, mask, rows, m)


cdef inline void _bias_softmax_rows(floating *s, const floating *b, floating *y,
                                    Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t i, j
    if hi <= lo:
        return
    for i in range(lo, hi):
        for j in range(c):
            s[i * c + j] += b[j]
    if floating is float:
        bp_softmax_rows_f32(s + lo * c, y + lo * c, hi - lo, c)
    else:
        bp_softmax_rows_f64(s + lo * c, y + lo * c, hi - lo, c)




cdef void _xent_label_rows(floating *s, const floating *b, const label_t *t, floating *y,
                           floating *dy, double *row_loss, Py_ssize_t lo, Py_ssize_t hi,
                           Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t i, j, k
    cdef floating scale = <floating>n
    _bias_softmax_rows(s, b, y, lo, hi, c)
    for i in range(lo, hi):
        k = <Py_ssize_t>t[i]
        row_loss[i] = log_picked(y[i * c + k])
        if dy != NULL:
            # The book: copy y, subtract 1 at the label, divide by the batch size.
            for j in range(c):
                dy[i * c + j] = y[i * c + j] / scale
            dy[i * c + k] = (y[i * c + k] - 1) / scale


cdef void _xent_onehot_rows(floating *s, const floating *b, const target_t *t, floating *y,
                            floating *dy, double *row_loss, Py_ssize_t lo, Py_ssize_t hi,
                            Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating scale = <floating>n
    _bias_softmax_rows(s, b, y, lo, hi, c)
    for i in range(lo, hi):
        row_loss[i] = log_picked(y[i * c + argmax_row(t + i * c, c)])
        if dy != NULL:
            # The book: (y - t) / batch_size, soft targets used as they are.
            for j in range(c):
                dy[i * c + j] = (y[i * c + j] - <floating>t[i * c + j]) / scale


cdef void _colsum_sgd(const floating *x, Py_ssize_t n, Py_ssize_t m, floating *db,
                      floating *b, floating lr, double *acc) noexcept nogil:
    # db = x.sum(axis=0), rows added in order in double (NumPy's order for float64);
    # then, if b is given, the SGD step b -= lr * db.
    cdef Py_ssize_t i, j
    for j in range(m):
        acc[j] = x[j]
    for i in range(1, n):
        for j in range(m):
            acc[j] += x[i * m + j]
    for j in range(m):
        db[j] = <floating>acc[j]
    if b != NULL:
        for j in range(m):
            b[j] = b[j] - lr * db[j]


cdef void _relu_bwd_colsum_block(floating *dh, const unsigned char *mask, Py_ssize_t n,
                                 Py_ssize_t m, Py_ssize_t lo, Py_ssize_t hi, floating *db,
                                 floating *b, floating lr, double *acc) noexcept nogil:
    # Columns lo..hi-1: dh[mask] = 0 in place (as the book's Relu.backward does to its dout),
    # db = column sums of the result, rows in order (two_layer_net.h); then the optional SGD
    # step on b, here in Cython for baseline x86-64 (no FMA contraction of b - lr * db).
    cdef Py_ssize_t j
    if floating is float:
        bp_relu_bwd_colsum_f32(dh, mask, acc, n, m, lo, hi)
    else:
        bp_relu_bwd_colsum_f64(dh, mask, acc, n, m, lo, hi)
    for j in range(lo, hi):
        db[j] = <floating>acc[j]
    if b != NULL:
        for j in range(lo, hi):
            b[j] = b[j] - lr * db[j]


# ------------------------------------------------------------------------------ checks

cdef int _check_labels(const label_t[::1] t, Py_ssize_t c) except -1:
    cdef Py_ssize_t i
    for i in range(t.shape[0]):
        if t[i] < 0 or <Py_ssize_t>t[i] >= c:
            raise IndexError(f"label {t[i]} at row {i} is out of range for {c} classes")
    return 0


cdef int _check_step(Py_ssize_t n, Py_ssize_t c, Py_ssize_t bn, Py_ssize_t tn, Py_ssize_t tc,
                     Py_ssize_t yn, Py_ssize_t yc) except -1:
    # tc < 0: labels (no column count to check).
    if n == 0 or c == 0:
        raise ValueError(f"logits of shape ({n}, {c}) are empty")
    if bn != c:
        raise ValueError(f"bias of length {bn} does not fit logits of shape ({n}, {c})")
    if tn != n or (tc >= 0 and tc != c):
        raise ValueError(f"targets of {tn} rows" + (f" x {tc} columns" if tc >= 0 else "")
                         + f" do not fit logits of shape ({n}, {c})")
    if yn != n or yc != c:
        raise ValueError(f"an output of shape ({yn}, {yc}) does not fit logits ({n}, {c})")
    return 0


cdef int _check_grad(Py_ssize_t n, Py_ssize_t c, Py_ssize_t dyn, Py_ssize_t dyc,
                     Py_ssize_t dbn, Py_ssize_t bsn) except -1:
    # bsn < 0: no SGD step.
    if dyn != n or dyc != c:
        raise ValueError(f"dy_out of shape ({dyn}, {dyc}) does not fit logits ({n}, {c})")
    if dbn != c or (bsn >= 0 and bsn != c):
        raise ValueError(f"db_out ({dbn},) / b_sgd ({bsn},) do not fit {c} classes")
    return 0


cdef double _mean_loss(const double *row_loss, Py_ssize_t n) noexcept nogil:
    # Row order, in double: the same sum whatever the number of threads.
    cdef Py_ssize_t i
    cdef double s = 0.0
    for i in range(n):
        s += row_loss[i]
    return -s / n


cdef double _xent_labels(floating[:, ::1] s, const floating[::1] b, const label_t[::1] t,
                         floating[:, ::1] y, floating *dy, floating *db, floating *b_sgd,
                         floating lr, double *work, int parts) noexcept nogil:
    # Forward for every row (and dy when dy != NULL), then the loss, db and the SGD step.
    # work: n + c doubles (per-row losses, column accumulators).
    cdef Py_ssize_t n = s.shape[0], c = s.shape[1], p
    if parts == 1:
        _xent_label_rows(&s[0, 0], &b[0], &t[0], &y[0, 0], dy, work, 0, n, n, c)
    else:
        for p in prange(parts, schedule="static", num_threads=parts):
            _xent_label_rows(&s[0, 0], &b[0], &t[0], &y[0, 0], dy, work,
                             block_start(n, parts, p), block_start(n, parts, p + 1), n, c)
    if dy != NULL:
        _colsum_sgd(dy, n, c, db, b_sgd, lr, work + n)
    return _mean_loss(work, n)


cdef double _xent_onehot(floating[:, ::1] s, const floating[::1] b, const target_t[:, ::1] t,
                         floating[:, ::1] y, floating *dy, floating *db, floating *b_sgd,
                         floating lr, double *work, int parts) noexcept nogil:
    cdef Py_ssize_t n = s.shape[0], c = s.shape[1], p
    if parts == 1:
        _xent_onehot_rows(&s[0, 0], &b[0], &t[0, 0], &y[0, 0], dy, work, 0, n, n, c)
    else:
        for p in prange(parts, schedule="static", num_threads=parts):
            _xent_onehot_rows(&s[0, 0], &b[0], &t[0, 0], &y[0, 0], dy, work,
                              block_start(n, parts, p), block_start(n, parts, p + 1), n, c)
    if dy != NULL:
        _colsum_sgd(dy, n, c, db, b_sgd, lr, work + n)
    return _mean_loss(work, n)


# ------------------------------------------------------------------------------ def kernels

def bias_relu_forward(floating[:, ::1] a not None,              # IN/OUT: (N, H) a -> relu(a + b)
                      const floating[::1] b not None,           # IN: (H,)
                      unsigned char[:, ::1] mask_out not None,  # OUT: (N, H) 1 where a + b <= 0
                      int n_threads=1):
    """``a = relu(a + b)`` in place; ``mask_out = (a + b <= 0)``."""
    cdef Py_ssize_t n = a.shape[0], m = a.shape[1], parts = max(n_threads, 1), p, lo, hi
    if b.shape[0] != m or mask_out.shape[0] != n or mask_out.shape[1] != m:
        raise ValueError(f"bias_relu_forward: a ({n}, {m}), b ({b.shape[0]},), mask_out "
                         f"({mask_out.shape[0]}, {mask_out.shape[1]}) do not fit")
    if n == 0 or m == 0:
        return
    if parts == 1:
        # Not through prange: even a one-thread OpenMP region costs ~1.5 us per call here.
        with nogil:
            _bias_relu_rows(&a[0, 0], &b[0], &mask_out[0, 0], n, m)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        if hi > lo:
            _bias_relu_rows(&a[lo, 0], &b[0], &mask_out[lo, 0], hi - lo, m)


def bias_softmax_xent(floating[:, ::1] s not None,      # IN/OUT: (N, C) logits; b added in place
                      const floating[::1] b not None,   # IN: (C,) bias
                      const label_t[::1] t not None,    # IN: (N,) labels
                      floating[:, ::1] y_out not None,  # OUT: (N, C) softmax
                      int n_threads=1):
    """Bias add, softmax and mean cross-entropy (returned as a double): the loss only."""
    _check_step(s.shape[0], s.shape[1], b.shape[0], t.shape[0], -1, y_out.shape[0],
                y_out.shape[1])
    _check_labels(t, s.shape[1])
    cdef double loss
    cdef double *work = <double *>malloc((s.shape[0] + s.shape[1]) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    with nogil:
        loss = _xent_labels(s, b, t, y_out, NULL, NULL, NULL, 0, work, max(n_threads, 1))
    free(work)
    return loss


def bias_softmax_xent_grad(floating[:, ::1] s not None,       # IN/OUT: (N, C); b added in place
                           const floating[::1] b not None,    # IN: (C,)
                           const label_t[::1] t not None,     # IN: (N,) labels
                           floating[:, ::1] y_out not None,   # OUT: (N, C) softmax
                           floating[:, ::1] dy_out not None,  # OUT: (N, C) (y - onehot(t)) / N
                           floating[::1] db_out not None,     # OUT: (C,) dy_out.sum(axis=0)
                           floating[::1] b_sgd=None, double lr=0.0, int n_threads=1):
    """``bias_softmax_xent`` plus the gradients of the logits and the bias.

    With ``b_sgd`` (normally ``b`` itself) also the SGD step ``b_sgd -= lr * db_out``, after
    ``s`` used the bias.  Returns the mean loss.
    """
    cdef Py_ssize_t n = s.shape[0], c = s.shape[1]
    _check_step(n, c, b.shape[0], t.shape[0], -1, y_out.shape[0], y_out.shape[1])
    _check_grad(n, c, dy_out.shape[0], dy_out.shape[1], db_out.shape[0],
                b_sgd.shape[0] if b_sgd is not None else -1)
    _check_labels(t, c)
    cdef floating *bs = &b_sgd[0] if b_sgd is not None else NULL
    cdef double loss
    cdef double *work = <double *>malloc((n + c) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    with nogil:
        loss = _xent_labels(s, b, t, y_out, &dy_out[0, 0], &db_out[0], bs, <floating>lr, work,
                            max(n_threads, 1))
    free(work)
    return loss


def bias_softmax_xent_onehot(floating[:, ::1] s not None,        # IN/OUT: (N, C)
                             const floating[::1] b not None,     # IN: (C,)
                             const target_t[:, ::1] t not None,  # IN: (N, C) one-hot
                             floating[:, ::1] y_out not None,    # OUT: (N, C)
                             int n_threads=1):
    """As ``bias_softmax_xent``, the label of a row being the argmax of ``t`` (the book's rule)."""
    _check_step(s.shape[0], s.shape[1], b.shape[0], t.shape[0], t.shape[1], y_out.shape[0],
                y_out.shape[1])
    cdef double loss
    cdef double *work = <double *>malloc((s.shape[0] + s.shape[1]) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    with nogil:
        loss = _xent_onehot(s, b, t, y_out, NULL, NULL, NULL, 0, work, max(n_threads, 1))
    free(work)
    return loss


def bias_softmax_xent_onehot_grad(floating[:, ::1] s not None,        # IN/OUT: (N, C)
                                  const floating[::1] b not None,     # IN: (C,)
                                  const target_t[:, ::1] t not None,  # IN: (N, C) one-hot
                                  floating[:, ::1] y_out not None,    # OUT: (N, C)
                                  floating[:, ::1] dy_out not None,   # OUT: (N, C) (y - t) / N
                                  floating[::1] db_out not None,      # OUT: (C,)
                                  floating[::1] b_sgd=None, double lr=0.0, int n_threads=1):
    """As ``bias_softmax_xent_grad`` for one-hot (or soft) targets: ``dy = (y - t) / N``."""
    cdef Py_ssize_t n = s.shape[0], c = s.shape[1]
    _check_step(n, c, b.shape[0], t.shape[0], t.shape[1], y_out.shape[0], y_out.shape[1])
    _check_grad(n, c, dy_out.shape[0], dy_out.shape[1], db_out.shape[0],
                b_sgd.shape[0] if b_sgd is not None else -1)
    cdef floating *bs = &b_sgd[0] if b_sgd is not None else NULL
    cdef double loss
    cdef double *work = <double *>malloc((n + c) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    with nogil:
        loss = _xent_onehot(s, b, t, y_out, &dy_out[0, 0], &db_out[0], bs, <floating>lr, work,
                            max(n_threads, 1))
    free(work)
    return loss


def relu_backward_colsum(floating[:, ::1] dh not None,              # IN/OUT: (N, H)
                         const unsigned char[:, ::1] mask not None,  # IN: (N, H)
                         floating[::1] db_out not None,              # OUT: (H,)
                         floating[::1] b_sgd=None, double lr=0.0, int n_threads=1):
    """``dh[mask] = 0`` in place; ``db_out = dh.sum(axis=0)``; optionally ``b_sgd -= lr * db_out``."""
    cdef Py_ssize_t n = dh.shape[0], m = dh.shape[1], parts = max(n_threads, 1), p, lo, hi
    cdef floating *b = NULL
    cdef floating lr_ = <floating>lr
    cdef double *acc
    if mask.shape[0] != n or mask.shape[1] != m or db_out.shape[0] != m:
        raise ValueError(f"relu_backward_colsum: dh ({n}, {m}), mask ({mask.shape[0]}, "
                         f"{mask.shape[1]}), db_out ({db_out.shape[0]},) do not fit")
    if b_sgd is not None:
        if b_sgd.shape[0] != m:
            raise ValueError(f"relu_backward_colsum: b_sgd has length {b_sgd.shape[0]}, not {m}")
        if m:
            b = &b_sgd[0]
    if m == 0:
        return
    if n == 0:
        # NumPy's sum over an empty axis is 0; the SGD step then leaves b unchanged.
        db_out[:] = 0
        return
    acc = <double *>malloc(m * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    if parts == 1:
        with nogil:
            _relu_bwd_colsum_block(&dh[0, 0], &mask[0, 0], n, m, 0, m, &db_out[0], b, lr_, acc)
    else:
        for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
            lo = block_start(m, parts, p)
            hi = block_start(m, parts, p + 1)
            if hi > lo:
                _relu_bwd_colsum_block(&dh[0, 0], &mask[0, 0], n, m, lo, hi, &db_out[0], b,
                                       lr_, acc)
    free(acc)


cdef inline void _sgd(floating *p, const floating *g, floating lr, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_sgd_f32(p, g, lr, n)
    else:
        bp_sgd_f64(p, g, lr, n)


def sgd_weights(floating[:, ::1] W1 not None,         # IN/OUT: (D, H)
                const floating[:, ::1] dW1 not None,  # IN: (D, H)
                floating[:, ::1] W2 not None,         # IN/OUT: (H, C)
                const floating[:, ::1] dW2 not None,  # IN: (H, C)
                double lr,
                int n_threads=1):
    """``W1 -= lr * dW1; W2 -= lr * dW2`` (``lr`` rounded to the weights' precision).

    One call for both weight matrices; the arrays must not overlap (the caller checks).
    """
    cdef floating lr_ = <floating>lr
    cdef Py_ssize_t n1 = W1.shape[0] * W1.shape[1], n2 = W2.shape[0] * W2.shape[1]
    cdef Py_ssize_t parts = max(n_threads, 1), p, lo, hi
    if dW1.shape[0] != W1.shape[0] or dW1.shape[1] != W1.shape[1]:
        raise ValueError(f"sgd_weights: dW1 ({dW1.shape[0]}, {dW1.shape[1]}) does not fit W1 "
                         f"({W1.shape[0]}, {W1.shape[1]})")
    if dW2.shape[0] != W2.shape[0] or dW2.shape[1] != W2.shape[1]:
        raise ValueError(f"sgd_weights: dW2 ({dW2.shape[0]}, {dW2.shape[1]}) does not fit W2 "
                         f"({W2.shape[0]}, {W2.shape[1]})")
    with nogil:
        if n2 > 0:
            _sgd(&W2[0, 0], &dW2[0, 0], lr_, n2)
        if n1 > 0 and parts == 1:
            _sgd(&W1[0, 0], &dW1[0, 0], lr_, n1)
    if n1 > 0 and parts > 1:
        for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
            lo = block_start(n1, parts, p)
            hi = block_start(n1, parts, p + 1)
            if hi > lo:
                _sgd(&W1[0, 0] + lo, &dW1[0, 0] + lo, lr_, hi - lo)
