"""Numerical gradients (the book's ``common/gradient.py``) and the gradient check of chapter 5.

``numerical_gradient(f, x)`` has the book's semantics exactly: central differences with
h = 1e-4; ``x`` is perturbed **in place**, one element at a time in memory order (C order for
a C-contiguous array), ``f`` is called with ``x`` itself (so a loss closure that ignores its
argument sees the perturbation through the layers that hold ``x``), ``f(x + h)`` first; every
element is restored bit-exactly; the result has ``x``'s dtype.  The cost is the 2 * x.size
calls of ``f``; what this version saves is only the book's per-element indexing overhead
(``np.nditer`` with ``multi_index``), by writing the precomputed perturbed values through an
integer view of ``x``.

``gradient_check`` is ``ch05/gradient_check.py`` as a function.
"""

import sys

import numpy as np

from bpfast.reference import gradient as _ref_gradient
from bpfast._validation import F32, F64

__all__ = ["numerical_gradient", "gradient_check"]

_BITS = {F32: np.dtype(np.uint32), F64: np.dtype(np.uint64)}


def numerical_gradient(f, x):
    """Gradient of ``f`` at ``x`` by central differences, perturbing ``x`` in place.

    Parameters
    ----------
    f : callable
        Called as ``f(x)`` 2 * x.size times; returns a scalar.
    x : ndarray of any shape
        Perturbed element by element (``x[i] + h``, then ``x[i] - h``, in x's precision) and
        restored bit-exactly, also when ``f`` raises.

    Returns
    -------
    grad : ndarray of x's shape and dtype
        ``(f(x + h e_i) - f(x - h e_i)) / (2 h)`` with h = 1e-4.

    Notes
    -----
    float32 ``x`` gives only ~1e-3 accuracy (the perturbation is rounded to float32 while the
    denominator stays 2h) and integer ``x`` gives meaningless results -- both as in the book.
    Inputs other than writeable, C-contiguous float32/float64 ndarrays run the book's code.
    """
    bits_dtype = _BITS.get(x.dtype) if type(x) is np.ndarray else None
    if bits_dtype is None or not x.flags.c_contiguous or not x.flags.writeable or x.size == 0:
        return _ref_gradient.numerical_gradient(f, x)
    h = 1e-4
    grad = np.zeros_like(x)
    flat_grad = grad.reshape(-1)
    values = x.reshape(-1).copy()
    # The book writes `tmp_val + h` / `tmp_val - h` (x's precision) and restores `tmp_val`;
    # the same values, computed for all elements at once, are written through an integer
    # view of x so that every write (NaN payloads included) is bit-exact.
    bits = x.reshape(-1).view(bits_dtype)
    saved = values.view(bits_dtype).tolist()
    plus = (values + h).view(bits_dtype).tolist()
    minus = (values - h).view(bits_dtype).tolist()
    two_h = 2 * h
    i = 0
    try:
        for i in range(values.size):
            bits[i] = plus[i]
            fxh1 = f(x)
            bits[i] = minus[i]
            fxh2 = f(x)
            flat_grad[i] = (fxh1 - fxh2) / two_h
            bits[i] = saved[i]
    finally:
        bits[i] = saved[i]
    return grad


def gradient_check(network, x, t, *, file=None):
    """Compare backpropagation with numerical gradients, as the book's ``gradient_check.py``.

    Computes ``network.numerical_gradient(x, t)`` first, then ``network.gradient(x, t)``,
    and prints, for each parameter, ``key:mean_abs_difference`` (e.g. ``W1:3.7e-10``).

    Parameters
    ----------
    network : object
        Anything with ``numerical_gradient(x, t)`` and ``gradient(x, t)`` returning dicts
        with the same keys (``TwoLayerNet`` of bpfast or of the book).
    x : ndarray of shape (N, D)
        A small batch: the numerical gradient costs two losses per parameter (the book uses
        3 samples).
    t : ndarray
        Labels (N,) or one-hot targets (N, C).
    file : file-like, optional
        Where to print; ``sys.stdout`` (at call time) by default.

    Returns
    -------
    diffs : dict of str to numpy.float64
        The mean absolute difference per parameter, in the numerical gradient's key order.
    """
    out = sys.stdout if file is None else file
    grad_numerical = network.numerical_gradient(x, t)
    grad_backprop = network.gradient(x, t)

    diffs = {}
    for key in grad_numerical.keys():
        diff = np.average(np.abs(grad_backprop[key] - grad_numerical[key]))
        print(key + ":" + str(diff), file=out)
        diffs[key] = diff
    return diffs
