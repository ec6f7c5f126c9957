"""``TwoLayerNet``: the book's chapter-5 network (``ch05/two_layer_net.py``) with a fused step.

Same constructor, attributes and methods as the book's class -- ``params`` (``W1``, ``b1``,
``W2``, ``b2``) shared with the layers, ``layers`` (an ``OrderedDict`` ``Affine1``,
``Relu1``, ``Affine2`` of :mod:`bpfast.layers`), ``lastLayer``, ``predict``, ``loss``,
``accuracy``, ``numerical_gradient``, ``gradient`` -- and the same numbers.  Two additions:
a keyword-only ``dtype`` (float32 training), :meth:`TwoLayerNet.train_step`, and
``save_params``/``load_params`` (atomic, checked; :class:`bpfast._network.ParamsFile`).

How ``loss`` and ``gradient`` are faster than the book's layer-by-layer code
-------------------------------------------------------------------------------
* The input gradient of the first Affine layer (``dout @ W1.T``, a third of that layer's
  FLOPs) is not computed: the book computes it and throws it away.
* Bias add + Relu, softmax + cross-entropy + its gradient + ``db2``, and Relu backward +
  ``db1`` are one compiled pass each (``bpfast/_kernels/two_layer_net.pyx``); the matrix
  products (five, against the book's six) go to NumPy's BLAS with ``out=``.
* For a batch shape seen before nothing is allocated: the intermediate arrays and the
  gradients live in buffers owned by the network (see "Buffers" below).
* :meth:`train_step` fuses plain SGD into the step: each bias is updated inside the kernel
  that produces its gradient, both weight matrices in one kernel call after the last product
  -- no ``lr * grad`` temporaries, no separate passes.

Weights are read live, from the layers
--------------------------------------
Every call reads ``layers['Affine1'].W``/``.b`` and ``layers['Affine2'].W``/``.b`` -- exactly
the arrays the book's code uses -- and never caches a copy or a transpose, so in-place
optimizers and ``numerical_gradient`` (which perturb ``params[...]`` in place) work as in the
book.  Re-binding behaves as in the book too: ``net.params['W1'] = other`` does *not* change
what the network computes (the layer still holds the old array), while
``net.layers['Affine1'].W = other`` does.  To replace weights, assign in place
(``net.params['W1'][...] = other``) or re-bind both.

Buffers: what is reused across calls
------------------------------------
For speed, the arrays below are owned by the network and **overwritten by the next**
``loss``/``gradient``/``train_step`` **call** (a copy is needed to keep one):

* the arrays returned by ``gradient`` (``grads['W1']`` ... ``grads['b2']``), which are also
  ``layers['Affine1'].dW``/``.db`` and ``layers['Affine2'].dW``/``.db`` as in the book -- the
  book returns fresh arrays at every call, so code that keeps the gradients of an earlier
  batch (to average them, say) must copy them;
* ``layers['Relu1'].mask``, ``layers['Affine2'].x`` (the hidden activations) and
  ``lastLayer.y`` (the softmax), one set per batch shape (up to four batch shapes are kept).

``layers['Affine1'].x`` is the caller's input (a view, as in the book), ``lastLayer.t`` the
caller's targets and ``lastLayer.loss`` a new scalar.  ``predict`` and ``accuracy`` run the
drop-in layers and return/keep fresh arrays.  Pickling or deep-copying a network leaves the
buffers behind (the copy allocates its own on first use).

When the fused path does not apply
----------------------------------
It needs the three layers and ``lastLayer`` of the classes the constructor made (under the
same keys, in the same order), float32 or float64 weights of one dtype with 1-D biases, an
input whose dtype does not promote that dtype (a float32 input with float64 weights is
converted into a buffer, as ``np.dot`` would), and labels or float one-hot targets of the
right shape.  Anything else -- other layers, mixed dtypes, lists -- runs the book's
layer-by-layer code on the drop-in layers, with the book's results.  Labels out of range raise
``IndexError`` (as :class:`bpfast.layers.SoftmaxWithLoss` does); a failed call leaves the
parameters untouched.
"""

from collections import OrderedDict

import numpy as np

from bpfast import reference as _ref
from bpfast._kernels import optimizers as _kopt
from bpfast._kernels import two_layer_net as _knet
from bpfast._network import ParamsFile
from bpfast._threads import threads_for
from bpfast._validation import F32, F64, KERNEL_DTYPES, labels_for
from bpfast.gradient import numerical_gradient
from bpfast.layers import Affine, Relu, SoftmaxWithLoss
from bpfast.optimizers import SGD, sgd_step, weak_scalar

__all__ = ["TwoLayerNet"]

# Sizes (elements) above which the step's own kernels use a thread team.  Far higher than the
# drop-in layers' thresholds on purpose: here every kernel sits between multi-threaded GEMMs;
# single-threaded each takes well under a millisecond even at batch 1000 x hidden 1000 (~1 %
# of the step), while a thread team that must wait for a core held by the BLAS threads (or
# another process) can cost milliseconds per call on this shared 2-core machine -- measure
# with `python tools/bench_train_step.py --kernel-threads`.
_PAR_ELEMENTWISE = 1 << 22
_PAR_ROWS = 1 << 20
# Batch shapes whose buffers are kept (a training loop needs one or two: full batches and a
# last partial one; numerical_gradient on a small batch another).
_MAX_WORKSPACES = 4

_CTYPE = {F32: "float", F64: "double"}
_LABEL_CTYPE = {np.dtype(np.uint8): "unsigned char", np.dtype(np.intc): "int",
                np.dtype(np.int_): "long"}
_BIAS_RELU = {d: _knet.bias_relu_forward[c] for d, c in _CTYPE.items()}
_SGD = {d: _kopt.sgd_update[c] for d, c in _CTYPE.items()}
_SGD_WEIGHTS = {d: _knet.sgd_weights[c] for d, c in _CTYPE.items()}
_RELU_BWD = {d: _knet.relu_backward_colsum[c] for d, c in _CTYPE.items()}
_XENT = {  # (logits dtype, target dtype, one-hot) -> (loss kernel, loss + gradient kernel)
    (d, lt, False): (_knet.bias_softmax_xent[f"{c}|{lc}"],
                     _knet.bias_softmax_xent_grad[f"{c}|{lc}"])
    for d, c in _CTYPE.items()
    for lt, lc in _LABEL_CTYPE.items()
}
_XENT.update({
    (d, tt, True): (_knet.bias_softmax_xent_onehot[f"{c}|{tc}"],
                    _knet.bias_softmax_xent_onehot_grad[f"{c}|{tc}"])
    for d, c in _CTYPE.items()
    for tt, tc in _CTYPE.items()
})


_CASTS = {}


def _casts_to(x_dtype, dtype):
    """True when NumPy's promotion of an x_dtype input with dtype weights is dtype (cached)."""
    ok = _CASTS.get((x_dtype, dtype))
    if ok is None:
        ok = _CASTS[x_dtype, dtype] = np.result_type(x_dtype, dtype) == dtype
    return ok


class _Workspace:
    """Buffers of one batch shape: activations, mask, softmax and backward temporaries."""

    __slots__ = ("a", "mask", "mask_bool", "s", "y", "dy", "dh", "xcast")

    def __init__(self, n, d, h, c, dtype):
        self.a = np.empty((n, h), dtype)  # affine-1 output, then (in place) the Relu output
        self.mask = np.empty((n, h), np.uint8)
        self.mask_bool = self.mask.view(np.bool_)
        self.s = np.empty((n, c), dtype)  # affine-2 output (logits)
        self.y = np.empty((n, c), dtype)  # softmax
        self.dy = np.empty((n, c), dtype)
        self.dh = np.empty((n, h), dtype)
        self.xcast = None  # the input converted to the weights' dtype, allocated on demand


class _Plan:
    """What one fused call works on, validated (read live from the layers at every call)."""

    __slots__ = ("a1", "relu", "a2", "last", "W1", "b1", "W2", "b2", "dtype", "x2", "x_shape",
                 "t", "labels", "onehot", "n", "d", "h", "c")


class TwoLayerNet(ParamsFile, _ref.TwoLayerNet):
    """The book's two-layer network: Affine -> Relu -> Affine -> SoftmaxWithLoss (5.7).

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H and C.
    weight_init_std : float, default 0.01
        ``W1`` and ``W2`` are ``weight_init_std * np.random.randn(...)``, drawn from NumPy's
        global legacy RNG in the book's order (W1 then W2), so ``np.random.seed(s)`` gives
        the book's initial weights.
    dtype : {numpy.float64, numpy.float32}, keyword-only, default float64
        dtype of the parameters.  float32 weights are the float64 draws rounded; train them
        with float32 inputs (a float64 input promotes everything to float64, as in NumPy).

    Attributes
    ----------
    params : dict
        ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,): the very arrays the layers
        hold.
    layers : OrderedDict
        ``Affine1`` (:class:`bpfast.layers.Affine`), ``Relu1``, ``Affine2``.
    lastLayer : bpfast.layers.SoftmaxWithLoss

    Notes
    -----
    See the module docstring for which arrays are buffers reused across calls.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *,
                 dtype=np.float64):
        dtype = np.dtype(dtype)
        if dtype not in KERNEL_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.params = {}
        # The book's draws (float64), then rounded for float32 training.
        self.params["W1"] = (weight_init_std * np.random.randn(input_size, hidden_size)).astype(
            dtype, copy=False)
        self.params["b1"] = np.zeros(hidden_size, dtype)
        self.params["W2"] = (weight_init_std * np.random.randn(hidden_size, output_size)).astype(
            dtype, copy=False)
        self.params["b2"] = np.zeros(output_size, dtype)

        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])

        self.lastLayer = SoftmaxWithLoss()

        self._workspaces = {}
        self._grads = None
        self._grads_key = None

    def __getstate__(self):
        # The buffers are caches: pickles and deep copies carry the book's state only (the
        # arrays the layers still reference travel with the layers).
        state = self.__dict__.copy()
        state["_workspaces"] = {}
        state["_grads"] = None
        state["_grads_key"] = None
        return state

    # ------------------------------------------------------------------------- public API

    def loss(self, x, t):
        """Mean cross-entropy of the network's softmax output.

        Parameters
        ----------
        x : ndarray of shape (N, D) (or (N, ...) with D elements per sample)
        t : ndarray
            Labels of shape (N,) or one-hot targets of shape (N, C).

        Returns
        -------
        loss : numpy.float64 or numpy.float32
            Also stored as ``lastLayer.loss``.
        """
        plan = self._plan(x, t)
        if plan is None:
            return super().loss(x, t)
        return self._run(plan, backward=False)

    def gradient(self, x, t):
        """Gradients of the loss by backpropagation.

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) (labels) or (N, C) (one-hot)

        Returns
        -------
        grads : dict
            ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,): the layers' own ``dW``/``db``
            arrays, as in the book -- here buffers **overwritten by the next call**.
        """
        plan = self._plan(x, t)
        if plan is None:
            return super().gradient(x, t)
        self._run(plan, backward=True)
        return self._grads_dict()

    def numerical_gradient(self, x, t):
        """Gradients by central differences (h = 1e-4), as the book's (slow: 2 losses per weight).

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) or (N, C)

        Returns
        -------
        grads : dict
            ``W1``, ``b1``, ``W2``, ``b2``: new arrays of the parameters' shapes and dtypes.
        """
        loss_W = lambda W: self.loss(x, t)  # noqa: E731 (the book's form; W is ignored)

        grads = {}
        grads["W1"] = numerical_gradient(loss_W, self.params["W1"])
        grads["b1"] = numerical_gradient(loss_W, self.params["b1"])
        grads["W2"] = numerical_gradient(loss_W, self.params["W2"])
        grads["b2"] = numerical_gradient(loss_W, self.params["b2"])

        return grads

    def train_step(self, x, t, optimizer):
        """One training step: gradient, then the optimizer's update of ``params``.

        Equivalent to ``grads = net.gradient(x, t); optimizer.update(net.params, grads)``
        (or, for a learning rate, the book's loop ``params[key] -= lr * grads[key]``), with
        the same numbers.  For plain SGD the update is fused: each parameter is updated as
        soon as its gradient is ready (the bias steps inside the kernels that compute them).

        Parameters
        ----------
        x : ndarray of shape (N, D)
        t : ndarray of shape (N,) or (N, C)
        optimizer : float or optimizer
            A learning rate for plain SGD, or any object with ``update(params, grads)`` (the
            optimizers of :mod:`bpfast.optimizers` or of the book).

        Returns
        -------
        loss : numpy.float64 or numpy.float32
            The loss of this batch **before** the update (``lastLayer.loss``).  The book's
            ``train_neuralnet.py`` records ``network.loss(x, t)`` after the update instead.
        """
        if type(optimizer) in (SGD, _ref.SGD):
            lr = optimizer.lr
        elif isinstance(optimizer, (int, float, np.integer, np.floating)) and not isinstance(
            optimizer, (bool, np.bool_)
        ):
            lr = optimizer
        else:
            grads = self.gradient(x, t)
            optimizer.update(self.params, grads)
            return self.lastLayer.loss

        plan = self._plan(x, t)
        if plan is not None and self._params_are_layers(plan) and weak_scalar(lr, plan.dtype):
            return self._run(plan, backward=True, lr=lr)
        grads = self.gradient(x, t)
        SGD(lr).update(self.params, grads)
        return self.lastLayer.loss

    # ------------------------------------------------------------------------- internals

    def _plan(self, x, t):
        """Validate everything the fused path needs; ``None`` means "run the book's code"."""
        layers = self.layers
        if type(layers) is not OrderedDict and type(layers) is not dict:
            return None
        a1 = layers.get("Affine1")
        relu = layers.get("Relu1")
        a2 = layers.get("Affine2")
        last = self.lastLayer
        if (
            type(a1) is not Affine
            or type(relu) is not Relu
            or type(a2) is not Affine
            or type(last) is not SoftmaxWithLoss
            or len(layers) != 3
        ):
            return None
        it = iter(layers.values())
        if next(it) is not a1 or next(it) is not relu or next(it) is not a2:
            return None
        W1, b1, W2, b2 = a1.W, a1.b, a2.W, a2.b
        if (
            type(W1) is not np.ndarray
            or type(b1) is not np.ndarray
            or type(W2) is not np.ndarray
            or type(b2) is not np.ndarray
        ):
            return None
        dtype = W1.dtype
        if dtype not in KERNEL_DTYPES or b1.dtype != dtype or W2.dtype != dtype or b2.dtype != dtype:
            return None
        if W1.ndim != 2 or W2.ndim != 2 or b1.ndim != 1 or b2.ndim != 1:
            return None
        d, h = W1.shape
        c = W2.shape[1]
        if W2.shape[0] != h or b1.shape[0] != h or b2.shape[0] != c or h == 0 or c == 0:
            return None
        if type(x) is not np.ndarray or x.ndim == 0 or type(t) is not np.ndarray:
            return None
        n = x.shape[0]
        if n == 0 or x.size != n * d or x.dtype.kind not in "biuf":
            return None
        if x.dtype != dtype and not _casts_to(x.dtype, dtype):
            return None
        plan = _Plan()
        if t.size == n * c:  # one-hot, detected by size alone as in the book
            if t.shape != (n, c) or t.dtype not in KERNEL_DTYPES:
                return None
            if t.dtype != dtype and dtype != F64:  # float64 targets promote float32 logits
                return None
            plan.onehot = True
            plan.labels = t if t.flags.c_contiguous else np.ascontiguousarray(t)
        else:
            if t.dtype.kind not in "iu":
                return None  # the drop-in layer raises the clear error
            plan.onehot = False
            plan.labels = labels_for(t, n, c)
        plan.a1, plan.relu, plan.a2, plan.last = a1, relu, a2, last
        plan.W1, plan.b1, plan.W2, plan.b2 = W1, b1, W2, b2
        plan.dtype = dtype
        plan.x2 = x.reshape(n, d)
        plan.x_shape = x.shape
        plan.t = t
        plan.n, plan.d, plan.h, plan.c = n, d, h, c
        return plan

    def _params_are_layers(self, plan):
        """True when ``params`` is exactly the layers' (writeable) arrays.

        Then the fused update -- in the order the gradients become ready: b2, W2, b1, W1 --
        is the book's loop over W1, b1, W2, b2.  A read-only parameter goes the book's way,
        so that it raises before anything was updated, as the book's loop does.
        """
        params = self.params
        return (
            type(params) is dict
            and len(params) == 4
            and params.get("W1") is plan.W1
            and params.get("b1") is plan.b1
            and params.get("W2") is plan.W2
            and params.get("b2") is plan.b2
            and plan.W1.flags.writeable
            and plan.b1.flags.writeable
            and plan.W2.flags.writeable
            and plan.b2.flags.writeable
        )

    def _workspace(self, plan):
        key = (plan.n, plan.d, plan.h, plan.c, plan.dtype)
        ws = self._workspaces.get(key)
        if ws is None:
            if len(self._workspaces) >= _MAX_WORKSPACES:
                del self._workspaces[next(iter(self._workspaces))]  # the oldest
            ws = self._workspaces[key] = _Workspace(plan.n, plan.d, plan.h, plan.c, plan.dtype)
        return ws

    def _grad_buffers(self, plan):
        key = (plan.d, plan.h, plan.c, plan.dtype)
        if self._grads_key != key:
            dt = plan.dtype
            self._grads = (np.empty((plan.d, plan.h), dt), np.empty(plan.h, dt),
                           np.empty((plan.h, plan.c), dt), np.empty(plan.c, dt))
            self._grads_key = key
        return self._grads

    def _grads_dict(self):
        dW1, db1, dW2, db2 = self._grads
        return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    def _run(self, plan, backward, lr=None):
        """Forward (and backward, and the SGD step when ``lr`` is given) on the buffers."""
        dtype, n, h, c = plan.dtype, plan.n, plan.h, plan.c
        ws = self._workspace(plan)
        W1, b1, W2, b2 = plan.W1, plan.b1, plan.W2, plan.b2
        x2 = plan.x2
        if x2.dtype != dtype:
            # What np.dot does with mixed dtypes, once for both products that read x.
            if ws.xcast is None:
                ws.xcast = np.empty((n, plan.d), dtype)
            np.copyto(ws.xcast, x2)
            xin = ws.xcast
        else:
            xin = x2
        fused = lr is not None

        # Forward: a = x @ W1; h = relu(a + b1) (in place); s = h @ W2.
        np.dot(xin, W1, out=ws.a)
        _BIAS_RELU[dtype](ws.a, b1 if b1.flags.c_contiguous else np.ascontiguousarray(b1),
                          ws.mask, n_threads=threads_for(n * h, _PAR_ELEMENTWISE))
        np.dot(ws.a, W2, out=ws.s)
        b2c = b2 if b2.flags.c_contiguous else np.ascontiguousarray(b2)
        nt = threads_for(n * c, _PAR_ROWS)
        xent_loss, xent_grad = _XENT[dtype, plan.labels.dtype, plan.onehot]
        if not backward:
            loss = xent_loss(ws.s, b2c, plan.labels, ws.y, n_threads=nt)
            self._set_forward_state(plan, ws, dtype.type(loss))
            return plan.last.loss

        dW1, db1, dW2, db2 = self._grad_buffers(plan)
        # b2's SGD step rides in the kernel that produces db2 (after s has used b2).
        b2_in_kernel = fused and b2c is b2
        loss = xent_grad(ws.s, b2c, plan.labels, ws.y, ws.dy, db2,
                         b_sgd=b2 if b2_in_kernel else None, lr=lr if b2_in_kernel else 0.0,
                         n_threads=nt)
        self._set_forward_state(plan, ws, dtype.type(loss))
        # Backward through Affine2 with the *current* W2 (before its update).
        np.dot(ws.a.T, ws.dy, out=dW2)
        np.dot(ws.dy, W2.T, out=ws.dh)
        if fused and not b2_in_kernel:
            _sgd(b2, db2, lr)
        # Relu backward and db1 in one pass (b1's step with it); Affine1's dW only -- its
        # input gradient is never used.
        b1_in_kernel = fused and b1.flags.c_contiguous
        _RELU_BWD[dtype](ws.dh, ws.mask, db1, b_sgd=b1 if b1_in_kernel else None,
                         lr=lr if b1_in_kernel else 0.0,
                         n_threads=threads_for(n * h, _PAR_ELEMENTWISE))
        np.dot(xin.T, ws.dh, out=dW1)
        if fused:
            if not b1_in_kernel:
                _sgd(b1, db1, lr)
            # W2 was last read by dh above; both weight steps in one kernel call.
            if (
                W1.flags.c_contiguous
                and W2.flags.c_contiguous
                and not np.may_share_memory(W1, W2)
                and not np.may_share_memory(W1, dW1)
                and not np.may_share_memory(W2, dW2)
            ):
                _SGD_WEIGHTS[dtype](W1, dW1, W2, dW2, lr,
                                    n_threads=threads_for(W1.size, _PAR_ELEMENTWISE))
            else:
                _sgd(W2, dW2, lr)
                _sgd(W1, dW1, lr)
        a1, a2 = plan.a1, plan.a2
        a1.dW, a1.db, a2.dW, a2.db = dW1, db1, dW2, db2
        return plan.last.loss

    @staticmethod
    def _set_forward_state(plan, ws, loss):
        # The layer attributes a user of the book finds after `loss` (see the module doc).
        a1, a2, last = plan.a1, plan.a2, plan.last
        a1.original_x_shape = plan.x_shape
        a1.x = plan.x2
        plan.relu.mask = ws.mask_bool
        a2.original_x_shape = ws.a.shape
        a2.x = ws.a
        last.t = plan.t
        last.y = ws.y
        last.loss = loss


def _sgd(p, g, lr):
    """``p -= lr * g`` in place: the kernel, or NumPy's statement for any other layout.

    ``g`` is one of the network's gradient buffers (C-contiguous, p's shape and dtype) and
    ``lr`` was checked by ``weak_scalar``; only ``p`` needs looking at.
    """
    nt = threads_for(p.size, _PAR_ELEMENTWISE)
    if p.flags.c_contiguous and p.flags.writeable and not np.may_share_memory(p, g):
        _SGD[p.dtype](p.reshape(-1), g.reshape(-1), lr, n_threads=nt)
    elif not sgd_step(p, g, lr, n_threads=nt):
        p -= lr * g
