"""The book's ``common/gradient.py``: numerical differentiation by central differences.

``numerical_gradient`` is the version every network of the book uses.  It perturbs ``x`` **in
place**, one element at a time, calls ``f(x)`` with the perturbed array, and restores the
element to its saved value (bit-exactly).  This is what lets a network's loss closure ignore
its argument (``lambda W: net.loss(x, t)``): the layers hold the very array being perturbed.

Since September 2019 the perturbed value is ``tmp_val + h`` in the array's own precision
(earlier copies wrote ``float(tmp_val) + h``; the same for float64).
"""

import numpy as np


def _numerical_gradient_1d(f, x):
    h = 1e-4
    grad = np.zeros_like(x)

    for idx in range(x.size):
        tmp_val = x[idx]
        x[idx] = tmp_val + h
        fxh1 = f(x)

        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)

        x[idx] = tmp_val

    return grad


def numerical_gradient_2d(f, X):
    # Chapter 4: each row of a 2-D X is a separate point.
    if X.ndim == 1:
        return _numerical_gradient_1d(f, X)
    else:
        grad = np.zeros_like(X)

        for idx, x in enumerate(X):
            grad[idx] = _numerical_gradient_1d(f, x)

        return grad


def numerical_gradient(f, x):
    h = 1e-4
    grad = np.zeros_like(x)

    # nditer visits the elements in memory order (C order for a C-contiguous x).
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = tmp_val + h
        fxh1 = f(x)

        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)

        x[idx] = tmp_val
        it.iternext()

    return grad
