"""Kernels of the SoftmaxWithLoss layer (``bpfast.layers.SoftmaxWithLoss``; book 5.6.3).

Forward: the dispatched C loop ``bp_softmax_rows_*`` of ``simd.h`` (max, exp, sum, normalise
with each row in cache), then per row the cross-entropy term ``log(y[t] + 1e-7)`` -- the
book's 1e-7 inside the log, which keeps log(0) finite.  Backward: ``(y - onehot(t)) / N`` in
one pass, in the book's operation order (subtract 1, then divide by N), so bit-identical.

Per-row losses go to a buffer and are summed in row order afterwards, in double also for
float32, so the loss does not depend on the number of threads.

Labels are checked here, with the GIL, before any nogil loop indexes with them: a label
outside [0, C) raises LabelError, an IndexError (the book wraps negative labels silently;
see the README).  Rows are split over threads in contiguous blocks.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.stdlib cimport malloc, free

from bpfast._kernels._parallel cimport block_start
from bpfast._kernels._simd cimport bp_softmax_rows_f32, bp_softmax_rows_f64
from bpfast._kernels._xent cimport argmax_row, label_t, log_picked, target_t
from bpfast._validation import LabelError  # IndexError subclass: the book raises IndexError



cdef inline void _softmax_rows(const floating[:, ::1] x, floating[:, ::1] y, Py_ssize_t lo,
                               Py_ssize_t hi) noexcept nogil:
    if hi <= lo:
        return
    if floating is float:
        bp_softmax_rows_f32(&x[lo, 0], &y[lo, 0], hi - lo, x.shape[1])
    else:
        bp_softmax_rows_f64(&x[lo, 0], &y[lo, 0], hi - lo, x.shape[1])




cdef void _xent_rows(const floating[:, ::1] x, const label_t[::1] t, floating[:, ::1] y,
                     double *row_loss, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    _softmax_rows(x, y, lo, hi)
    for i in range(lo, hi):
        row_loss[i] = log_picked(y[i, t[i]])


cdef void _xent_onehot_rows(const floating[:, ::1] x, const target_t[:, ::1] t,
                            floating[:, ::1] y, double *row_loss, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    _softmax_rows(x, y, lo, hi)
    for i in range(lo, hi):
        row_loss[i] = log_picked(y[i, argmax_row(&t[i, 0], x.shape[1])])


cdef void _xent_grad_rows(const floating[:, ::1] y, const label_t[::1] t,
                          floating[:, ::1] dx, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i, j, c = y.shape[1]
    cdef floating scale = <floating>y.shape[0]
    for i in range(lo, hi):
        for j in range(c):
            dx[i, j] = y[i, j] / scale
        # <floating>1, not 1 (which Cython emits as the double 1.0): in float32 the book
        # rounds y - 1 to float32 before dividing.
        dx[i, t[i]] = (y[i, t[i]] - <floating>1) / scale


cdef void _xent_onehot_grad_rows(const floating[:, ::1] y, const floating[:, ::1] t,
                                 floating[:, ::1] dx, Py_ssize_t lo,
                                 Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i, j, c = y.shape[1]
    cdef floating scale = <floating>y.shape[0]
    for i in range(lo, hi):
        for j in range(c):
            dx[i, j] = (y[i, j] - t[i, j]) / scale


cdef int _check(Py_ssize_t n, Py_ssize_t c, Py_ssize_t tn, Py_ssize_t tc, Py_ssize_t on,
                Py_ssize_t oc) except -1:
    # tc < 0: labels (no column count to check).
    if tn != n or (tc >= 0 and tc != c):
        raise ValueError(f"targets of {tn} rows" + (f" x {tc} columns" if tc >= 0 else "")
                         + f" do not fit logits of shape ({n}, {c})")
    if on != n or oc != c:
        raise ValueError(f"output of shape ({on}, {oc}) does not fit logits of shape ({n}, {c})")
    return 0


cdef int _check_labels(const label_t[::1] t, Py_ssize_t c) except -1:
    cdef Py_ssize_t i
    for i in range(t.shape[0]):
        if t[i] < 0 or <Py_ssize_t>t[i] >= c:
            raise LabelError(f"label {t[i]} at row {i} is out of range for {c} classes")
    return 0


cdef double _mean_loss(double *row_loss, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0
    for i in range(n):
        s += row_loss[i]
    return -s / n


def softmax_forward(const floating[:, ::1] x not None,  # IN: (N, C)
                    floating[:, ::1] y_out not None,    # OUT: (N, C)
                    int n_threads=1):
    """Row-wise softmax with the max shift, as ``bpfast.reference.softmax`` on the last axis."""
    cdef Py_ssize_t n = x.shape[0], parts = max(n_threads, 1), p
    _check(n, x.shape[1], n, -1, y_out.shape[0], y_out.shape[1])
    if n == 0 or x.shape[1] == 0:
        return
    if parts == 1:
        with nogil:
            _softmax_rows(x, y_out, 0, n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        _softmax_rows(x, y_out, block_start(n, parts, p), block_start(n, parts, p + 1))


def softmax_xent_forward(const floating[:, ::1] x not None,  # IN: logits (N, C), N, C >= 1
                         const label_t[::1] t not None,      # IN: labels (N,)
                         floating[:, ::1] y_out not None,    # OUT: softmax (N, C)
                         int n_threads=1):
    """Softmax of each row into ``y_out``; returns the mean cross-entropy as a double."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], parts = max(n_threads, 1), p
    cdef double *row_loss
    cdef double loss
    if n == 0 or c == 0:
        raise ValueError(f"logits of shape ({n}, {c}) are empty")
    _check(n, c, t.shape[0], -1, y_out.shape[0], y_out.shape[1])
    _check_labels(t, c)
    row_loss = <double *>malloc(n * sizeof(double))
    if row_loss == NULL:
        raise MemoryError()
    if parts == 1:
        with nogil:
            _xent_rows(x, t, y_out, row_loss, 0, n)
    else:
        for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
            _xent_rows(x, t, y_out, row_loss, block_start(n, parts, p),
                       block_start(n, parts, p + 1))
    loss = _mean_loss(row_loss, n)
    free(row_loss)
    return loss


def softmax_xent_forward_onehot(const floating[:, ::1] x not None,  # IN: logits (N, C)
                                const target_t[:, ::1] t not None,  # IN: one-hot (N, C)
                                floating[:, ::1] y_out not None,    # OUT: softmax (N, C)
                                int n_threads=1):
    """As ``softmax_xent_forward``, the label of each row being the argmax of ``t``."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], parts = max(n_threads, 1), p
    cdef double *row_loss
    cdef double loss
    if n == 0 or c == 0:
        raise ValueError(f"logits of shape ({n}, {c}) are empty")
    _check(n, c, t.shape[0], t.shape[1], y_out.shape[0], y_out.shape[1])
    row_loss = <double *>malloc(n * sizeof(double))
    if row_loss == NULL:
        raise MemoryError()
    if parts == 1:
        with nogil:
            _xent_onehot_rows(x, t, y_out, row_loss, 0, n)
    else:
        for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
            _xent_onehot_rows(x, t, y_out, row_loss, block_start(n, parts, p),
                              block_start(n, parts, p + 1))
    loss = _mean_loss(row_loss, n)
    free(row_loss)
    return loss


def softmax_xent_backward(const floating[:, ::1] y not None,  # IN: softmax (N, C)
                          const label_t[::1] t not None,      # IN: labels (N,)
                          floating[:, ::1] dx_out not None,   # OUT: (N, C)
                          int n_threads=1):
    """``dx = (y - onehot(t)) / N`` as the book computes it (copy, subtract 1, divide)."""
    cdef Py_ssize_t n = y.shape[0], c = y.shape[1], parts = max(n_threads, 1), p
    _check(n, c, t.shape[0], -1, dx_out.shape[0], dx_out.shape[1])
    _check_labels(t, c)
    if n == 0 or c == 0:
        return
    if parts == 1:
        with nogil:
            _xent_grad_rows(y, t, dx_out, 0, n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        _xent_grad_rows(y, t, dx_out, block_start(n, parts, p), block_start(n, parts, p + 1))


def softmax_xent_backward_onehot(const floating[:, ::1] y not None,  # IN: softmax (N, C)
                                 const floating[:, ::1] t not None,  # IN: targets (N, C)
                                 floating[:, ::1] dx_out not None,   # OUT: (N, C)
                                 int n_threads=1):
    """``dx = (y - t) / N``; soft targets are used as they are, as in the book."""
    cdef Py_ssize_t n = y.shape[0], c = y.shape[1], parts = max(n_threads, 1), p
    _check(n, c, t.shape[0], t.shape[1], dx_out.shape[0], dx_out.shape[1])
    if n == 0 or c == 0:
        return
    if parts == 1:
        with nogil:
            _xent_onehot_grad_rows(y, t, dx_out, 0, n)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        _xent_onehot_grad_rows(y, t, dx_out, block_start(n, parts, p),
                               block_start(n, parts, p + 1))
