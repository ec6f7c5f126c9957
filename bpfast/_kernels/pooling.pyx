"""Kernels of the max-Pooling layer (``bpfast.layers.Pooling``; book section 7.4.4).

The book builds the whole ``im2col`` matrix (float64), reshapes it to one row per window and
calls ``argmax``/``max``; backward scatters ``dout`` into a zero matrix of the same size and
folds it back with ``col2im``.  These kernels work on the NCHW planes directly: forward reads
each window once and keeps, per output element, the index of the maximum *within its window*
(``ki * pool_w + kj``, exactly the book's ``arg_max`` value) in one byte (int32 for windows
of more than 256 elements); backward adds each ``dout`` to the one input pixel its index
names.

Semantics kept from the book: the first maximum wins ties, and NaN counts as larger than
everything (``np.argmax``/``np.max`` both stop at the first NaN), so a window with a NaN
outputs NaN and routes its gradient to the first NaN.  Overlapping windows (stride < pool)
accumulate; each pixel receives its contributions in the book's order (the book adds filter
offsets in ascending order, i.e. windows in descending order), so float64 results are
bit-identical.  Output is float64 whatever the input dtype, as in the book.

Positions in the padding (``pad > 0``, which the book cannot run) read as -inf: they never
win against a real value.

Invariants checked before the loops: the geometry is valid and every array has the shape it
implies.  Parallel over (sample, channel) planes: race-free, thread-count independent.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport INFINITY
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from bpfast._kernels._parallel cimport block_start

ctypedef fused arg_t:
    unsigned char
    int


cdef void _pool_fwd_plane(const floating *x, double *out, arg_t *arg, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t s,
                          Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oh, ow, ki, kj, r, q, k, best_k
    cdef double v, best
    cdef const floating *row
    for oh in range(OH):
        for ow in range(OW):
            best = -INFINITY
            best_k = 0
            k = 0
            for ki in range(PH):
                r = oh * s + ki - p
                if r < 0 or r >= H:
                    # A padding row: -inf never replaces the running maximum (at most it
                    # ties with it, and ties keep the first index).
                    k += PW
                    continue
                row = x + r * W
                for kj in range(PW):
                    q = ow * s + kj - p
                    if 0 <= q < W:
                        v = row[q]
                        # k == 0 seeds the maximum (also with -inf or NaN); after that the
                        # first strictly larger value, or the first NaN, takes over.
                        if k == 0 or v > best or (v != v and best == best):
                            best = v
                            best_k = k
                    k += 1
            out[oh * OW + ow] = best
            arg[oh * OW + ow] = <arg_t>best_k


cdef void _pool_fwd_plane_nopad(const floating *x, double *out, arg_t *arg, Py_ssize_t W,
                                Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t s, Py_ssize_t OH,
                                Py_ssize_t OW) noexcept nogil:
    # Every window lies inside the image: no bounds tests.  The running maximum is updated
    # with selects on a single `>` (a compare-and-move, no branch: a branch on data would
    # mispredict about every other window); NaN, which no `>` sees, is only recorded and
    # handled by a second look at the (rare) windows that hold one.
    cdef Py_ssize_t oh, ow, ki, kj, k, best_k
    cdef double v, best
    cdef int nan
    cdef const floating *win
    for oh in range(OH):
        for ow in range(OW):
            win = x + oh * s * W + ow * s
            best = win[0]
            best_k = 0
            nan = best != best
            k = 0
            for ki in range(PH):
                for kj in range(PW):
                    v = win[ki * W + kj]
                    best_k = k if v > best else best_k
                    best = v if v > best else best
                    nan |= v != v
                    k += 1
            if nan:  # the first NaN wins, as with np.argmax / np.max
                k = 0
                for ki in range(PH):
                    for kj in range(PW):
                        v = win[ki * W + kj]
                        if v != v:
                            best = v
                            best_k = k
                            break
                        k += 1
                    else:
                        continue
                    break
            out[oh * OW + ow] = best
            arg[oh * OW + ow] = <arg_t>best_k


cdef void _pool_fwd_plane_2x2s2(const floating *x, double *out, arg_t *arg, Py_ssize_t W,
                                Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    # The book's networks' case (2x2, stride 2, no padding), unrolled; same selects and
    # NaN handling as _pool_fwd_plane_nopad.
    cdef Py_ssize_t oh, ow, k
    cdef double a, b, c, d, best
    cdef const floating *r0
    cdef const floating *r1
    for oh in range(OH):
        r0 = x + 2 * oh * W
        r1 = r0 + W
        for ow in range(OW):
            a = r0[2 * ow]
            b = r0[2 * ow + 1]
            c = r1[2 * ow]
            d = r1[2 * ow + 1]
            best = a
            k = 0
            k = 1 if b > best else k
            best = b if b > best else best
            k = 2 if c > best else k
            best = c if c > best else best
            k = 3 if d > best else k
            best = d if d > best else best
            if (a != a) | (b != b) | (c != c) | (d != d):  # rare: the first NaN wins
                if a != a:
                    best, k = a, 0
                elif b != b:
                    best, k = b, 1
                elif c != c:
                    best, k = c, 2
                else:
                    best, k = d, 3
            out[oh * OW + ow] = best
            arg[oh * OW + ow] = <arg_t>k


cdef void _pool_bwd_plane(const floating *dout, const arg_t *arg, double *dx, Py_ssize_t H,
                          Py_ssize_t W, Py_ssize_t n_win, const Py_ssize_t *k_row,
                          const Py_ssize_t *k_col, Py_ssize_t s, Py_ssize_t p, Py_ssize_t OH,
                          Py_ssize_t OW) noexcept nogil:
    # Windows in descending order: the order in which the book's col2im adds them.
    # k_row/k_col map a window index to its (row, column) offset without a division.
    cdef Py_ssize_t oh, ow, k, r, q, m
    memset(dx, 0, H * W * sizeof(double))
    for oh in range(OH - 1, -1, -1):
        for ow in range(OW - 1, -1, -1):
            m = oh * OW + ow
            k = arg[m]
            if k >= n_win:  # never written by the forward kernel; memory safety only
                continue
            r = oh * s + k_row[k] - p
            q = ow * s + k_col[k] - p
            # A maximum in the padding (an all-padding window) sends its gradient nowhere.
            if 0 <= r < H and 0 <= q < W:
                dx[r * W + q] += dout[m]


cdef void _fwd_planes(const floating *x, double *out, arg_t *arg, Py_ssize_t lo,
                      Py_ssize_t hi, Py_ssize_t H, Py_ssize_t W, Py_ssize_t PH, Py_ssize_t PW,
                      Py_ssize_t s, Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        if p == 0 and PH == 2 and PW == 2 and s == 2:
            _pool_fwd_plane_2x2s2(x + i * H * W, out + i * OH * OW, arg + i * OH * OW, W, OH, OW)
        elif p == 0:
            _pool_fwd_plane_nopad(x + i * H * W, out + i * OH * OW, arg + i * OH * OW, W,
                                  PH, PW, s, OH, OW)
        else:
            _pool_fwd_plane(x + i * H * W, out + i * OH * OW, arg + i * OH * OW, H, W,
                            PH, PW, s, p, OH, OW)


cdef int _check(Py_ssize_t H, Py_ssize_t W, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t s,
                Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) except -1:
    if H < 1 or W < 1:
        raise ValueError(f"empty input plane {H}x{W}")
    if PH < 1 or PW < 1 or s < 1 or p < 0:
        raise ValueError(f"pool {PH}x{PW}, stride {s}, pad {p}: need pool >= 1, stride >= 1, "
                         f"pad >= 0")
    if H + 2 * p < PH or W + 2 * p < PW:
        raise ValueError(f"pool {PH}x{PW} is larger than the padded input "
                         f"{H + 2 * p}x{W + 2 * p}")
    if OH != (H + 2 * p - PH) // s + 1 or OW != (W + 2 * p - PW) // s + 1:
        raise ValueError(f"output {OH}x{OW} does not match input {H}x{W}, pool {PH}x{PW}, "
                         f"stride {s}, pad {p}")
    return 0


def max_pool_forward(const floating[:, :, :, ::1] x not None,  # IN: (N, C, H, W)
                     Py_ssize_t pool_h, Py_ssize_t pool_w, Py_ssize_t stride, Py_ssize_t pad,
                     double[:, :, :, ::1] out not None,       # OUT: (N, C, OH, OW)
                     arg_t[:, :, :, ::1] arg_out not None,    # OUT: (N, C, OH, OW)
                     int n_threads=1):
    """``out`` = window maxima, ``arg_out`` = index of the first maximum within the window."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = out.shape[2], OW = out.shape[3], planes = N * C
    cdef Py_ssize_t parts = max(n_threads, 1), t, i, lo, hi, PH = pool_h, PW = pool_w
    _check(H, W, PH, PW, stride, pad, OH, OW)
    if (out.shape[0] != N or out.shape[1] != C or arg_out.shape[0] != N
            or arg_out.shape[1] != C or arg_out.shape[2] != OH or arg_out.shape[3] != OW):
        raise ValueError("max_pool_forward: out/arg_out shapes do not match x")
    if sizeof(arg_t) == 1 and PH * PW > 256:
        raise ValueError(f"max_pool_forward: a {PH}x{PW} window needs int32 indices")
    if planes == 0:
        return
    if parts == 1:
        with nogil:
            _fwd_planes(&x[0, 0, 0, 0], &out[0, 0, 0, 0], &arg_out[0, 0, 0, 0], 0, planes, H, W,
                        PH, PW, stride, pad, OH, OW)
        return
    for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(planes, parts, t)
        hi = block_start(planes, parts, t + 1)
        _fwd_planes(&x[0, 0, 0, 0], &out[0, 0, 0, 0], &arg_out[0, 0, 0, 0], lo, hi, H, W,
                    PH, PW, stride, pad, OH, OW)




def max_pool_backward(const floating[:, :, :, ::1] dout not None,  # IN: (N, C, OH, OW)
                      const arg_t[:, :, :, ::1] arg not None,      # IN: (N, C, OH, OW)
                      Py_ssize_t pool_h, Py_ssize_t pool_w, Py_ssize_t stride, Py_ssize_t pad,
                      double[:, :, :, ::1] dx_out not None,        # OUT: (N, C, H, W)
                      int n_threads=1):
    """``dx_out`` = each ``dout`` added at the position its window index names."""
    cdef Py_ssize_t N = dx_out.shape[0], C = dx_out.shape[1]
    cdef Py_ssize_t H = dx_out.shape[2], W = dx_out.shape[3]
    cdef Py_ssize_t OH = dout.shape[2], OW = dout.shape[3], planes = N * C
    cdef Py_ssize_t parts = max(n_threads, 1), t, i, lo, hi, k, n_win = pool_h * pool_w
    cdef Py_ssize_t *k_row
    cdef Py_ssize_t *k_col
    _check(H, W, pool_h, pool_w, stride, pad, OH, OW)
    if (dout.shape[0] != N or dout.shape[1] != C or arg.shape[0] != N or arg.shape[1] != C
            or arg.shape[2] != OH or arg.shape[3] != OW):
        raise ValueError("max_pool_backward: dout/arg shapes do not match dx_out")
    if planes == 0:
        return
    k_row = <Py_ssize_t *>malloc(2 * n_win * sizeof(Py_ssize_t))
    if k_row == NULL:
        raise MemoryError()
    k_col = k_row + n_win
    for k in range(n_win):
        k_row[k] = k // pool_w
        k_col[k] = k % pool_w
    try:
        if parts == 1:
            with nogil:
                for i in range(planes):
                    _pool_bwd_plane(&dout[0, 0, 0, 0] + i * OH * OW,
                                    &arg[0, 0, 0, 0] + i * OH * OW, &dx_out[0, 0, 0, 0] + i * H * W,
                                    H, W, n_win, k_row, k_col, stride, pad, OH, OW)
        else:
            for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
                lo = block_start(planes, parts, t)
                hi = block_start(planes, parts, t + 1)
                for i in range(lo, hi):
                    _pool_bwd_plane(&dout[0, 0, 0, 0] + i * OH * OW,
                                    &arg[0, 0, 0, 0] + i * OH * OW,
                                    &dx_out[0, 0, 0, 0] + i * H * W,
                                    H, W, n_win, k_row, k_col, stride, pad, OH, OW)
    finally:
        free(k_row)
