"""Drop-in replacement for the book's ``common/util.py``.

``im2col`` and ``col2im`` run compiled kernels (:mod:`bpfast._kernels.im2col`) with the book's
signatures and values: the same row order (sample, output row, output column) and column
order (channel, filter row, filter column), float64 output whatever the input dtype, and
``col2im`` summing overlapping fields in the book's order (float64 results are bit-identical).
One difference: the book's ``col2im`` returns a non-contiguous view into a padded buffer,
bpfast returns a C-contiguous ``(N, C, H, W)`` array with the same values.

Inputs the kernels do not cover (other dtypes, non-arrays, geometries that give no output)
run the book's code (:mod:`bpfast.reference.util`), so the result or the exception is the
book's.  ``conv_output_size``, ``shuffle_dataset`` and ``smooth_curve`` are the book's own
functions: there is nothing to compile in them.
"""

import operator

import numpy as np

from bpfast.reference import util as _ref
from bpfast.reference.util import conv_output_size, shuffle_dataset, smooth_curve
from bpfast._kernels import im2col as _kim2col
from bpfast._threads import threads_for
from bpfast._validation import F32, F64, contiguous, float_array

__all__ = ["im2col", "col2im", "conv_output_size", "shuffle_dataset", "smooth_curve"]

# Output elements below which one thread is faster than a team (the kernels are memory
# bound; see tools/bench_conv.py).
_PAR_IM2COL = 1 << 17



def _by_dtype(fused):
    """The specialisations of a fused kernel by input dtype (skips the per-call dispatch)."""
    return {F32: fused["float"], F64: fused["double"]}


_IM2COL = _by_dtype(_kim2col.im2col)
_COL2IM = _by_dtype(_kim2col.col2im)


def _as_index(v):
    """``v`` as a Python int if it is an integer (Python or NumPy, not bool), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _window_geometry(h, w, filter_h, filter_w, stride, pad):
    """``(OH, OW, fh, fw, stride, pad)`` as ints when the kernels can run this geometry.

    ``None`` when an argument is not an integer, when ``filter < 1``, ``stride < 1`` or
    ``pad < 0``, or when there is no output (the filter is larger than the padded input):
    the caller then runs the book's code, which computes or raises what the book does.
    """
    fh, fw, s, p = _as_index(filter_h), _as_index(filter_w), _as_index(stride), _as_index(pad)
    if fh is None or fw is None or s is None or p is None:
        return None
    if fh < 1 or fw < 1 or s < 1 or p < 0 or h < 1 or w < 1:
        return None
    if h + 2 * p < fh or w + 2 * p < fw:
        return None
    return (h + 2 * p - fh) // s + 1, (w + 2 * p - fw) // s + 1, fh, fw, s, p


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Unroll the receptive fields of a batch into the rows of a matrix (book 7.4.3).

    Parameters
    ----------
    input_data : ndarray of shape (N, C, H, W)
        Any layout; not modified.
    filter_h, filter_w : int
    stride : int, default 1
    pad : int, default 0
        Zero padding on each side of H and W.

    Returns
    -------
    col : ndarray of float64, shape (N*OH*OW, C*filter_h*filter_w)
        C-contiguous.  ``OH = (H + 2*pad - filter_h) // stride + 1``, likewise OW.  Row
        ``(n*OH + i)*OW + j`` holds the field of output pixel (i, j) of sample n, in
        (channel, filter row, filter column) order.
    """
    x = float_array(input_data)
    if x is None or x.ndim != 4 or 0 in x.shape:
        return _ref.im2col(input_data, filter_h, filter_w, stride, pad)
    n, c, h, w = x.shape
    geometry = _window_geometry(h, w, filter_h, filter_w, stride, pad)
    if geometry is None:
        return _ref.im2col(input_data, filter_h, filter_w, stride, pad)
    oh, ow, fh, fw, s, p = geometry
    col = np.empty((n * oh * ow, c * fh * fw))
    _IM2COL[x.dtype](contiguous(x), fh, fw, s, p, col,
                     n_threads=threads_for(col.size, _PAR_IM2COL))
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Fold a column matrix back into a batch of images, summing overlaps (book 7.4.3).

    The adjoint of :func:`im2col` (upstream issues #27, #30): every entry of ``col`` is added
    to the pixel it was read from; entries that came from the padding are dropped.

    Parameters
    ----------
    col : ndarray with N*OH*OW*C*filter_h*filter_w elements
        Normally of shape (N*OH*OW, C*filter_h*filter_w); read in C order, as the book's
        ``reshape`` does.  Not modified.
    input_shape : tuple of 4 ints (N, C, H, W)
    filter_h, filter_w, stride, pad : int
        As given to :func:`im2col`.

    Returns
    -------
    img : ndarray of float64, shape (N, C, H, W)
        C-contiguous (the book returns a non-contiguous view with the same values).
    """
    cf = float_array(col)
    shape = _shape4(input_shape)
    if cf is None or shape is None or 0 in shape:
        return _ref.col2im(col, input_shape, filter_h, filter_w, stride, pad)
    n, c, h, w = shape
    geometry = _window_geometry(h, w, filter_h, filter_w, stride, pad)
    if geometry is None:
        return _ref.col2im(col, input_shape, filter_h, filter_w, stride, pad)
    oh, ow, fh, fw, s, p = geometry
    if cf.size != n * oh * ow * c * fh * fw:
        return _ref.col2im(col, input_shape, filter_h, filter_w, stride, pad)
    img = np.empty((n, c, h, w))
    _COL2IM[cf.dtype](contiguous(cf).reshape(n * oh * ow, c * fh * fw), fh, fw, s, p, img,
                      n_threads=threads_for(cf.size, _PAR_IM2COL))
    return img


def _shape4(shape):
    """``shape`` as a tuple of four non-negative ints, or None."""
    try:
        dims = tuple(shape)
    except TypeError:
        return None
    if len(dims) != 4:
        return None
    dims = tuple(_as_index(d) for d in dims)
    if any(d is None or d < 0 for d in dims):
        return None
    return dims
