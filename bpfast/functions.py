"""Drop-in replacements for the book's ``common/functions.py``.

``sigmoid`` and ``softmax`` run compiled kernels for float32/float64 arrays; everything else
is the book's NumPy code from :mod:`bpfast.reference.functions` (those functions are either
already a single NumPy call, like ``relu``, or not on any hot path).
"""

import numpy as np

from bpfast._kernels import sigmoid as _ksigmoid
from bpfast._kernels import softmax_with_loss as _ksoftmax
from bpfast._threads import threads_for
from bpfast._validation import F32, F64, contiguous, float_array
from bpfast.layers import _PAR_EXP  # the layers' thread threshold (see there why)
from bpfast.reference.functions import (
    cross_entropy_error,
    identity_function,
    mean_squared_error,
    relu,
    relu_grad,
    step_function,
    sum_squared_error,
)

__all__ = [
    "identity_function",
    "step_function",
    "sigmoid",
    "sigmoid_grad",
    "relu",
    "relu_grad",
    "softmax",
    "sum_squared_error",
    "mean_squared_error",
    "cross_entropy_error",
    "softmax_loss",
]

_SIGMOID = {F32: _ksigmoid.sigmoid_forward["float"], F64: _ksigmoid.sigmoid_forward["double"]}
_SOFTMAX = {F32: _ksoftmax.softmax_forward["float"], F64: _ksoftmax.softmax_forward["double"]}


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``.

    Parameters
    ----------
    x : array_like

    Returns
    -------
    ndarray
        Same shape; float32 stays float32.  Very negative inputs give 0.0 without NumPy's
        overflow warning.  Other dtypes follow the book (NumPy) exactly.
    """
    if float_array(x) is None or x.ndim == 0:  # 0-d: NumPy returns a scalar, so does the book
        from bpfast.reference.functions import sigmoid as ref_sigmoid

        return ref_sigmoid(x)
    out = np.empty(x.shape, x.dtype)
    _SIGMOID[x.dtype](contiguous(x).reshape(-1), out.reshape(-1),
                      n_threads=threads_for(x.size, _PAR_EXP))
    return out


def sigmoid_grad(x):
    """Derivative of the sigmoid at the pre-activation ``x`` (not at its output)."""
    s = sigmoid(x)
    return (1.0 - s) * s


def softmax(x):
    """Softmax over the last axis, shifted by the row maximum.

    Parameters
    ----------
    x : array_like of shape (..., C)

    Returns
    -------
    ndarray of the same shape
        Rows containing +inf or NaN give NaN rows, as in the book.
    """
    if float_array(x) is None or x.ndim == 0 or x.size == 0:
        from bpfast.reference.functions import softmax as ref_softmax

        return ref_softmax(x)
    x2 = contiguous(x).reshape(-1, x.shape[-1])
    y = np.empty(x2.shape, x.dtype)
    _SOFTMAX[x.dtype](x2, y, n_threads=threads_for(x.size, _PAR_EXP))
    return y.reshape(x.shape)


def softmax_loss(X, t):
    """``cross_entropy_error(softmax(X), t)``."""
    return cross_entropy_error(softmax(X), t)
