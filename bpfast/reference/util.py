"""The book's ``common/util.py``: ``im2col``/``col2im`` and small helpers, naive NumPy.

``im2col`` unrolls every receptive field of an NCHW batch into one row of a matrix, so that a
convolution becomes one matrix product (book section 7.4.3).  Row order: sample, output row,
output column.  Column order: channel, filter row, filter column.  The matrix is always
float64 (it is allocated with ``np.zeros``), whatever the input dtype.

``col2im`` is the *adjoint* of ``im2col``, not its inverse: where receptive fields overlap,
their contributions are summed (upstream issues #27 and #30), which is what backpropagation
needs.
"""

import numpy as np


def smooth_curve(x):
    """Smooth a loss curve for plotting: an 11-tap Kaiser window (beta 2), reflected ends.

    Parameters
    ----------
    x : array_like of shape (L,)

    Returns
    -------
    ndarray of shape (L,)
    """
    window_len = 11
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def shuffle_dataset(x, t):
    """Shuffle samples and labels together with one ``np.random.permutation`` draw.

    Parameters
    ----------
    x : ndarray of shape (N, D) or (N, C, H, W)
        Only 2-D and 4-D inputs are supported, as in the book.
    t : ndarray of shape (N, ...)

    Returns
    -------
    x, t : new arrays, permuted along axis 0
    """
    permutation = np.random.permutation(x.shape[0])
    x = x[permutation, :] if x.ndim == 2 else x[permutation, :, :, :]
    t = t[permutation]
    return x, t


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """Output size of a convolution, by *true* division (a float, as in the book)."""
    return (input_size + 2 * pad - filter_size) / stride + 1


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Unroll the receptive fields of a batch into the rows of a matrix.

    Parameters
    ----------
    input_data : ndarray of shape (N, C, H, W)
    filter_h, filter_w : int
    stride, pad : int
        Zero padding on each side of H and W.

    Returns
    -------
    col : ndarray of float64, shape (N*OH*OW, C*filter_h*filter_w)
        ``OH = (H + 2*pad - filter_h) // stride + 1``, likewise OW.
    """
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1

    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))

    # One strided copy per filter offset (y, x): all output positions at once.
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]

    col = col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)
    return col


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Fold a column matrix back into an image batch, summing overlapping fields.

    Parameters
    ----------
    col : ndarray of shape (N*OH*OW, C*filter_h*filter_w)
    input_shape : tuple (N, C, H, W)
    filter_h, filter_w, stride, pad : int
        As given to :func:`im2col`.

    Returns
    -------
    img : ndarray of float64, shape (N, C, H, W)
        A (non-contiguous) view of the central part of a padded buffer; the padding's
        contributions are dropped.
    """
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)

    # `stride - 1` extra rows/columns keep the strided slice ends inside the buffer
    # (upstream issue #30).
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]

    return img[:, :, pad:H + pad, pad:W + pad]
