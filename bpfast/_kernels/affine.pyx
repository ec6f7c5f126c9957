"""Kernels of the Affine layer (``bpfast.layers.Affine``; book section 5.6).

The three matrix products of the layer go to NumPy's own BLAS (``np.dot``), never to a loop
here and never to ``scipy.linalg.cython_blas``: that is a second OpenBLAS with its own thread
pool, and alternating small GEMMs between the two pools was measured here at 5-8 ms per pair
instead of 0.2 ms.  What is left for kernels is the bias add, done in place on the GEMM's
output (the book's ``np.dot(x, W) + b`` allocates and writes a second array), and ``db``, the
column sum of ``dout``.

Invariants: ``out``/``x`` are C-contiguous ``(N, M)``; ``b``/``out`` vectors have length M.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.stdlib cimport malloc, free

from bpfast._kernels._parallel cimport block_start


cdef void _bias_add_rows(floating *out, const floating *b, Py_ssize_t rows,
                         Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(rows):
        for j in range(m):
            out[i * m + j] += b[j]


cdef void _column_sum_block(const floating *x, Py_ssize_t n, Py_ssize_t m, Py_ssize_t lo,
                            Py_ssize_t hi, double *acc, floating *out) noexcept nogil:
    # Columns lo..hi-1, rows in order: every column is summed in the same order whatever the
    # number of threads.  Starting from +0.0, as NumPy's add.reduce starts from its identity
    # (a column of -0.0 sums to +0.0 there), makes the float64 result bit-identical to
    # NumPy's `dout.sum(axis=0)`, which adds whole rows in order too.
    cdef Py_ssize_t i, j
    for j in range(lo, hi):
        acc[j] = 0.0
    for i in range(0, n):
        for j in range(lo, hi):
            acc[j] += x[i * m + j]
    for j in range(lo, hi):
        out[j] = <floating>acc[j]


def bias_add(floating[:, ::1] out not None,   # IN/OUT: (N, M), b is added in place
             const floating[::1] b not None,  # IN: (M,)
             int n_threads=1):
    cdef Py_ssize_t n = out.shape[0], m = out.shape[1], parts = max(n_threads, 1), p, lo, hi
    if b.shape[0] != m:
        raise ValueError(f"bias_add: b has length {b.shape[0]}, out has {m} columns")
    if n == 0 or m == 0:
        return
    if parts == 1:
        with nogil:
            _bias_add_rows(&out[0, 0], &b[0], n, m)
        return
    for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, p)
        hi = block_start(n, parts, p + 1)
        if hi > lo:
            _bias_add_rows(&out[lo, 0], &b[0], hi - lo, m)


def column_sum(const floating[:, ::1] x not None,  # IN: (N, M)
               floating[::1] out not None,         # OUT: (M,)
               int n_threads=1):
    """Sum over axis 0, accumulated in double also for float32 (NumPy sums float32 in float32)."""
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1], parts = max(n_threads, 1), p, lo, hi
    cdef double *acc
    if out.shape[0] != m:
        raise ValueError(f"column_sum: out has length {out.shape[0]}, x has {m} columns")
    if m == 0:
        return
    if n == 0:
        out[:] = 0
        return
    acc = <double *>malloc(m * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    if parts == 1:
        with nogil:
            _column_sum_block(&x[0, 0], n, m, 0, m, acc, &out[0])
    else:
        for p in prange(parts, nogil=True, schedule="static", num_threads=parts):
            lo = block_start(m, parts, p)
            hi = block_start(m, parts, p + 1)
            _column_sum_block(&x[0, 0], n, m, lo, hi, acc, &out[0])
    free(acc)
