/* Loops of the optimizers (optimizers.pyx), compiled per ISA with simd.h's run-time dispatch
 * (x86-64 baseline, AVX2, AVX-512) -- and still bit-identical to NumPy on every clone:
 *
 * - contraction is off (the pragma below, and -ffp-contract=off on optimizers.pyx's
 *   command line): the AVX2 and AVX-512 clones could otherwise fuse `a - b * c` into one
 *   FMA, which rounds once instead of twice and changes the last bit relative to the book's
 *   two NumPy operations;
 * - errno is off (-fno-math-errno, set by optimizers.pyx): `sqrt` of a negative number then
 *   does not set C's errno (the value is NaN either way, as NumPy's), which lets GCC use the
 *   vector square root instead of a scalar libm call per element;
 * - IEEE add, multiply, divide and square root are correctly rounded at every vector width,
 *   and nothing is reassociated (no -ffast-math), so every clone computes NumPy's bits.
 *
 * Each loop is the book's statements for one parameter array, in the book's order and
 * precision (see optimizers.pyx for the precision rules); the arrays never overlap (checked
 * in bpfast/optimizers.py), hence `restrict`.
 */
#ifndef BPFAST_OPTIMIZERS_H
#define BPFAST_OPTIMIZERS_H

#include "simd.h"

#if defined(__clang__)
#  pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#  pragma GCC push_options
#  pragma GCC optimize ("fp-contract=off")
#endif

/* p -= lr * g */
#define BP_SGD(NAME, T)                                                                       \
BP_DISPATCH static void NAME(T *restrict p, const T *restrict g, T lr, ptrdiff_t n)          \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];                               \
}
BP_SGD(bp_sgd_f64, double)
BP_SGD(bp_sgd_f32, float)

/* v = momentum * v - lr * g;  p += v */
#define BP_MOMENTUM(NAME, T)                                                                  \
BP_DISPATCH static void NAME(T *restrict p, T *restrict v, const T *restrict g, T mu, T lr,  \
                             ptrdiff_t n)                                                    \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T vi = mu * v[i] - lr * g[i];                                                        \
        v[i] = vi;                                                                           \
        p[i] = p[i] + vi;                                                                    \
    }                                                                                        \
}
BP_MOMENTUM(bp_momentum_f64, double)
BP_MOMENTUM(bp_momentum_f32, float)

/* p += (momentum * momentum) * v;  p -= ((1 + momentum) * lr) * g;  v *= momentum;
 * v -= lr * g  (mm and c are the book's scalar products, computed by the caller) */
#define BP_NESTEROV(NAME, T)                                                                  \
BP_DISPATCH static void NAME(T *restrict p, T *restrict v, const T *restrict g, T mm, T c,   \
                             T mu, T lr, ptrdiff_t n)                                        \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T gi = g[i], vi = v[i];                                                              \
        T pi = p[i] + mm * vi;                                                               \
        p[i] = pi - c * gi;                                                                  \
        vi = vi * mu;                                                                        \
        v[i] = vi - lr * gi;                                                                 \
    }                                                                                        \
}
BP_NESTEROV(bp_nesterov_f64, double)
BP_NESTEROV(bp_nesterov_f32, float)

/* h += g * g;  p -= lr * g / (sqrt(h) + eps) */
#define BP_ADAGRAD(NAME, T, SQRT)                                                             \
BP_DISPATCH static void NAME(T *restrict p, T *restrict h, const T *restrict g, T lr, T eps, \
                             ptrdiff_t n)                                                    \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T gi = g[i];                                                                         \
        T hi = h[i] + gi * gi;                                                               \
        h[i] = hi;                                                                           \
        p[i] = p[i] - (lr * gi) / (SQRT(hi) + eps);                                          \
    }                                                                                        \
}
BP_ADAGRAD(bp_adagrad_f64, double, sqrt)
BP_ADAGRAD(bp_adagrad_f32, float, sqrtf)

/* h *= decay;  h += (1 - decay) * g * g;  p -= lr * g / (sqrt(h) + eps) */
#define BP_RMSPROP(NAME, T, SQRT)                                                             \
BP_DISPATCH static void NAME(T *restrict p, T *restrict h, const T *restrict g, T decay,     \
                             T c, T lr, T eps, ptrdiff_t n)                                  \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T gi = g[i];                                                                         \
        T hi = h[i] * decay;                                                                 \
        hi = hi + (c * gi) * gi;                                                             \
        h[i] = hi;                                                                           \
        p[i] = p[i] - (lr * gi) / (SQRT(hi) + eps);                                          \
    }                                                                                        \
}
BP_RMSPROP(bp_rmsprop_f64, double, sqrt)
BP_RMSPROP(bp_rmsprop_f32, float, sqrtf)

/* m += (1 - beta1) * (g - m);  v += (1 - beta2) * (g * g - v);
 * p -= lr_t * m / (sqrt(v) + eps), in double: lr_t is a numpy.float64 in the book, so for
 * float32 parameters NumPy computes this statement in double and rounds on the store. */
#define BP_ADAM(NAME, T, SQRT)                                                                \
BP_DISPATCH static void NAME(T *restrict p, T *restrict m, T *restrict v,                    \
                             const T *restrict g, T c1, T c2, double lr_t, T eps,            \
                             ptrdiff_t n)                                                    \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        T gi = g[i];                                                                         \
        T mi = m[i] + c1 * (gi - m[i]);                                                      \
        T vi = v[i] + c2 * (gi * gi - v[i]);                                                 \
        m[i] = mi;                                                                           \
        v[i] = vi;                                                                           \
        p[i] = (T)((double)p[i] - (lr_t * (double)mi) / (double)(SQRT(vi) + eps));           \
    }                                                                                        \
}
BP_ADAM(bp_adam_f64, double, sqrt)
BP_ADAM(bp_adam_f32, float, sqrtf)

#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC pop_options
#endif

#endif /* BPFAST_OPTIMIZERS_H */
