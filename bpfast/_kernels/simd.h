/* The elementwise loops that need the CPU's widest vectors, compiled per ISA with run-time
 * dispatch: exp and everything built on it (sigmoid, softmax rows), and Relu.
 *
 * Why exp lives here: a Cython loop calling libm's scalar exp() runs at ~3 ns per element,
 * four to six times slower than NumPy's SIMD exp, so a compiled sigmoid or softmax would lose
 * to the NumPy code it replaces.  glibc's vector math (libmvec) is only reachable with
 * -ffast-math, whose -ffinite-math-only breaks NaN propagation.  So exp is written here as
 * straight-line arithmetic (no table, no branch, no libm call) that GCC vectorises, and every
 * loop using it is compiled three times (x86-64 baseline, x86-64-v3 = AVX2+FMA,
 * x86-64-v4 = AVX-512) with GCC/clang `target_clones`; the dynamic loader picks the best clone
 * for the CPU at run time.  Portable builds therefore need no -march=native.
 *
 * Accuracy: the polynomials come from tools/exp_coefficients.py (approximation error 0.09 ulp
 * in both precisions); with the rounding of the evaluation the measured error is below 2 ulp
 * over the whole finite range, tested in tests/test_simd_exp.py against long double.
 * Special values follow C99 exp: exp(NaN) = NaN, exp(+inf) = +inf, exp(-inf) = +0, overflow
 * gives +inf and underflow gives subnormals then +0 -- without raising a Python warning.
 *
 * float32 is computed in float arithmetic (8 lanes per AVX2 vector); sums of float32 values
 * accumulate in double.
 *
 * Why Relu lives here: its loop writes a byte mask next to a float output, and GCC vectorises
 * that double->byte narrowing only from AVX2 up; the baseline clone is at least branch-free,
 * which matters because a branch on the sign of fresh data mispredicts half the time (the
 * book's `out[mask] = 0` runs at 6-9 ns per element for that reason).
 */
#ifndef BPFAST_SIMD_H
#define BPFAST_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(BPFAST_NO_DISPATCH)
#  define BP_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#  define BP_DISPATCH_NAME "target_clones(x86-64-v4, x86-64-v3, default)"
#else
#  define BP_DISPATCH
#  define BP_DISPATCH_NAME "none"
#endif

#if defined(_OPENMP) || defined(BPFAST_OMP_SIMD)
#  define BP_PRAGMA(x) _Pragma(#x)
#  define BP_SIMD_REDUCE_SUM(v) BP_PRAGMA(omp simd reduction(+:v))
#  define BP_SIMD_REDUCE_MAX(v) BP_PRAGMA(omp simd reduction(max:v))
#  define BP_SIMD BP_PRAGMA(omp simd)
#else
#  define BP_SIMD_REDUCE_SUM(v)
#  define BP_SIMD_REDUCE_MAX(v)
#  define BP_SIMD
#endif

static inline uint64_t bp_bits_f64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double bp_from_bits_f64(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }
static inline uint32_t bp_bits_f32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float bp_from_bits_f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* exp(x) = 2**k * exp(r), x = k*ln2 + r.  The integer k is obtained by the "shifter" trick:
 * adding 1.5*2**52 rounds x/ln2 to an integer and leaves k in the low mantissa bits, so no
 * float->int64 conversion is needed (AVX2 has none).  2**k is applied in two halves so that
 * results near the overflow threshold (k = 1024) and in the subnormal range (k < -1022) are
 * formed without an intermediate overflow or a flush. */
static inline double bp_exp_f64(double x)
{
    const double shifter = 0x1.8p52;
    const double inv_ln2 = 0x1.71547652b82fep0;
    /* ln2 split so that k * ln2_hi is exact for |k| < 2**11 (fdlibm's split). */
    const double ln2_hi = 0x1.62e42feep-1;
    const double ln2_lo = 0x1.a39ef35793c76p-33;
    /* Clamping keeps k within the two-halves scaling range; NaN passes (comparisons false). */
    double xc = x > 710.0 ? 710.0 : x;
    xc = xc < -746.0 ? -746.0 : xc;

    double kd = xc * inv_ln2 + shifter;
    kd -= shifter;
    double r = xc - kd * ln2_hi;
    r = r - kd * ln2_lo;

    double q = 0x1.af3cd7b3560d9p-26;
    q = q * r + 0x1.2894eb03786e2p-22;
    q = q * r + 0x1.71de0be80e7e8p-19;
    q = q * r + 0x1.a019b62aaa671p-16;
    q = q * r + 0x1.a01a01a83a3a3p-13;
    q = q * r + 0x1.6c16c1794bd5cp-10;
    q = q * r + 0x1.111111111091ap-7;
    q = q * r + 0x1.5555555553b72p-5;
    q = q * r + 0x1.5555555555556p-3;
    q = q * r + 0x1.0000000000001p-1;
    double p = 1.0 + (r + r * r * q);

    /* k1 = round(k/2), k2 = k - k1; both within [-538, 513]. */
    double k1d = (kd * 0.5 + shifter) - shifter;
    double k2d = kd - k1d;
    uint64_t k1 = bp_bits_f64(k1d + shifter);
    uint64_t k2 = bp_bits_f64(k2d + shifter);
    /* Shifting by 52 keeps only k's low 12 bits (two's complement), i.e. k mod 2**12. */
    double s1 = bp_from_bits_f64((k1 << 52) + ((uint64_t)1023 << 52));
    double s2 = bp_from_bits_f64((k2 << 52) + ((uint64_t)1023 << 52));
    double res = (p * s1) * s2;
    /* For x = NaN the scales are garbage but p is NaN; keep x itself to be safe. */
    return x != x ? x : res;
}

static inline float bp_exp_f32(float x)
{
    const float shifter = 0x1.8p23f;
    const float inv_ln2 = 0x1.715476p0f;
    /* k * ln2_hi exact for |k| < 2**8. */
    const float ln2_hi = 0x1.62e4p-1f;
    const float ln2_lo = 0x1.7f7d1cp-20f;
    float xc = x > 89.0f ? 89.0f : x;
    xc = xc < -104.0f ? -104.0f : xc;

    float kd = xc * inv_ln2 + shifter;
    kd -= shifter;
    float r = xc - kd * ln2_hi;
    r = r - kd * ln2_lo;

    float q = 0x1.6d15f8p-10f;
    q = q * r + 0x1.12105cp-7f;
    q = q * r + 0x1.555516p-5f;
    q = q * r + 0x1.5554d8p-3f;
    q = q * r + 0x1p-1f;
    float p = 1.0f + (r + r * r * q);

    float k1d = (kd * 0.5f + shifter) - shifter;
    float k2d = kd - k1d;
    uint32_t k1 = bp_bits_f32(k1d + shifter);
    uint32_t k2 = bp_bits_f32(k2d + shifter);
    float s1 = bp_from_bits_f32((k1 << 23) + ((uint32_t)127 << 23));
    float s2 = bp_from_bits_f32((k2 << 23) + ((uint32_t)127 << 23));
    float res = (p * s1) * s2;
    return x != x ? x : res;
}

/* ---------------------------------------------------------------- array loops (dispatched) */

BP_DISPATCH static void bp_exp_array_f64(const double *x, double *out, ptrdiff_t n)
{
    BP_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = bp_exp_f64(x[i]);
}

BP_DISPATCH static void bp_exp_array_f32(const float *x, float *out, ptrdiff_t n)
{
    BP_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = bp_exp_f32(x[i]);
}

/* The book's naive sigmoid 1 / (1 + exp(-x)): exp(-x) overflows to +inf for very negative x
 * and the result is exactly 0, the reference's value, without NumPy's overflow warning. */
BP_DISPATCH static void bp_sigmoid_f64(const double *x, double *out, ptrdiff_t n)
{
    BP_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = 1.0 / (1.0 + bp_exp_f64(-x[i]));
}

BP_DISPATCH static void bp_sigmoid_f32(const float *x, float *out, ptrdiff_t n)
{
    BP_SIMD
    for (ptrdiff_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + bp_exp_f32(-x[i]));
}

/* Softmax of `rows` contiguous rows of length c: y = exp(x - max) / sum(exp(x - max)).
 *
 * NaN and infinities: the vectorised max may or may not see a NaN in the row, but either way
 * exp(NaN - max) or x - NaN makes the sum NaN and so the whole row NaN, which is what the
 * reference (max = NaN) gives.  A +inf gives inf - inf = NaN and an all -inf row gives
 * -inf - -inf = NaN, both as in the reference.
 *
 * Two shapes of loop, because per-row loop overhead decides small rows: measured here, a row
 * of 10 costs ~90 ns with three vector loops of its own, ~40 ns when the rows of a block are
 * shifted first and exp runs once over the whole block.  Long rows (c >= 64) keep the fused
 * loop (exp, store and sum in one pass), which was faster for 1000 x 1000.
 * Sums accumulate in double, also for float32. */
#define BP_SOFTMAX_ROWS(NAME, T, EXP)                                                        \
static inline T NAME##_max(const T *x, ptrdiff_t c)                                         \
{                                                                                            \
    T m = -INFINITY;                                                                         \
    BP_SIMD_REDUCE_MAX(m)                                                                    \
    for (ptrdiff_t j = 0; j < c; j++) m = x[j] > m ? x[j] : m;                               \
    return m;                                                                                \
}                                                                                            \
BP_DISPATCH static void NAME(const T *x, T *y, ptrdiff_t rows, ptrdiff_t c)                  \
{                                                                                            \
    if (c >= 64) {                                                                           \
        for (ptrdiff_t r = 0; r < rows; r++) {                                               \
            const T *xr = x + r * c;                                                         \
            T *yr = y + r * c;                                                               \
            const T m = NAME##_max(xr, c);                                                   \
            double s = 0.0;                                                                  \
            BP_SIMD_REDUCE_SUM(s)                                                            \
            for (ptrdiff_t j = 0; j < c; j++) {                                              \
                T e = EXP(xr[j] - m);                                                        \
                yr[j] = e;                                                                   \
                s += (double)e;                                                              \
            }                                                                                \
            const T inv = (T)(1.0 / s);                                                      \
            BP_SIMD                                                                          \
            for (ptrdiff_t j = 0; j < c; j++) yr[j] = yr[j] * inv;                           \
        }                                                                                    \
        return;                                                                              \
    }                                                                                        \
    const ptrdiff_t per = 2048 / c;                                                          \
    for (ptrdiff_t r0 = 0; r0 < rows; r0 += per) {                                           \
        const ptrdiff_t r1 = r0 + per < rows ? r0 + per : rows;                              \
        for (ptrdiff_t r = r0; r < r1; r++) {                                                \
            const T *xr = x + r * c;                                                         \
            T *yr = y + r * c;                                                               \
            T m = -INFINITY;                                                                 \
            for (ptrdiff_t j = 0; j < c; j++) m = xr[j] > m ? xr[j] : m;                     \
            for (ptrdiff_t j = 0; j < c; j++) yr[j] = xr[j] - m;                             \
        }                                                                                    \
        T *yb = y + r0 * c;                                                                  \
        const ptrdiff_t nb = (r1 - r0) * c;                                                  \
        BP_SIMD                                                                              \
        for (ptrdiff_t i = 0; i < nb; i++) yb[i] = EXP(yb[i]);                               \
        for (ptrdiff_t r = r0; r < r1; r++) {                                                \
            T *yr = y + r * c;                                                               \
            double s = 0.0;                                                                  \
            for (ptrdiff_t j = 0; j < c; j++) s += (double)yr[j];                            \
            const T inv = (T)(1.0 / s);                                                      \
            for (ptrdiff_t j = 0; j < c; j++) yr[j] = yr[j] * inv;                           \
        }                                                                                    \
    }                                                                                        \
}
BP_SOFTMAX_ROWS(bp_softmax_rows_f64, double, bp_exp_f64)
BP_SOFTMAX_ROWS(bp_softmax_rows_f32, float, bp_exp_f32)

/* Relu forward: mask = x <= 0 (so NaN passes and -0.0 becomes +0.0, as in the book), out =
 * x with the masked entries set to +0.0.  Branch-free: the output keeps x's bits or none. */
#define BP_RELU_FWD(NAME, T, U, BITS, FROM_BITS)                                              \
BP_DISPATCH static void NAME(const T *restrict x, T *restrict out,                          \
                             unsigned char *restrict mask, ptrdiff_t n)                      \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T v = x[i];                                                                          \
        U keep = (U)0 - (U)!(v <= 0);                                                        \
        mask[i] = (unsigned char)(v <= 0);                                                   \
        out[i] = FROM_BITS(BITS(v) & keep);                                                  \
    }                                                                                        \
}
BP_RELU_FWD(bp_relu_fwd_f64, double, uint64_t, bp_bits_f64, bp_from_bits_f64)
BP_RELU_FWD(bp_relu_fwd_f32, float, uint32_t, bp_bits_f32, bp_from_bits_f32)

/* Relu backward: dx = 0 where mask else dout.  dx may be dout itself (the book zeroes dout in
 * place), so no restrict between them. */
#define BP_RELU_BWD(NAME, T, U, BITS, FROM_BITS)                                              \
BP_DISPATCH static void NAME(const T *dout, const unsigned char *restrict mask, T *dx,      \
                             ptrdiff_t n)                                                    \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        U keep = (U)mask[i] - (U)1;  /* all ones where mask == 0 */                          \
        dx[i] = FROM_BITS(BITS(dout[i]) & keep);                                             \
    }                                                                                        \
}
BP_RELU_BWD(bp_relu_bwd_f64, double, uint64_t, bp_bits_f64, bp_from_bits_f64)
BP_RELU_BWD(bp_relu_bwd_f32, float, uint32_t, bp_bits_f32, bp_from_bits_f32)

static const char *bp_dispatch_name(void) { return BP_DISPATCH_NAME; }

#endif /* BPFAST_SIMD_H */
