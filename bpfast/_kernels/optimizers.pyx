# distutils: extra_compile_args = -fno-math-errno -ffp-contract=off
"""Kernels of the optimizers (``bpfast.optimizers``; the book's ``common/optimizer.py``).

Each kernel is the book's update of one parameter array, fused into a single pass: the book's
NumPy statements touch every element 3-8 times and allocate a temporary per operation
(``lr * g``, ``g * g``, ``np.sqrt(h)``, ...); here every element is read and written once.
The loops are in ``optimizers.h``, compiled per ISA with run-time dispatch.

Bit-exactness.  Every operation is the book's, in the book's order, in the book's precision,
so results are bit-identical to NumPy's for float64 and float32:

* hyperparameters arrive as C doubles and are rounded to the array's precision once, as NumPy
  does with a Python float (a "weak" scalar, NEP 50) -- the Python layer only sends
  hyperparameters for which that holds;
* scalar sub-expressions the book evaluates in Python (``momentum * momentum``,
  ``(1 + momentum) * lr``, ``1 - decay_rate``, Adam's ``lr_t``) are evaluated by the caller in
  Python, exactly as the book does;
* Adam's ``lr_t`` is a ``numpy.float64`` in the book, so for float32 parameters the last
  statement runs in double and is rounded to float32 on the store, as NumPy's ``-=`` does;
* floating-point contraction is off (``-ffp-contract=off`` above, and a pragma in
  ``optimizers.h``), so the AVX2/AVX-512 clones never fuse ``a - b * c`` into one FMA
  rounding; GCC does that by default whenever the target has FMA (verified: 8 FMAs in a
  test loop without the flag, 0 with it).

``-fno-math-errno`` (first line) only stops ``sqrt`` of a negative number from setting C's
``errno``; the value is NaN either way, as NumPy's.  Without it GCC keeps a scalar libm call
per element and cannot vectorise the square root (GCC 12 ignores ``no-math-errno`` in an
``optimize`` pragma, hence the flag).  Both flags are GCC/Clang spellings; MSVC ignores
unknown options with a warning.

Invariants (checked by the Python layer, lengths again here): all arrays are 1-D views of
C-contiguous (or all F-contiguous) arrays of the same shape and dtype that do not overlap.
"""
from cython.parallel cimport prange
from cython cimport floating

from bpfast._kernels._parallel cimport block_start


cdef extern from "optimizers.h" nogil:
    void bp_sgd_f64(double *p, const double *g, double lr, Py_ssize_t n) noexcept
    void bp_sgd_f32(float *p, const float *g, float lr, Py_ssize_t n) noexcept
    void bp_momentum_f64(double *p, double *v, const double *g, double mu, double lr,
                         Py_ssize_t n) noexcept
    void bp_momentum_f32(float *p, float *v, const float *g, float mu, float lr,
                         Py_ssize_t n) noexcept
    void bp_nesterov_f64(double *p, double *v, const double *g, double mm, double c,
                         double mu, double lr, Py_ssize_t n) noexcept
    void bp_nesterov_f32(float *p, float *v, const float *g, float mm, float c, float mu,
                         float lr, Py_ssize_t n) noexcept
    void bp_adagrad_f64(double *p, double *h, const double *g, double lr, double eps,
                        Py_ssize_t n) noexcept
    void bp_adagrad_f32(float *p, float *h, const float *g, float lr, float eps,
                        Py_ssize_t n) noexcept
    void bp_rmsprop_f64(double *p, double *h, const double *g, double decay, double c,
                        double lr, double eps, Py_ssize_t n) noexcept
    void bp_rmsprop_f32(float *p, float *h, const float *g, float decay, float c, float lr,
                        float eps, Py_ssize_t n) noexcept
    void bp_adam_f64(double *p, double *m, double *v, const double *g, double c1, double c2,
                     double lr_t, double eps, Py_ssize_t n) noexcept
    void bp_adam_f32(float *p, float *m, float *v, const float *g, float c1, float c2,
                     double lr_t, float eps, Py_ssize_t n) noexcept


# ------------------------------------------------------------------------------ primitives
# One per optimizer, dispatching on the dtype to the loops of optimizers.h.

cdef inline void _sgd(floating *p, const floating *g, floating lr, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_sgd_f32(p, g, lr, n)
    else:
        bp_sgd_f64(p, g, lr, n)


cdef inline void _momentum(floating *p, floating *v, const floating *g, floating mu,
                           floating lr, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_momentum_f32(p, v, g, mu, lr, n)
    else:
        bp_momentum_f64(p, v, g, mu, lr, n)


cdef inline void _nesterov(floating *p, floating *v, const floating *g, floating mm,
                           floating c, floating mu, floating lr, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_nesterov_f32(p, v, g, mm, c, mu, lr, n)
    else:
        bp_nesterov_f64(p, v, g, mm, c, mu, lr, n)


cdef inline void _adagrad(floating *p, floating *h, const floating *g, floating lr,
                          floating eps, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_adagrad_f32(p, h, g, lr, eps, n)
    else:
        bp_adagrad_f64(p, h, g, lr, eps, n)


cdef inline void _rmsprop(floating *p, floating *h, const floating *g, floating decay,
                          floating c, floating lr, floating eps, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_rmsprop_f32(p, h, g, decay, c, lr, eps, n)
    else:
        bp_rmsprop_f64(p, h, g, decay, c, lr, eps, n)


cdef inline void _adam(floating *p, floating *m, floating *v, const floating *g, floating c1,
                       floating c2, double lr_t, floating eps, Py_ssize_t n) noexcept nogil:
    if floating is float:
        bp_adam_f32(p, m, v, g, c1, c2, lr_t, eps, n)
    else:
        bp_adam_f64(p, m, v, g, c1, c2, lr_t, eps, n)


# ------------------------------------------------------------------------------ def kernels

cdef int _check(str name, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b=-1,
                Py_ssize_t c=-1) except -1:
    if a != n or (b >= 0 and b != n) or (c >= 0 and c != n):
        raise ValueError(f"{name}: array lengths differ ({n}, {a}, {b}, {c})")
    return 0


def sgd_update(floating[::1] p not None,        # IN/OUT: parameter
               const floating[::1] g not None,  # IN: gradient
               double lr,
               int n_threads=1):
    """``p -= lr * g`` (``lr`` rounded to p's precision)."""
    cdef Py_ssize_t n = p.shape[0], parts = max(n_threads, 1), q, lo, hi
    cdef floating lr_ = <floating>lr
    _check("sgd_update", n, g.shape[0])
    if n == 0:
        return
    if parts == 1:
        # Not through prange: even a one-thread OpenMP region costs ~1.5 us per call here.
        with nogil:
            _sgd(&p[0], &g[0], lr_, n)
        return
    for q in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, q)
        hi = block_start(n, parts, q + 1)
        if hi > lo:
            _sgd(&p[lo], &g[lo], lr_, hi - lo)


def momentum_update(floating[::1] p not None,        # IN/OUT: parameter
                    floating[::1] v not None,        # IN/OUT: velocity
                    const floating[::1] g not None,  # IN: gradient
                    double momentum, double lr,
                    int n_threads=1):
    """``v = momentum * v - lr * g; p += v`` (v updated in place)."""
    cdef Py_ssize_t n = p.shape[0], parts = max(n_threads, 1), q, lo, hi
    cdef floating mu_ = <floating>momentum, lr_ = <floating>lr
    _check("momentum_update", n, v.shape[0], g.shape[0])
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _momentum(&p[0], &v[0], &g[0], mu_, lr_, n)
        return
    for q in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, q)
        hi = block_start(n, parts, q + 1)
        if hi > lo:
            _momentum(&p[lo], &v[lo], &g[lo], mu_, lr_, hi - lo)


def nesterov_update(floating[::1] p not None,        # IN/OUT: parameter
                    floating[::1] v not None,        # IN/OUT: velocity
                    const floating[::1] g not None,  # IN: gradient
                    double momentum_sq, double step, double momentum, double lr,
                    int n_threads=1):
    """``p += momentum_sq * v; p -= step * g; v *= momentum; v -= lr * g``.

    ``momentum_sq = momentum * momentum`` and ``step = (1 + momentum) * lr`` are computed by
    the caller in Python floats, as the book's expressions do.
    """
    cdef Py_ssize_t n = p.shape[0], parts = max(n_threads, 1), q, lo, hi
    cdef floating mm_ = <floating>momentum_sq, c_ = <floating>step
    cdef floating mu_ = <floating>momentum, lr_ = <floating>lr
    _check("nesterov_update", n, v.shape[0], g.shape[0])
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _nesterov(&p[0], &v[0], &g[0], mm_, c_, mu_, lr_, n)
        return
    for q in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, q)
        hi = block_start(n, parts, q + 1)
        if hi > lo:
            _nesterov(&p[lo], &v[lo], &g[lo], mm_, c_, mu_, lr_, hi - lo)


def adagrad_update(floating[::1] p not None,        # IN/OUT: parameter
                   floating[::1] h not None,        # IN/OUT: sum of squared gradients
                   const floating[::1] g not None,  # IN: gradient
                   double lr, double eps,
                   int n_threads=1):
    """``h += g * g; p -= lr * g / (sqrt(h) + eps)``."""
    cdef Py_ssize_t n = p.shape[0], parts = max(n_threads, 1), q, lo, hi
    cdef floating lr_ = <floating>lr, eps_ = <floating>eps
    _check("adagrad_update", n, h.shape[0], g.shape[0])
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _adagrad(&p[0], &h[0], &g[0], lr_, eps_, n)
        return
    for q in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, q)
        hi = block_start(n, parts, q + 1)
        if hi > lo:
            _adagrad(&p[lo], &h[lo], &g[lo], lr_, eps_, hi - lo)


def rmsprop_update(floating[::1] p not None,        # IN/OUT: parameter
                   floating[::1] h not None,        # IN/OUT: running mean of g * g
                   const floating[::1] g not None,  # IN: gradient
                   double decay, double one_minus_decay, double lr, double eps,
                   int n_threads=1):
    """``h *= decay; h += one_minus_decay * g * g; p -= lr * g / (sqrt(h) + eps)``."""
    cdef Py_ssize_t n = p.shape[0], parts = max(n_threads, 1), q, lo, hi
    cdef floating d_ = <floating>decay, c_ = <floating>one_minus_decay
    cdef floating lr_ = <floating>lr, eps_ = <floating>eps
    _check("rmsprop_update", n, h.shape[0], g.shape[0])
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _rmsprop(&p[0], &h[0], &g[0], d_, c_, lr_, eps_, n)
        return
    for q in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, q)
        hi = block_start(n, parts, q + 1)
        if hi > lo:
            _rmsprop(&p[lo], &h[lo], &g[lo], d_, c_, lr_, eps_, hi - lo)


def adam_update(floating[::1] p not None,        # IN/OUT: parameter
                floating[::1] m not None,        # IN/OUT: first moment
                floating[::1] v not None,        # IN/OUT: second moment
                const floating[::1] g not None,  # IN: gradient
                double one_minus_beta1, double one_minus_beta2, double lr_t, double eps,
                int n_threads=1):
    """``m += c1 * (g - m); v += c2 * (g * g - v); p -= lr_t * m / (sqrt(v) + eps)``.

    ``lr_t`` stays a double: the last statement runs in double also for float32 ``p``.
    """
    cdef Py_ssize_t n = p.shape[0], parts = max(n_threads, 1), q, lo, hi
    cdef floating c1_ = <floating>one_minus_beta1, c2_ = <floating>one_minus_beta2
    cdef floating eps_ = <floating>eps
    _check("adam_update", n, m.shape[0], v.shape[0], g.shape[0])
    if n == 0:
        return
    if parts == 1:
        with nogil:
            _adam(&p[0], &m[0], &v[0], &g[0], c1_, c2_, lr_t, eps_, n)
        return
    for q in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = block_start(n, parts, q)
        hi = block_start(n, parts, q + 1)
        if hi > lo:
            _adam(&p[lo], &m[lo], &v[lo], &g[lo], c1_, c2_, lr_t, eps_, hi - lo)
