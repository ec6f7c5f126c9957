"""Kernels of ``im2col``/``col2im`` (``bpfast.util``) and of the Convolution layer (book 7.4).

Two layouts of the column matrix, both float64 whatever the input dtype (the book's
``im2col`` allocates float64):

* the **book's layout** ``(N*OH*OW, C*FH*FW)``, one row per receptive field: rows ordered
  (sample, output row, output column), columns (channel, filter row, filter column).  This is
  what ``im2col``/``col2im`` return and take, and what ``Convolution.col`` shows;
* the **per-sample layout** ``(N, rows, OH*OW)``: sample n's block is the book's block
  transposed, so ``W.reshape(FN, -1) @ block`` is already the NCHW output of sample n and
  ``col_W @ dout[n]`` takes ``dout`` as it comes (no transposes around the GEMMs).  With
  ``rows == C*FH*FW + 1`` the extra last row is all ones, so the GEMM also adds the bias
  (and, in backward, yields ``db``).

``col2im`` writes straight into the ``(N, C, H, W)`` result (the book accumulates into a
padded buffer and slices it; contributions that land in the padding are dropped either
way) and adds the contributions of each pixel in the book's order -- filter row, then filter
column -- so its float64 result is bit-identical to the book's.

Every kernel is parallel over samples: each sample reads and writes only its own block, so
the result is race-free and independent of the thread count.

Invariants checked here, with the GIL, before any raw-pointer loop: the geometry is valid
(``stride >= 1``, ``pad >= 0``, ``OH, OW >= 1``) and every array has exactly the shape the
geometry implies.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.string cimport memset

from bpfast._kernels._parallel cimport block_start


cdef inline Py_ssize_t _first_inside(Py_ssize_t k, Py_ssize_t pad, Py_ssize_t stride) noexcept nogil:
    # Smallest output index o >= 0 with o*stride + k - pad >= 0.
    if k >= pad:
        return 0
    return (pad - k + stride - 1) // stride


cdef inline Py_ssize_t _end_inside(Py_ssize_t k, Py_ssize_t pad, Py_ssize_t stride,
                                   Py_ssize_t size, Py_ssize_t n_out) noexcept nogil:
    # One past the largest output index o < n_out with o*stride + k - pad < size.
    cdef Py_ssize_t last = size - 1 + pad - k
    if last < 0:
        return 0
    last = last // stride + 1
    return last if last < n_out else n_out


cdef void _im2col_rows(const floating *x, double *col, Py_ssize_t C, Py_ssize_t H,
                       Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s,
                       Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    # One sample, book layout: row (oh, ow) holds the receptive field in (c, ki, kj) order.
    # Windows wholly inside the image (all of them without padding) take a loop with no
    # bounds tests.
    cdef Py_ssize_t oh, ow, c, ki, kj, r, r0, q0
    cdef double *dst
    cdef const floating *src
    for oh in range(OH):
        r0 = oh * s - p
        for ow in range(OW):
            dst = col + (oh * OW + ow) * (C * FH * FW)
            q0 = ow * s - p
            if r0 >= 0 and r0 + FH <= H and q0 >= 0 and q0 + FW <= W:
                for c in range(C):
                    src = x + (c * H + r0) * W + q0
                    for ki in range(FH):
                        for kj in range(FW):
                            dst[kj] = src[kj]
                        dst += FW
                        src += W
                continue
            for c in range(C):
                for ki in range(FH):
                    r = r0 + ki
                    if r < 0 or r >= H:
                        for kj in range(FW):
                            dst[kj] = 0.0
                    else:
                        src = x + (c * H + r) * W
                        for kj in range(FW):
                            if 0 <= q0 + kj < W:
                                dst[kj] = src[q0 + kj]
                            else:
                                dst[kj] = 0.0
                    dst += FW


cdef extern from *:
    """
    /* col2im for one sample, book layout (see _col2im_rows in im2col.pyx for the order).
       Written in C for one reason: the compiler must not vectorise the short inner loop.
       Consecutive windows overlap by all but `stride` columns, so a 16-byte store of one
       window is read back shifted by one element by the next: with vector code every such
       load misses store-to-load forwarding and stalls (measured here at ~2x the scalar
       time). */
    #if defined(__clang__)
    #  define BP_NOVEC_LOOP _Pragma("clang loop vectorize(disable)")
    #  define BP_NOVEC_FN
    #elif defined(__GNUC__)
    #  define BP_NOVEC_LOOP
    #  define BP_NOVEC_FN __attribute__((optimize("no-tree-vectorize")))
    #else
    #  define BP_NOVEC_LOOP
    #  define BP_NOVEC_FN
    #endif
    #define BP_COL2IM_ROWS(NAME, T)                                                           \
    static BP_NOVEC_FN void NAME(const T *col, double *img, Py_ssize_t C, Py_ssize_t H,       \
                                 Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s,   \
                                 Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) {               \
        Py_ssize_t oh, ow, c, ki, kj, r, r0, q0, q;                                          \
        const T *src;                                                                        \
        double *dst;                                                                         \
        memset(img, 0, (size_t)(C * H * W) * sizeof(double));                               \
        for (oh = OH - 1; oh >= 0; oh--) {                                                   \
            r0 = oh * s - p;                                                                 \
            for (ow = OW - 1; ow >= 0; ow--) {                                               \
                src = col + (oh * OW + ow) * (C * FH * FW);                                  \
                q0 = ow * s - p;                                                             \
                if (r0 >= 0 && r0 + FH <= H && q0 >= 0 && q0 + FW <= W) {                    \
                    for (c = 0; c < C; c++) {                                                \
                        dst = img + (c * H + r0) * W + q0;                                   \
                        for (ki = 0; ki < FH; ki++, src += FW, dst += W) {                   \
                            BP_NOVEC_LOOP                                                    \
                            for (kj = 0; kj < FW; kj++) dst[kj] += (double)src[kj];          \
                        }                                                                    \
                    }                                                                        \
                    continue;                                                                \
                }                                                                            \
                for (c = 0; c < C; c++) {                                                    \
                    for (ki = 0; ki < FH; ki++, src += FW) {                                 \
                        r = r0 + ki;                                                         \
                        if (r < 0 || r >= H) continue;                                       \
                        dst = img + (c * H + r) * W;                                         \
                        BP_NOVEC_LOOP                                                        \
                        for (kj = 0; kj < FW; kj++) {                                        \
                            q = q0 + kj;                                                     \
                            if (q >= 0 && q < W) dst[q] += (double)src[kj];                  \
                        }                                                                    \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }
    BP_COL2IM_ROWS(bp_col2im_rows_f64, double)
    BP_COL2IM_ROWS(bp_col2im_rows_f32, float)
    """
    void bp_col2im_rows_f64(const double *col, double *img, Py_ssize_t C, Py_ssize_t H,
                            Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s,
                            Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil
    void bp_col2im_rows_f32(const float *col, double *img, Py_ssize_t C, Py_ssize_t H,
                            Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s,
                            Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil


cdef inline void _col2im_rows(const floating *col, double *img, Py_ssize_t C, Py_ssize_t H,
                              Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s,
                              Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    # One sample, book layout.  The book adds one filter offset (ki, kj) at a time,
    # ascending, so each pixel receives its contributions ordered by ki, then kj -- that
    # is, by window (oh, ow) *descending*.  The C loop walks the rows backwards, so every
    # pixel sees the book's sequence of additions and float64 sums are bit-identical.  (Of
    # the orders tried -- per filter offset, per output row, gathered per pixel -- this
    # one, reading col sequentially, was the fastest.)
    if floating is float:
        bp_col2im_rows_f32(col, img, C, H, W, FH, FW, s, p, OH, OW)
    else:
        bp_col2im_rows_f64(col, img, C, H, W, FH, FW, s, p, OH, OW)


cdef void _im2col_nkp(const floating *x, double *colt, Py_ssize_t rows, Py_ssize_t C,
                      Py_ssize_t H, Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s,
                      Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    # One sample, per-sample layout: row k = (c, ki, kj) is the input plane shifted by the
    # filter offset and subsampled by the stride, i.e. one map of OH x OW values.
    cdef Py_ssize_t c, ki, kj, oh, ow, r, lo, hi, off, P = OH * OW
    cdef double *dst
    cdef const floating *src
    for c in range(C):
        for ki in range(FH):
            for kj in range(FW):
                dst = colt + ((c * FH + ki) * FW + kj) * P
                # Output columns [lo, hi) read inside the image; the rest read the padding.
                lo = _first_inside(kj, p, s)
                if lo > OW:
                    lo = OW
                hi = _end_inside(kj, p, s, W, OW)
                if hi < lo:
                    hi = lo
                off = kj - p
                for oh in range(OH):
                    r = oh * s + ki - p
                    if r < 0 or r >= H:
                        for ow in range(OW):
                            dst[ow] = 0.0
                    else:
                        src = x + (c * H + r) * W
                        for ow in range(lo):
                            dst[ow] = 0.0
                        if s == 1:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow + off]
                        else:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow * s + off]
                        for ow in range(hi, OW):
                            dst[ow] = 0.0
                    dst += OW
    if rows > C * FH * FW:  # the bias row
        dst = colt + C * FH * FW * P
        for ow in range(P):
            dst[ow] = 1.0


cdef void _col2im_nkp(const floating *colt, double *img, Py_ssize_t C, Py_ssize_t H,
                      Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW, Py_ssize_t s, Py_ssize_t p,
                      Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    # One sample, per-sample layout; offsets (ki, kj) ascending as in the book.
    cdef Py_ssize_t c, ki, kj, oh, ow, r, lo, hi, off, P = OH * OW
    cdef const floating *src
    cdef double *dst
    memset(img, 0, C * H * W * sizeof(double))
    for c in range(C):
        for ki in range(FH):
            for kj in range(FW):
                src = colt + ((c * FH + ki) * FW + kj) * P
                lo = _first_inside(kj, p, s)
                hi = _end_inside(kj, p, s, W, OW)
                off = kj - p
                for oh in range(OH):
                    r = oh * s + ki - p
                    if 0 <= r < H:
                        dst = img + (c * H + r) * W
                        if s == 1:
                            for ow in range(lo, hi):
                                dst[ow + off] += src[ow]
                        else:
                            for ow in range(lo, hi):
                                dst[ow * s + off] += src[ow]
                    src += OW


cdef int _check_geometry(Py_ssize_t H, Py_ssize_t W, Py_ssize_t FH, Py_ssize_t FW,
                         Py_ssize_t s, Py_ssize_t p, Py_ssize_t OH, Py_ssize_t OW) except -1:
    if H < 1 or W < 1:
        raise ValueError(f"empty input plane {H}x{W}")
    if FH < 1 or FW < 1 or s < 1 or p < 0:
        raise ValueError(f"filter {FH}x{FW}, stride {s}, pad {p}: need filter >= 1, "
                         f"stride >= 1, pad >= 0")
    # Checked before dividing: C division truncates a negative numerator towards zero.
    if H + 2 * p < FH or W + 2 * p < FW:
        raise ValueError(f"filter {FH}x{FW} is larger than the padded input "
                         f"{H + 2 * p}x{W + 2 * p}")
    if OH < 1 or OW < 1 or OH != (H + 2 * p - FH) // s + 1 or OW != (W + 2 * p - FW) // s + 1:
        raise ValueError(f"output {OH}x{OW} does not match input {H}x{W}, filter {FH}x{FW}, "
                         f"stride {s}, pad {p}")
    return 0


def im2col(const floating[:, :, :, ::1] x not None,  # IN: (N, C, H, W)
           Py_ssize_t filter_h, Py_ssize_t filter_w, Py_ssize_t stride, Py_ssize_t pad,
           double[:, ::1] col_out not None,         # OUT: (N*OH*OW, C*FH*FW), book layout
           int n_threads=1):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t FH = filter_h, FW = filter_w, s = stride, p = pad
    cdef Py_ssize_t OH = (H + 2 * p - FH) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t OW = (W + 2 * p - FW) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t P = OH * OW, K = C * FH * FW, parts = max(n_threads, 1), t, n, lo, hi
    _check_geometry(H, W, FH, FW, s, p, OH, OW)
    if col_out.shape[0] != N * P or col_out.shape[1] != K:
        raise ValueError(f"im2col: col_out has shape ({col_out.shape[0]}, {col_out.shape[1]}), "
                         f"expected ({N * P}, {K})")
    if N == 0 or K == 0:
        return
    if parts == 1:
        with nogil:
            for n in range(N):
                _im2col_rows(&x[n, 0, 0, 0], &col_out[n * P, 0], C, H, W, FH, FW, s, p, OH, OW)
        return
    for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(N, parts, t)
        hi = block_start(N, parts, t + 1)
        for n in range(lo, hi):
            _im2col_rows(&x[n, 0, 0, 0], &col_out[n * P, 0], C, H, W, FH, FW, s, p, OH, OW)


def col2im(const floating[:, ::1] col not None,    # IN: (N*OH*OW, C*FH*FW), book layout
           Py_ssize_t filter_h, Py_ssize_t filter_w, Py_ssize_t stride, Py_ssize_t pad,
           double[:, :, :, ::1] img_out not None,  # OUT: (N, C, H, W), overwritten
           int n_threads=1):
    cdef Py_ssize_t N = img_out.shape[0], C = img_out.shape[1]
    cdef Py_ssize_t H = img_out.shape[2], W = img_out.shape[3]
    cdef Py_ssize_t FH = filter_h, FW = filter_w, s = stride, p = pad
    cdef Py_ssize_t OH = (H + 2 * p - FH) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t OW = (W + 2 * p - FW) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t P = OH * OW, K = C * FH * FW, parts = max(n_threads, 1), t, n, lo, hi
    _check_geometry(H, W, FH, FW, s, p, OH, OW)
    if col.shape[0] != N * P or col.shape[1] != K:
        raise ValueError(f"col2im: col has shape ({col.shape[0]}, {col.shape[1]}), "
                         f"expected ({N * P}, {K})")
    if N == 0 or C * H * W == 0:
        return
    if parts == 1:
        with nogil:
            for n in range(N):
                _col2im_rows(&col[n * P, 0], &img_out[n, 0, 0, 0], C, H, W, FH, FW, s, p, OH, OW)
        return
    for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(N, parts, t)
        hi = block_start(N, parts, t + 1)
        for n in range(lo, hi):
            _col2im_rows(&col[n * P, 0], &img_out[n, 0, 0, 0], C, H, W, FH, FW, s, p, OH, OW)


def im2col_nkp(const floating[:, :, :, ::1] x not None,  # IN: (N, C, H, W)
               Py_ssize_t filter_h, Py_ssize_t filter_w, Py_ssize_t stride, Py_ssize_t pad,
               double[:, :, ::1] colt_out not None,     # OUT: (N, K or K+1, OH*OW)
               int n_threads=1):
    """Per-sample layout; with ``K + 1`` rows the last row of every block is set to 1.0."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t FH = filter_h, FW = filter_w, s = stride, p = pad
    cdef Py_ssize_t OH = (H + 2 * p - FH) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t OW = (W + 2 * p - FW) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t P = OH * OW, K = C * FH * FW, R = colt_out.shape[1]
    cdef Py_ssize_t parts = max(n_threads, 1), t, n, lo, hi
    _check_geometry(H, W, FH, FW, s, p, OH, OW)
    if colt_out.shape[0] != N or (R != K and R != K + 1) or colt_out.shape[2] != P:
        raise ValueError(f"im2col_nkp: colt_out has shape ({N}, {R}, {colt_out.shape[2]}), "
                         f"expected ({N}, {K} or {K + 1}, {P})")
    if N == 0 or K == 0:
        return
    if parts == 1:
        with nogil:
            for n in range(N):
                _im2col_nkp(&x[n, 0, 0, 0], &colt_out[n, 0, 0], R, C, H, W, FH, FW, s, p, OH, OW)
        return
    for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(N, parts, t)
        hi = block_start(N, parts, t + 1)
        for n in range(lo, hi):
            _im2col_nkp(&x[n, 0, 0, 0], &colt_out[n, 0, 0], R, C, H, W, FH, FW, s, p, OH, OW)


def col2im_nkp(const floating[:, :, ::1] colt not None,  # IN: (N, K or more, OH*OW)
               Py_ssize_t filter_h, Py_ssize_t filter_w, Py_ssize_t stride, Py_ssize_t pad,
               double[:, :, :, ::1] img_out not None,   # OUT: (N, C, H, W), overwritten
               int n_threads=1):
    """Per-sample layout; rows past ``K = C*FH*FW`` (a bias row) are ignored."""
    cdef Py_ssize_t N = img_out.shape[0], C = img_out.shape[1]
    cdef Py_ssize_t H = img_out.shape[2], W = img_out.shape[3]
    cdef Py_ssize_t FH = filter_h, FW = filter_w, s = stride, p = pad
    cdef Py_ssize_t OH = (H + 2 * p - FH) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t OW = (W + 2 * p - FW) // s + 1 if s >= 1 else 0
    cdef Py_ssize_t P = OH * OW, K = C * FH * FW, parts = max(n_threads, 1), t, n, lo, hi
    _check_geometry(H, W, FH, FW, s, p, OH, OW)
    if colt.shape[0] != N or colt.shape[1] < K or colt.shape[2] != P:
        raise ValueError(f"col2im_nkp: colt has shape ({colt.shape[0]}, {colt.shape[1]}, "
                         f"{colt.shape[2]}), expected ({N}, >= {K}, {P})")
    if N == 0 or C * H * W == 0:
        return
    if parts == 1:
        with nogil:
            for n in range(N):
                _col2im_nkp(&colt[n, 0, 0], &img_out[n, 0, 0, 0], C, H, W, FH, FW, s, p, OH, OW)
        return
    for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(N, parts, t)
        hi = block_start(N, parts, t + 1)
        for n in range(lo, hi):
            _col2im_nkp(&colt[n, 0, 0], &img_out[n, 0, 0, 0], C, H, W, FH, FW, s, p, OH, OW)
