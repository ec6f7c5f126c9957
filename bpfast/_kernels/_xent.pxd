# Row helpers of the softmax-with-loss kernels, shared by softmax_with_loss.pyx (the layer)
# and two_layer_net.pyx (the network's fused step), so both compute the loss the same way.

from cython cimport floating
from libc.math cimport log, logf

# Label indices as NumPy hands them over: uint8 (the IDX files), intc, and intp/int64.
ctypedef fused label_t:
    unsigned char
    int
    long

# One-hot targets, in either float precision independently of the logits'.
ctypedef fused target_t:
    float
    double


cdef inline double log_picked(floating p) noexcept nogil:
    # log(y_t + 1e-7) in the working precision, as the book computes it.
    if floating is float:
        return logf(p + <float>1e-7)
    else:
        return log(p + 1e-7)


cdef inline Py_ssize_t argmax_row(const target_t *t, Py_ssize_t c) noexcept nogil:
    # np.argmax semantics: the first maximum, or the first NaN if there is one.
    cdef Py_ssize_t j, best = 0
    cdef target_t v, m = t[0]
    if m != m:
        return 0
    for j in range(1, c):
        v = t[j]
        if v != v:
            return j
        if v > m:
            m = v
            best = j
    return best
