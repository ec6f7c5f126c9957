"""Drop-in replacements for the book's ``common/layers.py`` (and ``ch05/layer_naive.py``).

``from bpfast.layers import *`` stands in for ``from common.layers import *``: the same class
names, constructor arguments, methods, return values and public attributes, with compiled
kernels behind them.  Each class subclasses its :mod:`bpfast.reference` counterpart and has
one rule: an input the kernels cover (a plain ``ndarray`` of float32/float64, any layout, of a
shape the book's code is written for) is validated, made C-contiguous and handed to a kernel;
anything else runs the book's own NumPy code, so the result -- or the exception -- is the
book's.

Where bpfast deliberately differs from the book (each is listed in the README's
compatibility table): ``Relu.backward`` on a read-only ``dout`` returns a new array instead of
raising; ``SoftmaxWithLoss`` raises for negative labels and for labels of another batch size
(the book wraps or broadcasts them silently), accepts ``(N, 1)`` label columns, and scales the
gradient of a single 1-D sample by 1 (the book divides by the number of classes).
"""

import numpy as np

from bpfast import reference as _ref
from bpfast._kernels import affine as _kaffine
from bpfast._kernels import batch_normalization as _kbn
from bpfast._kernels import dropout as _kdropout
from bpfast._kernels import im2col as _kim2col
from bpfast._kernels import pooling as _kpool
from bpfast._kernels import relu as _krelu
from bpfast._kernels import sigmoid as _ksigmoid
from bpfast._kernels import softmax_with_loss as _ksoftmax
from bpfast._threads import threads_for
from bpfast._validation import (
    F32,
    F64,
    KERNEL_DTYPES,
    LabelError,
    contiguous,
    float_array,
    labels_for,
)
from bpfast.util import _as_index, _window_geometry

__all__ = ["AddLayer", "MulLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "Dropout", "BatchNormalization", "Convolution", "Pooling"]

# The computational-graph demo layers of section 5.4 work on Python scalars; there is
# nothing to compile.
AddLayer = _ref.AddLayer
MulLayer = _ref.MulLayer


def _spec(fused, *names):
    """The specialisations of a fused kernel by dtype (skips the per-call fused dispatch)."""
    return {
        dtype: fused["|".join([ctype, *names])]
        for dtype, ctype in ((F32, "float"), (F64, "double"))
    }


# Below these sizes (elements) the kernels run on one thread.  Measured with
# `python benchmarks/run.py --threshold-sweep` on the shared 2-core machine this was tuned on:
# at load averages from 0.4 to 6, a second thread never paid below 2**22 elements (typically
# 10-50x slower at 2**10..2**14 elements, still 1.1-3.7x slower at 2**18), and at 2**22 it
# paid for a few kernels and lost for the others.  A thread team is also what makes the next
# np.dot slow (OpenBLAS's threads find a core spinning, see bpfast/_kernels/__init__.py),
# so the layers of a TwoLayerNet-sized step (at most ~10**6 elements) stay single-threaded,
# and only arrays from 4 Mi elements -- milliseconds of work per call -- are split.
_PAR_ELEMENTWISE = 1 << 22
_PAR_EXP = 1 << 22
_PAR_ROWS = 1 << 22

_BOOL = np.dtype(np.bool_)
_RELU_FWD = _spec(_krelu.relu_forward)
_RELU_BWD = _spec(_krelu.relu_backward)
_SIGMOID_FWD = _spec(_ksigmoid.sigmoid_forward)
_SIGMOID_BWD = _spec(_ksigmoid.sigmoid_backward)
_BIAS_ADD = _spec(_kaffine.bias_add)
_COLUMN_SUM = _spec(_kaffine.column_sum)
_XENT_FWD = {
    (dt, lt): _ksoftmax.softmax_xent_forward[f"{c}|{l}"]
    for dt, c in ((F32, "float"), (F64, "double"))
    for lt, l in ((np.dtype(np.uint8), "unsigned char"), (np.dtype(np.intc), "int"),
                  (np.dtype(np.int_), "long"))
}
_XENT_BWD = {
    (dt, lt): _ksoftmax.softmax_xent_backward[f"{c}|{l}"]
    for dt, c in ((F32, "float"), (F64, "double"))
    for lt, l in ((np.dtype(np.uint8), "unsigned char"), (np.dtype(np.intc), "int"),
                  (np.dtype(np.int_), "long"))
}
_XENT_FWD_ONEHOT = {
    (dt, tt): _ksoftmax.softmax_xent_forward_onehot[f"{c}|{tc}"]
    for dt, c in ((F32, "float"), (F64, "double"))
    for tt, tc in ((F32, "float"), (F64, "double"))
}
_XENT_BWD_ONEHOT = _spec(_ksoftmax.softmax_xent_backward_onehot)


class Relu(_ref.Relu):
    """Rectified linear unit, ``max(0, x)``, as the book's ``Relu`` (section 5.5.1).

    Attributes
    ----------
    mask : ndarray of bool, same shape as the last forward input
        ``x <= 0``: where the gradient is cut.  NaN is not masked (it passes through).
    """

    def forward(self, x):
        """Apply ReLU.

        Parameters
        ----------
        x : ndarray of any shape
            Not modified.

        Returns
        -------
        out : ndarray, same shape and dtype as x
            A new array: ``x`` with every entry ``<= 0`` (and -0.0) replaced by +0.0.
        """
        # The kernel table doubles as the dtype check (its keys are the kernel dtypes): at
        # 100 x 50 every Python-level step of this method is a measurable part of the call.
        if type(x) is not np.ndarray or (kernel := _RELU_FWD.get(x.dtype)) is None:
            return super().forward(x)
        out = np.empty(x.shape, x.dtype)
        mask = np.empty(x.shape, np.bool_)
        # ravel(): a view of a C-contiguous array, a C-order copy of any other layout.
        kernel(x.ravel(), out.ravel(), mask.ravel().view(np.uint8),
               n_threads=threads_for(x.size, _PAR_ELEMENTWISE))
        self.mask = mask
        return out

    def backward(self, dout):
        """Zero the gradient where the input was ``<= 0``.

        Parameters
        ----------
        dout : ndarray, same shape as the last forward input
            Upstream gradient.  As in the book it is zeroed **in place** and returned
            (``dx is dout``).  A read-only ``dout`` (the book raises) gets a new array.

        Returns
        -------
        dx : ndarray
            ``dout`` itself, or a new array when ``dout`` is read-only.
        """
        mask = self.mask
        if (
            type(dout) is not np.ndarray
            or (kernel := _RELU_BWD.get(dout.dtype)) is None
            or type(mask) is not np.ndarray
            or mask.dtype != _BOOL
            or mask.shape != dout.shape
        ):
            return super().backward(dout)
        nt = threads_for(dout.size, _PAR_ELEMENTWISE)
        mask_bytes = mask.ravel().view(np.uint8)
        flags = dout.flags
        if not flags.writeable:
            dx = np.empty(dout.shape, dout.dtype)
            kernel(dout.ravel(), mask_bytes, dx.ravel(), n_threads=nt)
            return dx
        if flags.c_contiguous:
            flat = dout.ravel()
            kernel(flat, mask_bytes, flat, n_threads=nt)
        else:
            # Strided or Fortran-order: a masked store in NumPy keeps the in-place contract
            # without a gather/scatter round trip.
            np.copyto(dout, 0, where=mask)
        return dout


class Sigmoid(_ref.Sigmoid):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, as the book's ``Sigmoid`` (section 5.5.2).

    Attributes
    ----------
    out : ndarray
        The last forward output -- the very array ``forward`` returned, as in the book.
    """

    def forward(self, x):
        """Apply the sigmoid.

        Parameters
        ----------
        x : ndarray of any shape
            Not modified.

        Returns
        -------
        out : ndarray, same shape and dtype as x
            Also stored as ``self.out``.  Very negative inputs give exactly 0.0, as in the
            book, but without NumPy's overflow warning.
        """
        # 0-d: NumPy's ufuncs return a scalar there, not an array; the book's code does that.
        if type(x) is not np.ndarray or (kernel := _SIGMOID_FWD.get(x.dtype)) is None or x.ndim == 0:
            return super().forward(x)
        out = np.empty(x.shape, x.dtype)
        kernel(x.ravel(), out.ravel(), n_threads=threads_for(x.size, _PAR_EXP))
        self.out = out
        return out

    def backward(self, dout):
        """Gradient ``dout * (1 - out) * out``.

        Parameters
        ----------
        dout : ndarray, same shape as ``self.out``
            Not modified.

        Returns
        -------
        dx : ndarray
            A new array, of the dtype NumPy's promotion gives ``dout`` and ``out``.
        """
        out = self.out
        if (
            type(dout) is not np.ndarray
            or (kernel := _SIGMOID_BWD.get(dout.dtype)) is None
            or type(out) is not np.ndarray
            or out.shape != dout.shape
            or dout.ndim == 0  # the book returns a NumPy scalar there
            # Mixed float32/float64: the book rounds (1.0 - out) in out's dtype before
            # promoting, which a kernel on up-cast operands would not reproduce.
            or out.dtype != dout.dtype
        ):
            return super().backward(dout)
        dx = np.empty(dout.shape, dout.dtype)
        kernel(dout.ravel(), out.ravel(), dx.ravel(),
               n_threads=threads_for(dout.size, _PAR_ELEMENTWISE))
        return dx


class Affine(_ref.Affine):
    """Fully connected layer ``x @ W + b``, as the book's ``Affine`` (section 5.6.2).

    Parameters
    ----------
    W : ndarray of shape (D, M)
    b : ndarray of shape (M,)
        Held by reference and read at every call, never copied: optimizers and
        ``numerical_gradient`` change them in place, and ``layer.W = other`` re-binds.

    Attributes
    ----------
    x : ndarray of shape (N, D)
        The last input, flattened to 2-D (a view of the caller's array where NumPy can).
    original_x_shape : tuple
        Shape of the last input; ``backward`` returns ``dx`` in this shape.
    dW : ndarray of shape (D, M)
    db : ndarray of shape (M,)
        Gradients of the last ``backward`` (new arrays at every call).
    """

    def forward(self, x):
        """Compute ``x.reshape(N, -1) @ W + b``.

        Parameters
        ----------
        x : ndarray of shape (N, ...)
            Everything after axis 0 is flattened in C order (a 1-D ``x`` is N samples of one
            feature, as in the book).

        Returns
        -------
        out : ndarray of shape (N, M)
            dtype by NumPy's promotion of x, W and b.
        """
        W, b = self.W, self.b
        if type(x) is not np.ndarray or x.ndim == 0 or type(W) is not np.ndarray:
            return super().forward(x)
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        out = np.dot(x, W)
        if (
            (bias_add := _BIAS_ADD.get(out.dtype)) is not None
            and type(b) is np.ndarray
            and b.ndim == 1
            and out.ndim == 2
            and b.shape[0] == out.shape[1]
            and out.flags.c_contiguous
            and (b.dtype == out.dtype or np.promote_types(b.dtype, out.dtype) == out.dtype)
        ):
            if b.dtype != out.dtype or not b.flags.c_contiguous:
                b = np.ascontiguousarray(b, dtype=out.dtype)
            bias_add(out, b, n_threads=threads_for(out.size, _PAR_ELEMENTWISE))
            return out
        return out + b

    def backward(self, dout):
        """Gradients of the last forward.

        Parameters
        ----------
        dout : ndarray of shape (N, M)
            Not modified.

        Returns
        -------
        dx : ndarray of the last input's shape
            ``dout @ W.T`` with the current ``W``.  Also sets ``self.dW = x.T @ dout`` and
            ``self.db = dout.sum(axis=0)`` (summed in double, also for float32).
        """
        W, x = self.W, self.x
        if (
            float_array(dout) is None
            or dout.ndim != 2
            or type(W) is not np.ndarray
            or W.ndim != 2
            or type(x) is not np.ndarray
            or x.ndim != 2
        ):
            return super().backward(dout)
        dx = np.dot(dout, W.T)
        self.dW = np.dot(x.T, dout)
        db = np.empty(dout.shape[1], dout.dtype)
        _COLUMN_SUM[dout.dtype](contiguous(dout), db,
                                n_threads=threads_for(dout.size, _PAR_ELEMENTWISE))
        self.db = db
        return dx.reshape(*self.original_x_shape)

    def _backward_params(self, dout):
        """``backward`` without ``dx``: only ``dW`` and ``db`` (same values), returns None.

        For the first layer of a network, whose input gradient nobody reads (the networks'
        ``gradient`` uses it; the book computes ``dx`` there and discards it).
        """
        W, x = self.W, self.x
        if (
            float_array(dout) is None
            or dout.ndim != 2
            or type(W) is not np.ndarray
            or W.ndim != 2
            or type(x) is not np.ndarray
            or x.ndim != 2
        ):
            self.backward(dout)
            return
        self.dW = np.dot(x.T, dout)
        db = np.empty(dout.shape[1], dout.dtype)
        _COLUMN_SUM[dout.dtype](contiguous(dout), db,
                                n_threads=threads_for(dout.size, _PAR_ELEMENTWISE))
        self.db = db


class SoftmaxWithLoss(_ref.SoftmaxWithLoss):
    """Softmax followed by the cross-entropy loss, as the book's ``SoftmaxWithLoss`` (5.6.3).

    Attributes
    ----------
    loss : numpy.float64 or numpy.float32
        The last loss: ``-mean(log(y[i, t_i] + 1e-7))`` (the book's 1e-7 inside the log).
    y : ndarray of shape (N, C)
        Softmax of the last logits.
    t : ndarray
        The last targets, the caller's object: labels ``(N,)`` or one-hot ``(N, C)``
        (detected as in the book, by ``t.size == y.size``).
    """

    def forward(self, x, t):
        """Softmax and mean cross-entropy.

        Parameters
        ----------
        x : ndarray of shape (N, C), or (C,) for one sample
            Logits.  Not modified.
        t : ndarray
            Integer class labels of shape (N,) (or (N, 1)), or one-hot targets of shape
            (N, C).  Labels outside ``[0, C)``, negative ones included, raise ``IndexError``.

        Returns
        -------
        loss : numpy scalar of x's dtype
        """
        xf = float_array(x)
        if xf is None or type(t) is not np.ndarray or x.ndim not in (1, 2) or x.size == 0:
            return super().forward(x, t)
        single = x.ndim == 1
        x2 = xf.reshape(1, -1) if single else xf
        n, c = x2.shape
        x2 = contiguous(x2)
        y = np.empty((n, c), x.dtype)
        nt = threads_for(x.size, _PAR_ROWS)
        if t.size == x.size:  # one-hot, detected by size alone as in the book
            t2 = t.reshape(1, -1) if single else t
            if t2.shape != (n, c):
                return super().forward(x, t)
            if t2.dtype in (F32, F64):
                loss = _XENT_FWD_ONEHOT[x.dtype, t2.dtype](x2, contiguous(t2), y, n_threads=nt)
            else:  # integer/bool one-hot: NumPy's own argmax, then the label kernel
                labels = t2.argmax(axis=1)
                loss = _XENT_FWD[x.dtype, labels.dtype](x2, labels, y, n_threads=nt)
        else:
            # A 0-d label is one sample's label, for (C,) logits and, as in the book's
            # fancy indexing, for a (1, C) batch.
            labels = labels_for(t.reshape(1) if n == 1 and t.ndim == 0 else t, n, c)
            loss = _XENT_FWD[x.dtype, labels.dtype](x2, labels, y, n_threads=nt)
        self.t = t
        self.y = y.reshape(c) if single else y
        self.loss = x.dtype.type(loss)
        return self.loss

    def backward(self, dout=1):
        """Gradient of the loss with respect to the logits; ``dout`` is ignored, as in the book.

        Returns
        -------
        dx : ndarray of the shape of ``self.y``
            ``(y - t) / N`` for one-hot targets, ``(y - onehot(t)) / N`` for labels; N is the
            batch size (1 for a single 1-D sample).  For a single sample with a one-hot row
            ``t`` of shape (1, C), ``dx`` has NumPy's broadcast shape (1, C), as in the book.
        """
        y, t = self.y, self.t
        if float_array(y) is None or type(t) is not np.ndarray or y.ndim not in (1, 2) or y.size == 0:
            return super().backward(dout)
        single = y.ndim == 1
        y2 = y.reshape(1, -1) if single else contiguous(y)
        n, c = y2.shape
        nt = threads_for(y.size, _PAR_ELEMENTWISE)
        if t.size == y.size:
            if single and t.shape not in ((c,), (1, c)):
                return super().backward(dout)  # e.g. (C, 1): the book's broadcasting
            t2 = t.reshape(1, -1) if single else t
            if t2.shape != (n, c) or t2.dtype != y.dtype:
                if single:  # mixed dtypes: NumPy's formula, with the batch size of one sample
                    return (y - t) / 1
                return super().backward(dout)
            dx = np.empty((n, c), y.dtype)
            _XENT_BWD_ONEHOT[y.dtype](y2, contiguous(t2), dx, n_threads=nt)
            # One sample: (C,) targets give (C,), a (1, C) row gives (1, C) as in the book.
            return dx.reshape(t.shape) if single else dx
        else:
            labels = labels_for(t.reshape(1) if single and t.ndim == 0 else t, n, c)
            dx = np.empty((n, c), y.dtype)
            _XENT_BWD[y.dtype, labels.dtype](y2, labels, dx, n_threads=nt)
        return dx.reshape(c) if single else dx


# Re-exported for `except bpfast.layers.LabelError`.
LabelError = LabelError


# ---------------------------------------------------------------------------------------
# Chapters 6-7: Dropout, BatchNormalization, Convolution, Pooling (book common/layers.py).
# ---------------------------------------------------------------------------------------
# Thresholds (elements) below which one thread beats a team; see tools/bench_conv.py.
_PAR_WINDOWS = 1 << 17
_PAR_COLUMNS = 1 << 16

_DROPOUT_FWD = _spec(_kdropout.dropout_forward)
_DROPOUT_BWD = _spec(_kdropout.dropout_backward)
_BN_TRAIN = _spec(_kbn.bn_forward_train)
_BN_INFER = _spec(_kbn.bn_forward_infer)
_BN_BWD = _spec(_kbn.bn_backward)
_BN_RUNNING = _spec(_kbn.bn_running_update)
_IM2COL_NKP = _spec(_kim2col.im2col_nkp)
_COL2IM_NKP = _spec(_kim2col.col2im_nkp)


def _spec_pool(fused):
    """Specialisations of a pooling kernel by (input dtype, window-index dtype)."""
    return {
        (dt, it): fused[f"{c}|{ic}"]
        for dt, c in ((F32, "float"), (F64, "double"))
        for it, ic in ((np.dtype(np.uint8), "unsigned char"), (np.dtype(np.intc), "int"))
    }


_POOL_FWD = _spec_pool(_kpool.max_pool_forward)
_POOL_BWD = _spec_pool(_kpool.max_pool_backward)
# Scalars that compare with float64 exactly as NumPy compares them (a float64 conversion is
# exact for all of them, and a float64 array never promotes against them).
_EXACT_SCALARS = (float, int, bool, np.float64, np.float32, np.float16, np.integer, np.bool_)


class Dropout(_ref.Dropout):
    """Dropout, non-inverted, as the book's ``Dropout`` (section 6.4.3).

    Training keeps each activation with probability ``1 - dropout_ratio`` and does not
    rescale; inference multiplies by ``1 - dropout_ratio``.  The mask is drawn with
    ``np.random.rand(*x.shape)`` from NumPy's global legacy RNG, exactly as in the book, so
    ``np.random.seed`` gives the book's masks and leaves the stream where the book leaves it.

    ``train_flg`` is read by truthiness, as in the book (``if train_flg:``): ``0``,
    ``None``, ``""`` and ``np.False_`` mean inference, any other object -- including the
    string ``"False"`` -- means training, and an array of several elements raises NumPy's
    ``ValueError`` before anything is drawn.

    Attributes
    ----------
    dropout_ratio : float
    mask : ndarray of bool, shape of the last training input
        ``True`` where the activation was kept.  Inference does not touch it.
    """

    def forward(self, x, train_flg=True):
        """Drop activations (training) or scale them (inference).

        Parameters
        ----------
        x : ndarray of any shape
            Not modified.
        train_flg : bool, default True

        Returns
        -------
        out : ndarray, same shape and dtype as x
            ``x * mask`` (training) or ``x * (1 - dropout_ratio)`` (inference).
        """
        ratio = self.dropout_ratio
        if (
            float_array(x) is None
            or x.ndim == 0
            or not isinstance(ratio, _EXACT_SCALARS)
        ):
            return super().forward(x, train_flg)
        if not train_flg:
            return x * (1.0 - ratio)
        u = np.random.rand(*x.shape)
        out = np.empty(x.shape, x.dtype)
        mask = np.empty(x.shape, np.bool_)
        _DROPOUT_FWD[x.dtype](
            contiguous(x).reshape(-1), u.reshape(-1), float(ratio), out.reshape(-1),
            mask.reshape(-1).view(np.uint8), n_threads=threads_for(x.size, _PAR_ELEMENTWISE),
        )
        self.mask = mask
        return out

    def backward(self, dout):
        """Gradient ``dout * mask`` (the last training mask, also after an inference call).

        Parameters
        ----------
        dout : ndarray, shape of the mask
            Not modified.

        Returns
        -------
        dx : ndarray, same shape and dtype as dout
        """
        mask = self.mask
        if (
            float_array(dout) is None
            or type(mask) is not np.ndarray
            or mask.dtype != np.bool_
            or mask.shape != dout.shape
        ):
            return super().backward(dout)
        dx = np.empty(dout.shape, dout.dtype)
        _DROPOUT_BWD[dout.dtype](
            contiguous(dout).reshape(-1), contiguous(mask).reshape(-1).view(np.uint8),
            dx.reshape(-1), n_threads=threads_for(dout.size, _PAR_ELEMENTWISE),
        )
        return dx


def _vector(v, d, dtypes=KERNEL_DTYPES):
    """``v`` C-contiguous if it is a plain ndarray of shape (d,) and one of ``dtypes``."""
    if type(v) is np.ndarray and v.shape == (d,) and v.dtype in dtypes:
        return contiguous(v)
    return None


class BatchNormalization(_ref.BatchNormalization):
    """Batch normalisation, as the book's ``BatchNormalization`` (section 6.3).

    Every activation (column of the ``(N, D)`` input; a 4-D input ``(N, C, H, W)`` is
    flattened to ``(N, C*H*W)``, so normalisation is per activation, not per channel) is
    normalised with its batch mean and *biased* variance, eps ``10e-7`` (= 1e-6), then
    scaled by ``gamma`` and shifted by ``beta``.  Each direction is one compiled kernel of
    three passes over the data; float64 results are bit-identical to the book's.

    Parameters
    ----------
    gamma, beta : ndarray of shape (D,)
        Held by reference and read at every call.
    momentum : float, default 0.9
    running_mean, running_var : ndarray of shape (D,), optional
        If None they become float64 zeros on the first call -- also when that call is in
        inference mode, which then returns ``x / 0.001``, as in the book.

    Attributes
    ----------
    running_mean, running_var : ndarray of shape (D,)
        Re-bound to new arrays at every training step (the arrays passed in are never
        written): ``momentum * running + (1 - momentum) * batch statistic``.
    input_shape : tuple
        Shape of the last forward input; ``backward`` returns ``dx`` in this shape.
    batch_size : int
    xc, xn : ndarray of shape (N, D)
        ``x - mean`` and ``xc / std`` of the last *training* forward (``xn`` is computed
        on first access; the kernels do not need it stored).
    std : ndarray of shape (D,)
        ``sqrt(var + 1e-6)`` of the last training forward.
    dgamma, dbeta : ndarray of shape (D,)
        Gradients of the last backward.

    Notes
    -----
    ``train_flg`` is read by truthiness, as in the book (see :class:`Dropout`).
    ``backward`` always uses the statistics of the last *training* forward, even after an
    inference call, as in the book.
    """

    def forward(self, x, train_flg=True):
        """Normalise, scale and shift.

        Parameters
        ----------
        x : ndarray of shape (N, D) or (N, C, H, W)
            Not modified.
        train_flg : bool, default True
            True: batch statistics (cached for backward; running statistics updated).
            False: running statistics.

        Returns
        -------
        out : ndarray of x's shape
            dtype by NumPy's promotion of x, gamma and beta (and, in inference, of the
            float64 running statistics).
        """
        if float_array(x) is None or x.ndim not in (2, 4) or x.size == 0:
            return super().forward(x, train_flg)
        # The book's order: input_shape and the running statistics are set before
        # train_flg is evaluated.
        self.input_shape = x.shape
        n = x.shape[0]
        x2 = contiguous(x).reshape(n, -1)
        d = x2.shape[1]
        if self.running_mean is None:
            self.running_mean = np.zeros(d)
            self.running_var = np.zeros(d)
        if train_flg:
            out = self._forward_train(x2)
        else:
            rm = _vector(self.running_mean, d, (F64,))
            rv = _vector(self.running_var, d, (F64,))
            gamma = _vector(self.gamma, d)
            beta = _vector(self.beta, d)
            if rm is None or rv is None or gamma is None or beta is None:
                return super().forward(x, False)
            out = np.empty((n, d))
            _BN_INFER[x.dtype](
                x2, rm, rv, gamma.astype(F64, copy=False), beta.astype(F64, copy=False), out,
                n_threads=threads_for(x.size, _PAR_COLUMNS),
            )
        return out.reshape(*self.input_shape)

    def __getattr__(self, name):
        # Only reached when normal lookup fails.  ``xn`` (the normalised input of the last
        # training forward) is not stored by the kernel -- one (N, D) array less to write,
        # and to read in backward -- but computed here on first access, with the forward's
        # own division, and then kept in the instance dict like any attribute.
        if name == "xn":
            xc, std = self.__dict__.get("_xn_from", (None, None))
            if xc is not None:
                xn = self.__dict__["xn"] = xc / std
                return xn
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _forward_train(self, x2):
        n, d = x2.shape
        dtype = x2.dtype
        mean, var, std = np.empty(d, dtype), np.empty(d, dtype), np.empty(d, dtype)
        xc = np.empty((n, d), dtype)
        gamma = _vector(self.gamma, d, (dtype,))
        beta = _vector(self.beta, d, (dtype,))
        fused = gamma is not None and beta is not None
        # Without the fused scale and shift, NumPy needs xn right away: store it.
        xn = None if fused else np.empty((n, d), dtype)
        out = np.empty((n, d), dtype) if fused else None
        _BN_TRAIN[dtype](
            x2, mean, var, std, xc, xn, gamma if fused else None, beta if fused else None, out,
            n_threads=threads_for(x2.size, _PAR_COLUMNS),
        )
        self.batch_size = n
        self.xc = xc
        if xn is None:
            self.__dict__.pop("xn", None)  # computed on first access (__getattr__)
            self._xn_from = (xc, std)
        else:
            self.xn = xn
            self._xn_from = (None, None)
        self.std = std
        self._update_running(mean, var)
        if not fused:  # gamma/beta of another dtype or shape: the book's expression
            out = self.gamma * xn + self.beta
        return out

    def _update_running(self, mean, var):
        """Re-bind the running statistics to ``momentum * running + (1 - momentum) * batch``."""
        momentum, d = self.momentum, mean.shape[0]
        rm = _vector(self.running_mean, d, (F64,))
        rv = _vector(self.running_var, d, (F64,))
        # The kernel reproduces NumPy's arithmetic for Python-number momenta (and, with
        # float64 statistics, NumPy float scalars); anything else takes NumPy's expression.
        exact = type(momentum) in (float, int) or (
            mean.dtype == F64 and type(momentum) in (np.float64, np.float32)
        )
        if rm is None or rv is None or not exact:
            self.running_mean = momentum * self.running_mean + (1 - momentum) * mean
            self.running_var = momentum * self.running_var + (1 - momentum) * var
            return
        new_mean, new_var = np.empty(d), np.empty(d)
        _BN_RUNNING[mean.dtype](mean, var, rm, rv, float(momentum), float(1 - momentum),
                                new_mean, new_var)
        self.running_mean = new_mean
        self.running_var = new_var

    def backward(self, dout):
        """Gradients of the last training forward.

        Parameters
        ----------
        dout : ndarray of shape (N, D) or (N, C, H, W)
            Not modified.

        Returns
        -------
        dx : ndarray of the last forward input's shape
            Also sets ``dgamma`` and ``dbeta`` (summed in double).
        """
        xc, std, gamma = self.xc, self.std, self.gamma
        if float_array(dout) is None or dout.ndim not in (2, 4) or dout.size == 0:
            return super().backward(dout)
        n = dout.shape[0]
        d2 = contiguous(dout).reshape(n, -1)
        d = d2.shape[1]
        # xn: None lets the kernel recompute it (xc / std, as the forward did), valid while
        # xc and std are still the forward's own arrays; otherwise the stored (or assigned)
        # xn, or the one __getattr__ computes from the forward's arrays.
        xn = self.__dict__.get("xn")
        if xn is None:
            src_xc, src_std = self.__dict__.get("_xn_from", (None, None))
            if src_xc is None or src_xc is not xc or src_std is not std:
                xn = getattr(self, "xn", None)
        if (
            float_array(xc) is None
            or xc.shape != (n, d)
            or (xn is not None and (float_array(xn) is None or xn.shape != (n, d)
                                    or xn.dtype != xc.dtype))
            or _vector(std, d) is None
            or _vector(gamma, d) is None
            or type(self.batch_size) is not int
            or self.batch_size != n
        ):
            return super().backward(dout)
        ct = np.result_type(dout, xc, std, gamma)
        if xn is None and ct != xc.dtype:
            xn = self.xn  # xc / std in xc's dtype, as the book computed it, not in ct
        dx = np.empty((n, d), ct)
        dgamma = np.empty(d, ct)
        dbeta = np.empty(d, ct)
        _BN_BWD[ct](
            d2.astype(ct, copy=False),
            None if xn is None else contiguous(xn).astype(ct, copy=False),
            contiguous(xc).astype(ct, copy=False), contiguous(std).astype(ct, copy=False),
            contiguous(gamma).astype(ct, copy=False), n, dx, dgamma, dbeta,
            n_threads=threads_for(dout.size, _PAR_COLUMNS),
        )
        self.dgamma = dgamma.astype(np.result_type(xc, dout), copy=False)
        self.dbeta = dbeta.astype(dout.dtype, copy=False)
        return dx.reshape(*self.input_shape)


class Convolution(_ref.Convolution):
    """Convolution (cross-correlation), as the book's ``Convolution`` (section 7.4.3).

    The same im2col + matrix-product algorithm, with the column matrix built by a compiled
    kernel in a per-sample layout ``(N, C*FH*FW + 1, OH*OW)`` whose last row is ones: one
    batched ``np.matmul`` with ``[W | b]`` then yields the NCHW output with the bias
    already added, and the same matrix gives ``dW`` and ``db`` together in backward.

    Parameters
    ----------
    W : ndarray of shape (FN, C, FH, FW)
    b : ndarray of shape (FN,)
        Held by reference and read at every call.
    stride : int, default 1
    pad : int, default 0
        Zero padding on each side.

    Attributes
    ----------
    x : ndarray of shape (N, C, H, W)
        The last input (the caller's object).
    col : ndarray of float64, shape (N*OH*OW, C*FH*FW)
        The book's im2col matrix of the last input, built on first access (bpfast keeps the
        per-sample layout internally); an assigned matrix is what backward uses, as in the
        book.
    col_W : ndarray of shape (C*FH*FW, FN)
        ``W.reshape(FN, -1).T`` (a view of W), as in the book.
    dW : ndarray of float64, shape (FN, C, FH, FW)
    db : ndarray of shape (FN,)
        Gradients of the last backward.

    Notes
    -----
    Differences from the book: ``forward`` and ``backward`` return C-contiguous arrays (the
    book returns non-contiguous views with the same values); an input whose channel count
    differs from W's raises ``ValueError`` naming both shapes (the book's ``np.dot`` raises
    ``ValueError: shapes not aligned``).  Values agree with the book's to the rounding of
    the matrix products (their summation order is BLAS's).
    """

    # Per-sample column matrix of the last kernel forward (None: the book's code ran) and
    # the book-layout matrix built from it on request.
    _colt = None
    _col_built = None
    _geometry = None

    def __getattr__(self, name):
        # Only reached when normal lookup fails: ``col`` after a kernel forward is built here
        # on first access, in the book's layout, and then kept in the instance dict.
        if name == "col":
            colt = self.__dict__.get("_colt")
            if colt is not None:
                n, c, fh, fw, oh, ow = self._geometry[:6]
                k = c * fh * fw
                col = colt[:, :k, :].transpose(0, 2, 1).reshape(n * oh * ow, k)
                self.__dict__["col"] = self._col_built = col
                return col
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def forward(self, x):
        """Convolve.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
            Any layout; not modified.  Stored as ``self.x``.

        Returns
        -------
        out : ndarray of float64, shape (N, FN, OH, OW)
            ``OH = (H + 2*pad - FH) // stride + 1``, likewise OW.  C-contiguous.
        """
        W, b = self.W, self.b
        if (
            float_array(x) is None
            or x.ndim != 4
            or 0 in x.shape
            or float_array(W) is None
            or W.ndim != 4
            or 0 in W.shape
            or float_array(b) is None
            or b.shape != (W.shape[0],)
        ):
            return self._book_forward(x)
        fn, c, fh, fw = W.shape
        n, cx, h, w = x.shape
        geometry = _window_geometry(h, w, fh, fw, self.stride, self.pad)
        if geometry is None:
            return self._book_forward(x)
        if cx != c:
            raise ValueError(
                f"Convolution: the input has {cx} channels (x.shape {x.shape}) but the "
                f"filters expect {c} (W.shape {W.shape})"
            )
        oh, ow, fh, fw, s, p = geometry
        k = c * fh * fw
        colt = np.empty((n, k + 1, oh * ow))
        _IM2COL_NKP[x.dtype](contiguous(x), fh, fw, s, p, colt,
                             n_threads=threads_for(colt.size, _PAR_WINDOWS))
        col_w = W.reshape(fn, -1).T
        wb = np.empty((fn, k + 1))
        wb[:, :k] = col_w.T
        wb[:, k] = b
        out = np.matmul(wb, colt)
        self.x = x
        self._colt = colt
        self._col_built = None
        self.__dict__.pop("col", None)  # built on first access (__getattr__)
        self._geometry = (n, c, fh, fw, oh, ow, h, w, fn, s, p)
        self.col_W = col_w
        return out.reshape(n, fn, oh, ow)

    def _book_forward(self, x):
        out = super().forward(x)
        self._colt = None  # backward then runs the book's code on the book's col
        return out

    def backward(self, dout):
        """Gradients of the last forward.

        Parameters
        ----------
        dout : ndarray of shape (N, FN, OH, OW)
            Not modified.

        Returns
        -------
        dx : ndarray of float64, shape (N, C, H, W)
            C-contiguous.  Also sets ``dW`` (float64) and ``db`` (dout's dtype).
        """
        colt, geometry, W, col_w, x = self._colt, self._geometry, self.W, self.col_W, self.x
        col = self.__dict__.get("col")
        if (
            colt is None
            or (col is not None and col is not self._col_built)  # col was assigned
            or float_array(dout) is None
        ):
            return super().backward(dout)
        n, c, fh, fw, oh, ow, h, w, fn, s, p = geometry
        k = c * fh * fw
        if (
            dout.shape != (n, fn, oh, ow)
            or type(W) is not np.ndarray
            or W.shape != (fn, c, fh, fw)
            or float_array(col_w) is None
            or col_w.shape != (k, fn)
            or type(x) is not np.ndarray
            or x.shape != (n, c, h, w)
            or _as_index(self.stride) != s
            or _as_index(self.pad) != p
        ):
            return super().backward(dout)
        d3 = contiguous(dout).reshape(n, fn, oh * ow)
        self._set_param_grads(d3, colt, k, (fn, c, fh, fw), dout.dtype)
        dcolt = np.matmul(col_w, d3)
        dx = np.empty((n, c, h, w))
        _COL2IM_NKP[dcolt.dtype](dcolt, fh, fw, s, p, dx,
                                 n_threads=threads_for(dcolt.size, _PAR_WINDOWS))
        return dx

    def _set_param_grads(self, d3, colt, k, w_shape, dtype):
        # Per sample: dout[n] (FN, P) @ colt[n].T (P, K+1); the ones row makes the last
        # column the sum of dout, i.e. db.
        dwb = np.matmul(d3, colt.transpose(0, 2, 1)).sum(axis=0)
        self.db = dwb[:, k].astype(dtype)
        self.dW = dwb[:, :k].reshape(w_shape)

    def _backward_params(self, dout):
        """``backward`` without ``dx``: only ``dW`` and ``db`` (same values), returns None.

        For a network's first layer, whose input gradient nobody reads: skips the
        ``dcol`` product and col2im, about half of the backward pass.
        """
        colt, geometry, W, x = self._colt, self._geometry, self.W, self.x
        col = self.__dict__.get("col")
        if (
            colt is None
            or (col is not None and col is not self._col_built)
            or float_array(dout) is None
        ):
            self.backward(dout)
            return
        n, c, fh, fw, oh, ow, h, w, fn, s, p = geometry
        if (
            dout.shape != (n, fn, oh, ow)
            or type(W) is not np.ndarray
            or W.shape != (fn, c, fh, fw)
            or type(x) is not np.ndarray
            or x.shape != (n, c, h, w)
            or _as_index(self.stride) != s
            or _as_index(self.pad) != p
        ):
            self.backward(dout)
            return
        d3 = contiguous(dout).reshape(n, fn, oh * ow)
        self._set_param_grads(d3, colt, c * fh * fw, (fn, c, fh, fw), dout.dtype)


class Pooling(_ref.Pooling):
    """Max pooling, as the book's ``Pooling`` (section 7.4.4).

    Compiled directly on the NCHW planes (no im2col matrix); the index of each window's
    maximum is kept in one byte per output element.  Ties go to the first maximum in the
    window (row by row), NaN wins over any number (the first NaN), as with the book's
    ``np.argmax``.  Outputs are float64 whatever the input dtype, as in the book.

    Parameters
    ----------
    pool_h, pool_w : int
    stride : int, default 2
    pad : int, default 0
        The book cannot run ``pad > 0`` (its output size ignores the padding, so a reshape
        fails).  bpfast pads with **-inf** (the book's im2col would pad with zeros, which
        is wrong for a maximum over negative values): the output is
        ``(H + 2*pad - pool_h) // stride + 1`` by ``(W + 2*pad - pool_w) // stride + 1``,
        and padding never wins against a real value.

    Attributes
    ----------
    x : ndarray of shape (N, C, H, W)
        The last input (the caller's object; only its shape is used).
    arg_max : ndarray of intp, shape (N*OH*OW*C,)
        The book's array: for each window in (sample, output row, output column, channel)
        order, the index ``ki * pool_w + kj`` of its maximum.  Built on first access from
        the compact index; an assigned array is what backward uses, as in the book.

    Notes
    -----
    ``forward``/``backward`` return C-contiguous arrays (the book returns non-contiguous
    views with the same values).  A pool larger than the (padded) input raises the book's
    ``ValueError``.
    """

    # Compact window indices of the last kernel forward (None: the book's code ran) and the
    # book's arg_max built from them on request.
    _arg = None
    _arg_built = None
    _geometry = None

    def __getattr__(self, name):
        # Only reached when normal lookup fails: ``arg_max`` after a kernel forward is built
        # here on first access, with the book's values and layout, then kept in the dict.
        if name == "arg_max":
            arg = self.__dict__.get("_arg")
            if arg is not None:
                arg_max = arg.transpose(0, 2, 3, 1).reshape(-1).astype(np.intp)
                self.__dict__["arg_max"] = self._arg_built = arg_max
                return arg_max
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def forward(self, x):
        """Take the maximum of every window.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
            Any layout; not modified.

        Returns
        -------
        out : ndarray of float64, shape (N, C, OH, OW)
        """
        if float_array(x) is None or x.ndim != 4 or 0 in x.shape:
            return self._book_forward(x)
        n, c, h, w = x.shape
        geometry = _window_geometry(h, w, self.pool_h, self.pool_w, self.stride, self.pad)
        if geometry is None:
            return self._book_forward(x)
        oh, ow, ph, pw, s, p = geometry
        out = np.empty((n, c, oh, ow))
        arg = np.empty((n, c, oh, ow), np.uint8 if ph * pw <= 256 else np.intc)
        _POOL_FWD[x.dtype, arg.dtype](contiguous(x), ph, pw, s, p, out, arg,
                                      n_threads=threads_for(x.size, _PAR_WINDOWS))
        self.x = x
        self._arg = arg
        self._arg_built = None
        self.__dict__.pop("arg_max", None)  # built on first access (__getattr__)
        self._geometry = (h, w, ph, pw, s, p)
        return out

    def _book_forward(self, x):
        out = super().forward(x)
        self._arg = None  # backward then runs the book's code on the book's arg_max
        return out

    def backward(self, dout):
        """Route each gradient to its window's maximum (overlapping windows accumulate).

        Parameters
        ----------
        dout : ndarray of shape (N, C, OH, OW)
            Not modified.

        Returns
        -------
        dx : ndarray of float64, shape (N, C, H, W)
        """
        arg, x = self._arg, self.x
        arg_max = self.__dict__.get("arg_max")
        if (
            arg is None
            or (arg_max is not None and arg_max is not self._arg_built)  # assigned
            or float_array(dout) is None
            or dout.shape != arg.shape
            or type(x) is not np.ndarray
            or x.shape[2:] != self._geometry[:2]
            or x.shape[:2] != arg.shape[:2]
            or (_as_index(self.pool_h), _as_index(self.pool_w), _as_index(self.stride),
                _as_index(self.pad)) != self._geometry[2:]
        ):
            return super().backward(dout)
        h, w, ph, pw, s, p = self._geometry
        dx = np.empty(x.shape)
        _POOL_BWD[dout.dtype, arg.dtype](contiguous(dout), arg, ph, pw, s, p, dx,
                                         n_threads=threads_for(dx.size, _PAR_WINDOWS))
        return dx
