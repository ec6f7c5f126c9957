"""Input checks shared by the drop-in layers: the one place that decides what a kernel sees.

A compiled kernel runs with bounds checks off, so everything it indexes with must be checked
before it is called.  The rule of the layers is: an input the kernels cover (a plain
``ndarray`` of float32 or float64 with the expected shape) goes to a kernel, after these
helpers made it C-contiguous; anything else goes to :mod:`bpfast.reference`, which gives the
book's result or raises the book's exception.  Where the book silently computes something
wrong (negative labels, labels of another batch size), these helpers raise instead.
"""

import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
#: dtypes with compiled kernels; every other dtype takes the reference path.
KERNEL_DTYPES = frozenset((F32, F64))

_LABEL_DTYPES = frozenset(np.dtype(d) for d in (np.uint8, np.intc, np.int_))


class LabelError(IndexError, ValueError):
    """Labels or targets that do not fit the logits.

    A subclass of both ``IndexError`` (what the book's fancy indexing raises for a label out
    of range) and ``ValueError`` (a wrong shape), so code written against either still works,
    like NumPy's ``AxisError``.
    """


def float_array(x):
    """``x`` if it is a plain ndarray of a kernel dtype, else ``None`` (use the reference)."""
    if type(x) is np.ndarray and x.dtype in KERNEL_DTYPES:
        return x
    return None


def contiguous(x):
    """``x`` itself when C-contiguous, else a C-contiguous copy (any layout, any strides)."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def flat(x):
    """A 1-D view of a C-contiguous array, for the elementwise kernels."""
    return x.reshape(-1)


def labels_for(t, n, c):
    """Class labels ``t`` as a C-contiguous integer vector of length ``n`` for the kernels.

    Accepts integer arrays of shape ``(n,)`` and also ``(n, 1)`` columns (the book silently
    broadcasts those into an ``(n, n)`` pick).  The range ``[0, c)`` is checked by the kernel
    itself, in the same pass that reads the labels.

    Raises
    ------
    LabelError
        If ``t`` is not an integer array or has another batch size.
    """
    if t.dtype.kind not in "iu":
        raise LabelError(
            f"labels must be an integer array (class indices) or one-hot targets of shape "
            f"({n}, {c}); got dtype {t.dtype} and shape {t.shape}"
        )
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1 or t.shape[0] != n:
        raise LabelError(
            f"labels of shape {t.shape} do not fit logits of shape ({n}, {c}): expected "
            f"({n},) class indices or ({n}, {c}) one-hot targets"
        )
    if t.dtype not in _LABEL_DTYPES:
        # int8/int16/uint16/... and big-endian integers: values, not bits, are what matter.
        if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size and t.max() > np.iinfo(np.int_).max:
            raise LabelError(f"label {t.max()} is out of range for {c} classes")
        return np.ascontiguousarray(t, dtype=np.int_)
    return contiguous(t)
