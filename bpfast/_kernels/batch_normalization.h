/* The loops of the BatchNormalization kernels (batch_normalization.pyx has the design), in C
 * for two reasons:
 *
 * - Divisions bound them at batch-100 sizes (one per element forward, two or three
 *   backward), and the baseline x86-64 build divides two doubles at a time while NumPy's
 *   SIMD loops (which the book's code uses) divide four with AVX2.  So every loop is
 *   compiled per ISA with simd.h's `target_clones` dispatch (BP_DISPATCH).
 * - The AVX2 clone has FMA, and GCC contracts `a * b + c` into one fused operation by
 *   default, which rounds once instead of twice: results would no longer be the book's
 *   (NumPy multiplies and adds in separate ufuncs).  Contraction is switched off for these
 *   functions (GCC: the optimize attribute; clang: the STDC pragma).
 *
 * Block functions work on columns [j0, j1) of row-major (n, d) arrays; `acc` is a double
 * scratch array of d (forward) or 3*d (backward) entries; xn and out may be NULL.  No two
 * arrays may overlap (`restrict`: without it GCC needs more run-time alias checks than it
 * is willing to emit and falls back to scalar loops; the kernels check it).
 */
#ifndef BPFAST_BATCH_NORMALIZATION_H
#define BPFAST_BATCH_NORMALIZATION_H

#include <math.h>
#include <stddef.h>

/* For BP_DISPATCH only; its loops are not used here (hence no unused-function warnings). */
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
#  define BP_NO_CONTRACT
#elif defined(__GNUC__)
#  define BP_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#  define BP_NO_CONTRACT
#endif

#define BP_BN_FWD_TRAIN(NAME, T, SQRT)                                                       \
BP_DISPATCH BP_NO_CONTRACT static void NAME(                                                 \
    const T *restrict x, T *restrict mean, T *restrict var, T *restrict std,                \
    T *restrict xc, T *restrict xn, const T *restrict gamma, const T *restrict beta,        \
    T *restrict out, double *restrict acc, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0,          \
    ptrdiff_t j1)                                                                            \
{                                                                                            \
    ptrdiff_t i, j;                                                                          \
    const T eps = (T)1e-6;                                                                   \
    /* Column sums from +0.0, rows in order: NumPy's sum(axis=0) of a C-order matrix. */     \
    for (j = j0; j < j1; j++) acc[j] = 0.0;                                                  \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) acc[j] += (double)x[i * d + j];                            \
    for (j = j0; j < j1; j++) { mean[j] = (T)(acc[j] / (double)n); acc[j] = 0.0; }           \
    /* xc = x - mean and the biased variance, the mean of xc**2. */                          \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) {                                                          \
            T v = x[i * d + j] - mean[j];                                                    \
            xc[i * d + j] = v;                                                               \
            acc[j] += (double)(v * v);                                                       \
        }                                                                                    \
    for (j = j0; j < j1; j++) {                                                              \
        var[j] = (T)(acc[j] / (double)n);                                                    \
        std[j] = SQRT((T)(var[j] + eps));                                                    \
    }                                                                                        \
    /* xn = xc / std, out = gamma * xn + beta: two roundings, as in the book. */            \
    if (xn && out) {                                                                         \
        for (i = 0; i < n; i++)                                                              \
            for (j = j0; j < j1; j++) {                                                      \
                T v = xc[i * d + j] / std[j];                                                \
                xn[i * d + j] = v;                                                           \
                out[i * d + j] = gamma[j] * v + beta[j];                                     \
            }                                                                                \
    } else if (out) {                                                                        \
        for (i = 0; i < n; i++)                                                              \
            for (j = j0; j < j1; j++)                                                        \
                out[i * d + j] = gamma[j] * (xc[i * d + j] / std[j]) + beta[j];              \
    } else if (xn) {                                                                         \
        for (i = 0; i < n; i++)                                                              \
            for (j = j0; j < j1; j++) xn[i * d + j] = xc[i * d + j] / std[j];                \
    }                                                                                        \
}

#define BP_BN_FWD_INFER(NAME, T)                                                             \
BP_DISPATCH BP_NO_CONTRACT static void NAME(                                                 \
    const T *restrict x, const double *restrict rmean, const double *restrict rstd,         \
    const double *restrict gamma, const double *restrict beta, double *restrict out,        \
    ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1)                                    \
{                                                                                            \
    ptrdiff_t i, j;                                                                          \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++)                                                            \
            out[i * d + j] = gamma[j] * (((double)x[i * d + j] - rmean[j]) / rstd[j])       \
                             + beta[j];                                                      \
}

/* acc: three sums per column, at acc[j], acc[d + j] and acc[2d + j]. */
#define BP_BN_BWD(NAME, T)                                                                   \
BP_DISPATCH BP_NO_CONTRACT static void NAME(                                                 \
    const T *restrict dout, const T *restrict xn, const T *restrict xc,                     \
    const T *restrict std, const T *restrict gamma, T k2, T nb, T *restrict dx,             \
    T *restrict dgamma, T *restrict dbeta, double *restrict acc, ptrdiff_t n, ptrdiff_t d,  \
    ptrdiff_t j0, ptrdiff_t j1)                                                              \
{                                                                                            \
    ptrdiff_t i, j;                                                                          \
    double *restrict s_beta = acc, *restrict s_gamma = acc + d;                              \
    double *restrict s_std = acc + 2 * d;                                                    \
    for (j = j0; j < j1; j++) { s_beta[j] = 0.0; s_gamma[j] = 0.0; s_std[j] = 0.0; }        \
    /* dbeta = sum(dout), dgamma = sum(xn * dout), sum((gamma * dout * xc) / std**2).       \
       Without a cached xn it is recomputed as xc / std, the forward's own operation. */    \
    if (xn) {                                                                                \
        for (i = 0; i < n; i++)                                                              \
            for (j = j0; j < j1; j++) {                                                      \
                T t = dout[i * d + j];                                                       \
                s_beta[j] += (double)t;                                                      \
                s_gamma[j] += (double)(xn[i * d + j] * t);                                   \
                s_std[j] += (double)(((gamma[j] * t) * xc[i * d + j]) / (std[j] * std[j]));  \
            }                                                                                \
    } else {                                                                                 \
        for (i = 0; i < n; i++)                                                              \
            for (j = j0; j < j1; j++) {                                                      \
                T t = dout[i * d + j];                                                       \
                s_beta[j] += (double)t;                                                      \
                s_gamma[j] += (double)((xc[i * d + j] / std[j]) * t);                        \
                s_std[j] += (double)(((gamma[j] * t) * xc[i * d + j]) / (std[j] * std[j]));  \
            }                                                                                \
    }                                                                                        \
    for (j = j0; j < j1; j++) {                                                              \
        dbeta[j] = (T)s_beta[j];                                                             \
        dgamma[j] = (T)s_gamma[j];                                                           \
        /* dvar = 0.5 * dstd / std, dstd = -sum(...): kept in s_std */                       \
        s_std[j] = (double)(((T)0.5 * -(T)s_std[j]) / std[j]);                               \
        s_beta[j] = 0.0;                                                                     \
    }                                                                                        \
    /* dxc = dxn / std + (2 / N) * xc * dvar; dmu = sum(dxc) in s_beta. */                   \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) {                                                          \
            T t = (gamma[j] * dout[i * d + j]) / std[j] + (k2 * xc[i * d + j]) * (T)s_std[j];\
            dx[i * d + j] = t;                                                               \
            s_beta[j] += (double)t;                                                          \
        }                                                                                    \
    /* dx = dxc - dmu / N */                                                                 \
    for (j = j0; j < j1; j++) s_gamma[j] = (double)((T)s_beta[j] / nb);                      \
    for (i = 0; i < n; i++)                                                                  \
        for (j = j0; j < j1; j++) dx[i * d + j] = dx[i * d + j] - (T)s_gamma[j];             \
}

BP_BN_FWD_TRAIN(bp_bn_fwd_train_f64, double, sqrt)
BP_BN_FWD_TRAIN(bp_bn_fwd_train_f32, float, sqrtf)
BP_BN_FWD_INFER(bp_bn_fwd_infer_f64, double)
BP_BN_FWD_INFER(bp_bn_fwd_infer_f32, float)
BP_BN_BWD(bp_bn_bwd_f64, double)
BP_BN_BWD(bp_bn_bwd_f32, float)

#endif
