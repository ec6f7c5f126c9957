# Declarations of the dispatched C loops in simd.h (see the comment at its top for why these
# loops are written in C rather than in Cython).
cdef extern from "simd.h" nogil:
    void bp_exp_array_f64(const double *x, double *out, Py_ssize_t n) noexcept
    void bp_exp_array_f32(const float *x, float *out, Py_ssize_t n) noexcept
    void bp_sigmoid_f64(const double *x, double *out, Py_ssize_t n) noexcept
    void bp_sigmoid_f32(const float *x, float *out, Py_ssize_t n) noexcept
    void bp_softmax_rows_f64(const double *x, double *y, Py_ssize_t rows, Py_ssize_t c) noexcept
    void bp_softmax_rows_f32(const float *x, float *y, Py_ssize_t rows, Py_ssize_t c) noexcept
    void bp_relu_fwd_f64(const double *x, double *out, unsigned char *mask, Py_ssize_t n) noexcept
    void bp_relu_fwd_f32(const float *x, float *out, unsigned char *mask, Py_ssize_t n) noexcept
    void bp_relu_bwd_f64(const double *dout, const unsigned char *mask, double *dx, Py_ssize_t n) noexcept
    void bp_relu_bwd_f32(const float *dout, const unsigned char *mask, float *dx, Py_ssize_t n) noexcept
    const char *bp_dispatch_name() noexcept
