/* The loops of the fused MultiLayerNet(Extend) step (multi_layer_net.pyx has the design).
 *
 * Each is the composition of the drop-in layers' own loops, element by element in the same
 * operations, order and dtype, so the numbers are theirs bit for bit:
 *   Affine's bias add (affine.pyx), BatchNormalization (batch_normalization.h), Relu
 *   (simd.h: x <= 0 gives +0.0, NaN passes), Dropout (dropout.h: x * 0.0 or x * 1.0) and
 *   Affine's column sum (affine.pyx: double accumulator from +0.0, rows in order).
 * What changes is that no intermediate array is written: the biased input, the BatchNorm
 * output, the Relu output and the incoming gradients after Dropout/Relu are recomputed in
 * every pass that needs them (the same operations give the same bits).
 *
 * Compiled per ISA (BP_DISPATCH) without fused multiply-adds (BP_MLN_NO_CONTRACT), like the
 * BatchNorm loops.  Work is on columns [j0, j1) of row-major (n, d) arrays; `acc` is a double
 * scratch array of d (forward) or 4*d (backward) entries; dmask/u may be NULL (no Dropout).
 * No two arrays overlap (`restrict`; the kernels check it).
 */
#ifndef BPFAST_MULTI_LAYER_NET_H
#define BPFAST_MULTI_LAYER_NET_H

#include <math.h>
#include <stddef.h>

#if defined(__GNUC__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include "simd.h"
#if defined(__GNUC__)
#  pragma GCC diagnostic pop
#endif

#if defined(__clang__)
#  pragma STDC FP_CONTRACT OFF
#  define BP_MLN_NO_CONTRACT
#elif defined(__GNUC__)
#  define BP_MLN_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#  define BP_MLN_NO_CONTRACT
#endif

/* Forward of one hidden block: a = z + b (Affine's bias), BatchNorm (training) of a,
 * Relu, then Dropout when u != NULL.  Writes mean/var/std/xc/xn (BatchNorm's cache), rmask
 * (Relu's mask: v <= 0), dmask (Dropout's: u > ratio) and h, the block's output.  Relu as
 * simd.h's: the output keeps v's bits or none (+0.0), branch-free. */
#define BP_MLN_HIDDEN_FWD(NAME, T, U, BITS, FROM_BITS, SQRT)                                 \
BP_DISPATCH BP_MLN_NO_CONTRACT static void NAME(                                             \
    const T *restrict z, const T *restrict b, const T *restrict gamma,                      \
    const T *restrict beta, const double *restrict u, double ratio, T *restrict mean,       \
    T *restrict var, T *restrict std, T *restrict xc, T *restrict xn,                       \
    unsigned char *restrict rmask, unsigned char *restrict dmask, T *restrict h,            \
    double *restrict acc, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1)              \
{                                                                                            \
    ptrdiff_t i, j;                                                                          \
    const T eps = (T)1e-6;                                                                   \
    for (j = j0; j < j1; j++) acc[j] = 0.0;                                                  \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) acc[j] += (double)(T)(z[i * d + j] + b[j]);                \
    for (j = j0; j < j1; j++) { mean[j] = (T)(acc[j] / (double)n); acc[j] = 0.0; }           \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) {                                                          \
            T v = (T)(z[i * d + j] + b[j]) - mean[j];                                        \
            xc[i * d + j] = v;                                                               \
            acc[j] += (double)(v * v);                                                       \
        }                                                                                    \
    for (j = j0; j < j1; j++) {                                                              \
        var[j] = (T)(acc[j] / (double)n);                                                    \
        std[j] = SQRT((T)(var[j] + eps));                                                    \
    }                                                                                        \
    if (u) {                                                                                 \
        for (i = 0; i < n; i++) {                                                            \
            BP_SIMD                                                                          \
            for (j = j0; j < j1; j++) {                                                      \
                T q = xc[i * d + j] / std[j];                                                \
                T v = gamma[j] * q + beta[j];                                                \
                U keep = (U)0 - (U)!(v <= 0);                                                \
                xn[i * d + j] = q;                                                           \
                rmask[i * d + j] = (unsigned char)(v <= 0);                                  \
                T r = FROM_BITS(BITS(v) & keep);                                             \
                int k = u[i * d + j] > ratio;                                                \
                dmask[i * d + j] = (unsigned char)k;                                         \
                h[i * d + j] = r * (T)k;                                                     \
            }                                                                                \
        }                                                                                    \
    } else {                                                                                 \
        for (i = 0; i < n; i++) {                                                            \
            BP_SIMD                                                                          \
            for (j = j0; j < j1; j++) {                                                      \
                T q = xc[i * d + j] / std[j];                                                \
                T v = gamma[j] * q + beta[j];                                                \
                U keep = (U)0 - (U)!(v <= 0);                                                \
                xn[i * d + j] = q;                                                           \
                rmask[i * d + j] = (unsigned char)(v <= 0);                                  \
                h[i * d + j] = FROM_BITS(BITS(v) & keep);                                    \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}

/* Backward of one hidden block: the incoming gradient g = dh (times the Dropout mask when
 * dmask != NULL, as dropout.h: dh * 0.0 or dh * 1.0), zeroed where rmask (+0.0, as simd.h's
 * Relu backward), then BatchNorm's backward (BP_BN_BWD with the forward's xn; g is kept in dx
 * between its passes), then Affine's db = column sums of dx.  acc: 4*d doubles. */
#define BP_MLN_HIDDEN_BWD(NAME, T, U, BITS, FROM_BITS)                                       \
BP_DISPATCH BP_MLN_NO_CONTRACT static void NAME(                                             \
    const T *restrict dh, const unsigned char *restrict dmask,                              \
    const unsigned char *restrict rmask, const T *restrict xn, const T *restrict xc,        \
    const T *restrict std,                                                                   \
    const T *restrict gamma, T k2, T nb, T *restrict dx, T *restrict dgamma,                \
    T *restrict dbeta, T *restrict db, double *restrict acc, ptrdiff_t n, ptrdiff_t d,      \
    ptrdiff_t j0, ptrdiff_t j1)                                                              \
{                                                                                            \
    ptrdiff_t i, j;                                                                          \
    double *restrict s_beta = acc, *restrict s_gamma = acc + d;                              \
    double *restrict s_std = acc + 2 * d, *restrict s_db = acc + 3 * d;                      \
    /* g into dx: Dropout's then Relu's backward. */                                         \
    if (dmask) {                                                                             \
        for (i = 0; i < n; i++) {                                                            \
            BP_SIMD                                                                          \
            for (j = j0; j < j1; j++) {                                                      \
                T t = dh[i * d + j] * (T)(dmask[i * d + j] != 0);                            \
                U keep = (U)rmask[i * d + j] - (U)1;                                         \
                dx[i * d + j] = FROM_BITS(BITS(t) & keep);                                   \
            }                                                                                \
        }                                                                                    \
    } else {                                                                                 \
        for (i = 0; i < n; i++) {                                                            \
            BP_SIMD                                                                          \
            for (j = j0; j < j1; j++) {                                                      \
                U keep = (U)rmask[i * d + j] - (U)1;                                         \
                dx[i * d + j] = FROM_BITS(BITS(dh[i * d + j]) & keep);                       \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    for (j = j0; j < j1; j++) { s_beta[j] = 0.0; s_gamma[j] = 0.0; s_std[j] = 0.0; }        \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) {                                                          \
            T t = dx[i * d + j];                                                             \
            s_beta[j] += (double)t;                                                          \
            s_gamma[j] += (double)(xn[i * d + j] * t);                                       \
            s_std[j] += (double)(((gamma[j] * t) * xc[i * d + j]) / (std[j] * std[j]));      \
        }                                                                                    \
    for (j = j0; j < j1; j++) {                                                              \
        dbeta[j] = (T)s_beta[j];                                                             \
        dgamma[j] = (T)s_gamma[j];                                                           \
        s_std[j] = (double)(((T)0.5 * -(T)s_std[j]) / std[j]);                               \
        s_beta[j] = 0.0;                                                                     \
    }                                                                                        \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) {                                                          \
            T t = (gamma[j] * dx[i * d + j]) / std[j] + (k2 * xc[i * d + j]) * (T)s_std[j];  \
            dx[i * d + j] = t;                                                               \
            s_beta[j] += (double)t;                                                          \
        }                                                                                    \
    for (j = j0; j < j1; j++) { s_gamma[j] = (double)((T)s_beta[j] / nb); s_db[j] = 0.0; }  \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) {                                                          \
            T t = dx[i * d + j] - (T)s_gamma[j];                                             \
            dx[i * d + j] = t;                                                               \
            s_db[j] += (double)t;                                                            \
        }                                                                                    \
    for (j = j0; j < j1; j++) db[j] = (T)s_db[j];                                            \
}

/* The book's weight-decay gradient dW + lam * W: two roundings, as NumPy's two ufuncs. */
#define BP_MLN_DECAY(NAME, T)                                                                \
BP_DISPATCH BP_MLN_NO_CONTRACT static void NAME(                                             \
    const T *restrict dW, const T *restrict W, T lam, T *restrict out, ptrdiff_t n)          \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T p = lam * W[i];                                                                    \
        out[i] = dW[i] + p;                                                                  \
    }                                                                                        \
}

BP_MLN_HIDDEN_FWD(bp_mln_hidden_fwd_f64, double, uint64_t, bp_bits_f64, bp_from_bits_f64, sqrt)
BP_MLN_HIDDEN_FWD(bp_mln_hidden_fwd_f32, float, uint32_t, bp_bits_f32, bp_from_bits_f32, sqrtf)
BP_MLN_HIDDEN_BWD(bp_mln_hidden_bwd_f64, double, uint64_t, bp_bits_f64, bp_from_bits_f64)
BP_MLN_HIDDEN_BWD(bp_mln_hidden_bwd_f32, float, uint32_t, bp_bits_f32, bp_from_bits_f32)
BP_MLN_DECAY(bp_mln_decay_f64, double)
BP_MLN_DECAY(bp_mln_decay_f32, float)

#endif /* BPFAST_MULTI_LAYER_NET_H */
