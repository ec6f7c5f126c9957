/* The loops of the Dropout kernels (dropout.pyx has the design), in C so that they are
 * compiled per ISA with simd.h's `target_clones` dispatch (BP_DISPATCH): the forward loop
 * writes a byte mask next to a float output, and GCC vectorises that double->byte narrowing
 * only from AVX2 up (the baseline clone is still branch-free).
 *
 * Values are NumPy's: x * 1.0 or x * 0.0 (so -x gives -0.0, inf and NaN give NaN where
 * dropped), and dout * mask likewise.  No argument may overlap another (`restrict`).
 */
#ifndef BPFAST_DROPOUT_H
#define BPFAST_DROPOUT_H

#include <stddef.h>

/* For BP_DISPATCH and BP_SIMD only; its loops are not used here. */
#if defined(__GNUC__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include "simd.h"
#if defined(__GNUC__)
#  pragma GCC diagnostic pop
#endif

#define BP_DROPOUT_FWD(NAME, T)                                                              \
BP_DISPATCH static void NAME(const T *restrict x, const double *restrict u, double ratio,   \
                             T *restrict out, unsigned char *restrict mask, ptrdiff_t n)     \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                      \
        int keep = u[i] > ratio;                                                             \
        mask[i] = (unsigned char)keep;                                                       \
        out[i] = x[i] * (T)keep;                                                             \
    }                                                                                        \
}
BP_DROPOUT_FWD(bp_dropout_fwd_f64, double)
BP_DROPOUT_FWD(bp_dropout_fwd_f32, float)

#define BP_DROPOUT_BWD(NAME, T)                                                              \
BP_DISPATCH static void NAME(const T *restrict dout, const unsigned char *restrict mask,    \
                             T *restrict dx, ptrdiff_t n)                                    \
{                                                                                            \
    BP_SIMD                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) dx[i] = dout[i] * (T)(mask[i] != 0);                   \
}
BP_DROPOUT_BWD(bp_dropout_bwd_f64, double)
BP_DROPOUT_BWD(bp_dropout_bwd_f32, float)

#endif /* BPFAST_DROPOUT_H */
