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
from bpfast._kernels import relu as _krelu
from bpfast._kernels import sigmoid as _ksigmoid
from bpfast._kernels import softmax_with_loss as _ksoftmax
from bpfast._threads import threads_for
from bpfast._validation import F32, F64, LabelError, contiguous, float_array, labels_for

__all__ = ["AddLayer", "MulLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss"]

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


# Below these sizes (elements) a thread team costs more than it saves; measured with
# `python benchmarks/run.py --threshold-sweep` (see benchmarks/README.md).
_PAR_ELEMENTWISE = 1 << 16
_PAR_EXP = 1 << 14
_PAR_ROWS = 1 << 14

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
        if float_array(x) is None:
            return super().forward(x)
        xc = contiguous(x)
        out = np.empty(x.shape, x.dtype)
        mask = np.empty(x.shape, np.uint8)
        _RELU_FWD[x.dtype](
            xc.reshape(-1), out.reshape(-1), mask.reshape(-1),
            n_threads=threads_for(x.size, _PAR_ELEMENTWISE),
        )
        self.mask = mask.view(np.bool_)
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
            float_array(dout) is None
            or type(mask) is not np.ndarray
            or mask.dtype != np.bool_
            or mask.shape != dout.shape
        ):
            return super().backward(dout)
        nt = threads_for(dout.size, _PAR_ELEMENTWISE)
        mask_bytes = contiguous(mask).reshape(-1).view(np.uint8)
        if not dout.flags.writeable:
            dx = np.empty(dout.shape, dout.dtype)
            _RELU_BWD[dout.dtype](contiguous(dout).reshape(-1), mask_bytes, dx.reshape(-1),
                                  n_threads=nt)
            return dx
        if dout.flags.c_contiguous:
            flat = dout.reshape(-1)
            _RELU_BWD[dout.dtype](flat, mask_bytes, flat, n_threads=nt)
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
        if float_array(x) is None or x.ndim == 0:
            return super().forward(x)
        out = np.empty(x.shape, x.dtype)
        _SIGMOID_FWD[x.dtype](
            contiguous(x).reshape(-1), out.reshape(-1),
            n_threads=threads_for(x.size, _PAR_EXP),
        )
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
            float_array(dout) is None
            or float_array(out) is None
            or out.shape != dout.shape
            or dout.ndim == 0  # the book returns a NumPy scalar there
            # Mixed float32/float64: the book rounds (1.0 - out) in out's dtype before
            # promoting, which a kernel on up-cast operands would not reproduce.
            or out.dtype != dout.dtype
        ):
            return super().backward(dout)
        dx = np.empty(dout.shape, dout.dtype)
        _SIGMOID_BWD[dout.dtype](
            contiguous(dout).reshape(-1),
            contiguous(out).reshape(-1),
            dx.reshape(-1),
            n_threads=threads_for(dout.size, _PAR_ELEMENTWISE),
        )
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
            out.dtype in _BIAS_ADD
            and type(b) is np.ndarray
            and b.ndim == 1
            and out.ndim == 2
            and b.shape[0] == out.shape[1]
            and out.flags.c_contiguous
            and np.promote_types(b.dtype, out.dtype) == out.dtype
        ):
            _BIAS_ADD[out.dtype](
                out, contiguous(b).astype(out.dtype, copy=False),
                n_threads=threads_for(out.size, _PAR_ELEMENTWISE),
            )
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
