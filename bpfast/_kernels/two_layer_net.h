/* Elementwise loops of the fused TwoLayerNet step (two_layer_net.pyx), compiled per ISA with
 * the run-time dispatch of simd.h (see there).  Written in C for the same reason as simd.h's
 * Relu: a branch-free select on the bits (keep x or +0.0) that GCC vectorises; the Cython
 * version of bias_relu ran at 1.5 ns per element, this one at memory speed.
 *
 * Only additions, comparisons and bit masks happen here -- no multiplication -- so the
 * AVX2/AVX-512 clones cannot contract anything into an FMA and every clone gives the same
 * bits (the SGD steps, which multiply, stay in Cython compiled for baseline x86-64).
 */
#ifndef BPFAST_TWO_LAYER_NET_H
#define BPFAST_TWO_LAYER_NET_H

#include "simd.h"

/* a = a + b (row-broadcast bias); mask = a <= 0; a[mask] = +0.0.  NaN is not masked and
 * -0.0 becomes +0.0, as in the book's `np.dot(x, W) + b` followed by Relu. */
#define BP_BIAS_RELU(NAME, T, U, BITS, FROM_BITS)                                             \
BP_DISPATCH static void NAME(T *restrict a, const T *restrict b,                             \
                             unsigned char *restrict mask, ptrdiff_t rows, ptrdiff_t m)      \
{                                                                                            \
    for (ptrdiff_t i = 0; i < rows; i++) {                                                   \
        T *restrict ar = a + i * m;                                                          \
        unsigned char *restrict mr = mask + i * m;                                           \
        BP_SIMD                                                                              \
        for (ptrdiff_t j = 0; j < m; j++) {                                                  \
            T v = ar[j] + b[j];                                                              \
            U keep = (U)0 - (U)!(v <= 0);                                                    \
            mr[j] = (unsigned char)(v <= 0);                                                 \
            ar[j] = FROM_BITS(BITS(v) & keep);                                               \
        }                                                                                    \
    }                                                                                        \
}
BP_BIAS_RELU(bp_bias_relu_f64, double, uint64_t, bp_bits_f64, bp_from_bits_f64)
BP_BIAS_RELU(bp_bias_relu_f32, float, uint32_t, bp_bits_f32, bp_from_bits_f32)

/* Columns [lo, hi) of an (n, m) row-major dh: dh[mask] = +0.0 in place (the book's
 * Relu.backward on its dout), and acc[j] = sum over rows of the result, rows added in order
 * in double (NumPy's order for float64's sum(axis=0)). */
#define BP_RELU_BWD_COLSUM(NAME, T, U, BITS, FROM_BITS)                                       \
BP_DISPATCH static void NAME(T *restrict dh, const unsigned char *restrict mask,             \
                             double *restrict acc, ptrdiff_t n, ptrdiff_t m, ptrdiff_t lo,   \
                             ptrdiff_t hi)                                                   \
{                                                                                            \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T *restrict dr = dh + i * m;                                                         \
        const unsigned char *restrict mr = mask + i * m;                                     \
        if (i == 0) {                                                                        \
            BP_SIMD                                                                          \
            for (ptrdiff_t j = lo; j < hi; j++) {                                            \
                U keep = (U)mr[j] - (U)1;                                                    \
                T v = FROM_BITS(BITS(dr[j]) & keep);                                         \
                dr[j] = v;                                                                   \
                acc[j] = (double)v;                                                          \
            }                                                                                \
        } else {                                                                             \
            BP_SIMD                                                                          \
            for (ptrdiff_t j = lo; j < hi; j++) {                                            \
                U keep = (U)mr[j] - (U)1;                                                    \
                T v = FROM_BITS(BITS(dr[j]) & keep);                                         \
                dr[j] = v;                                                                   \
                acc[j] += (double)v;                                                         \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}
BP_RELU_BWD_COLSUM(bp_relu_bwd_colsum_f64, double, uint64_t, bp_bits_f64, bp_from_bits_f64)
BP_RELU_BWD_COLSUM(bp_relu_bwd_colsum_f32, float, uint32_t, bp_bits_f32, bp_from_bits_f32)

#endif /* BPFAST_TWO_LAYER_NET_H */
