"""What the compiled networks share: their layers, backpropagation, and parameter files.

* :func:`use_compiled_layers` swaps the book's layers a reference constructor built for the
  :mod:`bpfast.layers` classes, holding the very same parameter arrays (the weights were
  already drawn by the reference constructor, so the random stream is the book's).
* :func:`backprop` is the book's backward loop, except that the first layer's input
  gradient -- which the book computes and throws away -- is not computed.
* :class:`ParamsFile` gives every network ``save_params``/``load_params``: atomic writes, and
  loads that check the file against the network before changing anything.
* :class:`FusedGradient` gives MultiLayerNet and MultiLayerNetExtend a fused ``gradient``
  (below).

The fused gradient
------------------
When the layers are the ones the constructor built (any activation, dropout, batch norm or
weight-decay setting; float32 or float64 parameters of one dtype and an input of that dtype,
any layout), ``gradient`` runs the same kernels and NumPy products as the drop-in layers, in
the same order on the same operands -- the same numbers, bit for bit, the same Dropout masks
and the same position of NumPy's global random stream -- but:

* a hidden block Affine -> BatchNorm -> Relu [-> Dropout] is one kernel per direction
  (``bpfast/_kernels/multi_layer_net.pyx``), which also computes the Affine ``db``, and the
  book's ``dW + weight_decay_lambda * W`` is one pass (NumPy: two, with two temporaries);
* no per-call validation of each layer: the layer structure and the parameter arrays are
  checked once and re-checked by identity, shape and dtype at every call;
* Dropout's ``np.random.rand`` numbers are drawn into a buffer (see :func:`_draw_uniform`);
* for a batch shape seen before nothing of the batch's size is allocated.  As in
  :class:`bpfast.TwoLayerNet`, the arrays are buffers owned by the network and
  **overwritten by the next** ``gradient`` **call**: the returned ``W{i}``/``b{i}``
  gradients, the layers' ``dW``/``db``, ``Relu.mask``, ``Dropout.mask``, ``Sigmoid.out``,
  ``BatchNormalization.xc``/``xn`` and the hidden Affine layers' ``x``.  Copy what must be kept.
  (``dgamma``, ``dbeta``, the BatchNorm statistics and running statistics stay new arrays
  at every call, as in the book.)  Pickles and copies leave the buffers behind.

Anything else (layers replaced or reordered, mixed dtypes, a non-ndarray input) runs the
layers one by one, as before.
"""

import os
import pickle
import tempfile
from collections import OrderedDict

import numpy as np

from bpfast import layers as _layers
from bpfast import reference as _ref
from bpfast._kernels import affine as _kaffine
from bpfast._kernels import batch_normalization as _kbn
from bpfast._kernels import dropout as _kdropout
from bpfast._kernels import multi_layer_net as _kmln
from bpfast._kernels import relu as _krelu
from bpfast._kernels import sigmoid as _ksigmoid
from bpfast._threads import threads_for
from bpfast._validation import F32, F64, KERNEL_DTYPES

__all__ = ["use_compiled_layers", "backprop", "ParamsFile", "FusedGradient"]


def _compiled(layer):
    """The :mod:`bpfast.layers` counterpart of a freshly built reference layer."""
    kind = type(layer)
    if kind is _ref.Affine:
        return _layers.Affine(layer.W, layer.b)
    if kind is _ref.Relu:
        return _layers.Relu()
    if kind is _ref.Sigmoid:
        return _layers.Sigmoid()
    if kind is _ref.Dropout:
        return _layers.Dropout(layer.dropout_ratio)
    if kind is _ref.BatchNormalization:
        return _layers.BatchNormalization(layer.gamma, layer.beta, layer.momentum,
                                          layer.running_mean, layer.running_var)
    if kind is _ref.Convolution:
        return _layers.Convolution(layer.W, layer.b, layer.stride, layer.pad)
    if kind is _ref.Pooling:
        return _layers.Pooling(layer.pool_h, layer.pool_w, layer.stride, layer.pad)
    if kind is _ref.SoftmaxWithLoss:
        return _layers.SoftmaxWithLoss()
    raise TypeError(f"no compiled counterpart for {kind.__name__}")  # a bug in bpfast


def use_compiled_layers(net):
    """Replace ``net.layers`` (same keys, same order) and ``net.last_layer`` in place."""
    for key, layer in net.layers.items():
        net.layers[key] = _compiled(layer)
    net.last_layer = _compiled(net.last_layer)


def backprop(net):
    """``last_layer.backward(1)`` then every layer in reverse, as the book's ``gradient``.

    The first layer, when it is an Affine or Convolution of :mod:`bpfast.layers`, computes
    only its ``dW``/``db``: the input gradient is the one result nobody uses.
    """
    dout = net.last_layer.backward(1)
    layers = list(net.layers.values())
    first = layers[0]
    for layer in reversed(layers[1:]):
        dout = layer.backward(dout)
    if type(first) in (_layers.Affine, _layers.Convolution):
        first._backward_params(dout)
    else:
        first.backward(dout)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _umask()


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"shape {value.shape}, dtype {value.dtype}"
    return f"a {type(value).__name__}"


class ParamsFile:
    """``save_params``/``load_params`` for a network with ``params`` and ``layers``.

    The file format is the book's (``ch07/simple_convnet.py``): a pickled ``dict`` of
    parameter name to ndarray, so files written by the book load here and files written here
    load in the book.
    """

    def save_params(self, file_name="params.pkl"):
        """Write ``params`` to ``file_name`` (a pickled dict of arrays), atomically.

        The data goes to a temporary file in the same directory, which then replaces
        ``file_name`` (``os.replace``): a failure midway (a full disk, an interrupt) leaves
        any previous file intact and no partial file behind.

        Parameters
        ----------
        file_name : str or os.PathLike, default "params.pkl"
        """
        params = {key: val for key, val in self.params.items()}
        path = os.fspath(file_name)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(params, f)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp creates the file private (0600); give it what open() would have.
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def load_params(self, file_name="params.pkl"):
        """Replace ``params`` with the arrays saved in ``file_name``.

        As in the book, the loaded arrays are re-bound into ``params`` and into the layers
        that held the old ones (``W``, ``b``, ``gamma``, ``beta``).  Unlike the book, the
        file is checked first: it must hold a dict with exactly the network's parameter
        names, each an ndarray of the network's shape and dtype.  Otherwise ``ValueError``
        (naming the parameter and both shapes/dtypes) and the network is left untouched.

        .. warning:: The file is read with :mod:`pickle`, which can run arbitrary code
           while loading: load only files you trust.

        Parameters
        ----------
        file_name : str or os.PathLike, default "params.pkl"

        Raises
        ------
        ValueError
            The file does not match the network.
        """
        with open(file_name, "rb") as f:
            loaded = pickle.load(f)
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{file_name!s}: expected a pickled dict of parameter arrays, got "
                f"{type(loaded).__name__}")
        missing = [k for k in self.params if k not in loaded]
        extra = [k for k in loaded if k not in self.params]
        if missing or extra:
            raise ValueError(
                f"{file_name!s} does not match this network: missing parameters {missing}, "
                f"unexpected parameters {extra}")
        for key, current in self.params.items():
            new = loaded[key]
            if (
                not isinstance(new, np.ndarray)
                or new.shape != np.shape(current)
                or new.dtype != np.asarray(current).dtype
            ):
                raise ValueError(
                    f"{file_name!s}: parameter {key!r} is {_describe(new)} but the network "
                    f"has {_describe(np.asarray(current))}")
        # Which layer attributes hold which parameter (by identity), before re-binding.
        holders = []
        for layer in list(self.layers.values()) + [getattr(self, "last_layer", None)]:
            for attr in ("W", "b", "gamma", "beta"):
                value = getattr(layer, attr, None)
                for key, current in self.params.items():
                    if value is current:
                        holders.append((layer, attr, key))
        for key in list(self.params):
            self.params[key] = loaded[key]
        for layer, attr, key in holders:
            setattr(layer, attr, self.params[key])


# ------------------------------------------------------------------ the fused MLP gradient
# MultiLayerNet and MultiLayerNetExtend compute ``gradient`` here when their layers are the
# ones their constructor built (see fused_gradient): the same kernels and NumPy products as
# the drop-in layers, in the same order on the same operands -- so the same numbers, bit for
# bit -- but on buffers owned by the network, without the layers' per-call validation, and
# with no array allocated per step for a batch shape seen before.

# Sizes (elements) above which the step's own kernels use a thread team.  Far higher than the
# layers' thresholds, for the reason given in bpfast/two_layer_net.py: these kernels sit
# between GEMMs, and single-threaded each takes far less than a thread team can cost to
# gather on a loaded 2-core machine.
_STEP_PAR = 1 << 22
# Batch shapes whose buffers are kept (full batches, a last partial one, one more).
_MAX_WORKSPACES = 4

_CTYPE = {F32: "float", F64: "double"}
_BIAS_ADD = {d: _kaffine.bias_add[c] for d, c in _CTYPE.items()}
_COLUMN_SUM = {d: _kaffine.column_sum[c] for d, c in _CTYPE.items()}
_RELU_FWD = {d: _krelu.relu_forward[c] for d, c in _CTYPE.items()}
_RELU_BWD = {d: _krelu.relu_backward[c] for d, c in _CTYPE.items()}
_SIGMOID_FWD = {d: _ksigmoid.sigmoid_forward[c] for d, c in _CTYPE.items()}
_SIGMOID_BWD = {d: _ksigmoid.sigmoid_backward[c] for d, c in _CTYPE.items()}
_DROPOUT_FWD = {d: _kdropout.dropout_forward[c] for d, c in _CTYPE.items()}
_DROPOUT_BWD = {d: _kdropout.dropout_backward[c] for d, c in _CTYPE.items()}
_BN_TRAIN = {d: _kbn.bn_forward_train[c] for d, c in _CTYPE.items()}
_BN_BWD = {d: _kbn.bn_backward[c] for d, c in _CTYPE.items()}
_HIDDEN_FWD = {d: _kmln.hidden_forward[c] for d, c in _CTYPE.items()}
_HIDDEN_BWD = {d: _kmln.hidden_backward[c] for d, c in _CTYPE.items()}
_DECAY = {d: _kmln.weight_decay_grad[c] for d, c in _CTYPE.items()}

# The function the book's Dropout draws with; a patched ``np.random.rand`` (a test double,
# say) is honoured by drawing through it instead.
_GLOBAL_RAND = np.random.rand
_generator_cache = [None, None]  # [bit generator, Generator on it]


def _draw_uniform(out):
    """Fill ``out`` (float64, C-contiguous) with ``np.random.rand(*out.shape)``'s numbers.

    ``np.random.rand`` is the legacy global ``RandomState``; its uniform draws and those of a
    ``Generator`` on the same MT19937 bit generator are the same C routine on the same state
    (``random_standard_uniform_fill``), so filling through that Generator with ``out=`` gives
    the very numbers, advances the very stream, and allocates nothing.
    """
    rand = np.random.rand
    bitgen = getattr(getattr(rand, "__self__", None), "_bit_generator", None)
    if rand is not _GLOBAL_RAND or type(bitgen) is not np.random.MT19937:
        out[...] = rand(*out.shape)
        return
    if _generator_cache[0] is not bitgen:
        _generator_cache[0] = bitgen
        _generator_cache[1] = np.random.Generator(bitgen)
    _generator_cache[1].random(out=out)


def _weak_exact(lam, dtype):
    """True when ``lam * W`` (W of ``dtype``) is ``W`` times ``float(lam)`` rounded to dtype.

    Python floats and small ints are NumPy "weak" scalars: converted to the array's dtype,
    which a C cast of ``float(lam)`` reproduces (for float32 unless it would overflow).
    """
    kind = type(lam)
    if kind is float:
        return dtype == F64 or abs(lam) < 3.0e38 or lam != lam
    return kind is int and -(2**24) <= lam <= 2**24


class _Hidden:
    """One hidden block: Affine -> [BatchNorm] -> activation -> [Dropout], validated."""

    __slots__ = ("affine", "bn", "act", "relu", "drop", "ratio", "ratio_obj", "W", "b", "gamma",
                 "beta")


def _weights(affine, rows, dtype):
    """(W, b) of an Affine layer if the fused step can use them as they are, else None."""
    W, b = affine.W, affine.b
    if (
        type(W) is not np.ndarray
        or type(b) is not np.ndarray
        or W.dtype != dtype
        or b.dtype != dtype
        or W.ndim != 2
        or b.ndim != 1
        or W.shape[0] != rows
        or b.shape[0] != W.shape[1]
        or W.shape[1] == 0
        or not b.flags.c_contiguous
    ):
        return None
    return W, b


def _plan(net, x):
    """The hidden blocks and the output Affine's (layer, W, b), validated, or None.

    None means "use the layers": the fused step needs exactly what the constructors of
    MultiLayerNet(Extend) build -- the book's keys in the book's order (BatchNorm and
    Dropout layers present exactly when ``use_batchnorm``/``use_dropout`` say so), the
    :mod:`bpfast.layers` classes, and every parameter a plain ndarray of the input's dtype
    (float32 or float64) with matching shapes, biases/gamma/beta C-contiguous.
    """
    layers = net.layers
    if type(layers) is not OrderedDict or type(x) is not np.ndarray or x.ndim == 0:
        return None
    dtype = x.dtype
    count = net.hidden_layer_num
    if (
        dtype not in KERNEL_DTYPES
        or type(net.last_layer) is not _layers.SoftmaxWithLoss
        or type(count) is not int
        or count < 0
    ):
        return None
    n = x.shape[0]
    if n == 0:
        return None
    use_bn = getattr(net, "use_batchnorm", False) is True
    use_drop = getattr(net, "use_dropout", False) is True
    items = list(layers.items())
    if len(items) != count * (2 + use_bn + use_drop) + 1:
        return None
    rows = x.size // n
    hidden = []
    pos = 0
    for idx in range(1, count + 1):
        i = str(idx)
        blk = _Hidden()
        key, blk.affine = items[pos]
        pos += 1
        if key != "Affine" + i or type(blk.affine) is not _layers.Affine:
            return None
        wb = _weights(blk.affine, rows, dtype)
        if wb is None:
            return None
        blk.W, blk.b = wb
        rows = blk.W.shape[1]
        blk.bn = None
        if use_bn:
            key, layer = items[pos]
            pos += 1
            if key != "BatchNorm" + i or type(layer) is not _layers.BatchNormalization:
                return None
            g, be = layer.gamma, layer.beta
            if (
                type(g) is not np.ndarray or type(be) is not np.ndarray
                or g.dtype != dtype or be.dtype != dtype
                or g.shape != (rows,) or be.shape != (rows,)
                or not g.flags.c_contiguous or not be.flags.c_contiguous
            ):
                return None
            blk.bn, blk.gamma, blk.beta = layer, g, be
        key, blk.act = items[pos]
        pos += 1
        kind = type(blk.act)
        if key != "Activation_function" + i or kind not in (_layers.Relu, _layers.Sigmoid):
            return None
        blk.relu = kind is _layers.Relu
        blk.drop, blk.ratio = None, 0.0
        if use_drop:
            key, layer = items[pos]
            pos += 1
            if key != "Dropout" + i or type(layer) is not _layers.Dropout:
                return None
            ratio = layer.dropout_ratio
            if type(ratio) not in (float, int):  # the layer's exact-scalar rule, narrowed
                return None
            blk.drop, blk.ratio, blk.ratio_obj = layer, float(ratio), ratio
        hidden.append(blk)
    key, affine = items[pos]
    i = str(count + 1)
    if key != "Affine" + i or type(affine) is not _layers.Affine:
        return None
    wb = _weights(affine, rows, dtype)
    if wb is None:
        return None
    return hidden, affine, wb


class _Workspace:
    """The buffers of one batch shape (see FusedGradient)."""

    def __init__(self, n, sizes, dtype, bn, drop, relus):
        e = np.empty
        width = max(sizes) if sizes else 0
        # Only what a layer keeps (or backward reads) needs a buffer per block; the Affine
        # outputs are consumed at once and share one.  The fused Relu+BatchNorm blocks
        # write neither the BatchNorm nor (with Dropout) the Relu output.
        fused = [bn and relu for relu in relus]
        self.shapes = [(n, h) for h in sizes]
        self.z = e(n * width, dtype)
        self.xc = [e((n, h), dtype) if bn else None for h in sizes]
        self.xn = [e((n, h), dtype) if f else None for h, f in zip(sizes, fused)]
        self.mean = e(width, dtype)  # batch statistics, consumed by the running update
        self.var = e(width, dtype)
        self.bn = [e((n, h), dtype) if bn and not f else None for h, f in zip(sizes, fused)]
        self.act = [e((n, h), dtype) if not (f and drop) else None
                    for h, f in zip(sizes, fused)]
        self.amask = [e((n, h), np.uint8) if relu else None  # Relu masks
                      for h, relu in zip(sizes, relus)]
        self.dmask = [e((n, h), np.uint8) if drop else None for h in sizes]
        self.out = [e((n, h), dtype) if drop else None for h in sizes]  # Dropout outputs
        self.u = e(n * width) if drop else None                # uniform draws (float64)
        self.d1 = e(n * width, dtype)                          # backward scratch
        self.d2 = e(n * width, dtype)
        self.s = None                                          # logits (n, C)
        # Views made once, not at every step.
        sizes_n = [n * h for h in sizes]
        self.zv = [self.z[:m].reshape(sh) for m, sh in zip(sizes_n, self.shapes)]
        self.uv = [self.u[:m].reshape(sh) if drop else None
                   for m, sh in zip(sizes_n, self.shapes)]
        self.scratch = [[buf[:m].reshape(sh) for m, sh in zip(sizes_n, self.shapes)]
                        for buf in (self.d1, self.d2)]
        self.amask_bool = [None if a is None else a.view(np.bool_) for a in self.amask]
        self.dmask_bool = [None if a is None else a.view(np.bool_) for a in self.dmask]


class FusedGradient:
    """Mixin: ``gradient`` of MultiLayerNet(Extend) through the fused step where it applies.

    The subclass's ``gradient`` calls :meth:`_fused_gradient` and falls back to the
    layer-by-layer code when it returns None.
    """

    def __getstate__(self):
        # The buffers are caches: pickles and copies carry the book's state only.
        state = self.__dict__.copy()
        state.pop("_workspaces", None)
        state.pop("_grad_buffers", None)
        state.pop("_plan_cache", None)
        return state

    def _workspace(self, n, sizes, dtype, bn, drop, relus):
        spaces = self.__dict__.setdefault("_workspaces", {})
        key = (n, sizes, dtype, bn, drop, relus)
        ws = spaces.get(key)
        if ws is None:
            if len(spaces) >= _MAX_WORKSPACES:
                del spaces[next(iter(spaces))]  # the oldest
            ws = spaces[key] = _Workspace(n, sizes, dtype, bn, drop, relus)
        return ws

    def _grads_for(self, shapes, dtype):
        """(dW, db, W gradient) buffers per Affine layer, kept across calls."""
        cached = self.__dict__.get("_grad_buffers")
        if cached is None or cached[0] != (shapes, dtype):
            bufs = []
            for idx, s in enumerate(shapes, 1):
                dW, gW = np.empty(s, dtype), np.empty(s, dtype)
                bufs.append((dW, np.empty(s[1], dtype), gW, dW.reshape(-1), gW.reshape(-1),
                             "W" + str(idx), "b" + str(idx), "gamma" + str(idx),
                             "beta" + str(idx)))
            cached = self._grad_buffers = ((shapes, dtype), bufs)
        return cached[1]

    def _cached_plan(self, x):
        """``_plan(self, x)``, re-derived only when something it checked may have changed.

        The cache holds the layers (by identity, with their keys and order) and every array
        the plan validated with its shape and dtype; any difference -- a layer replaced, a
        parameter re-bound or reshaped in place, another input dtype or width -- re-plans.
        """
        cache = self.__dict__.get("_plan_cache")
        layers = self.layers
        if (
            cache is not None
            and type(layers) is OrderedDict
            and type(x) is np.ndarray
            and x.ndim != 0
            and x.shape[0] != 0
            and x.dtype == cache[1]
            and x.size // x.shape[0] == cache[2]
            and self.last_layer is cache[3]
            and self.hidden_layer_num == cache[6]
            and getattr(self, "use_batchnorm", False) is cache[7]
            and getattr(self, "use_dropout", False) is cache[8]
            and list(layers.items()) == cache[4]
        ):
            for owner, attr, value, shape, dtype in cache[5]:
                current = getattr(owner, attr)
                if current is not value or current.shape != shape or current.dtype != dtype:
                    break
            else:
                for blk in cache[0][0]:
                    if blk.drop is not None and blk.drop.dropout_ratio is not blk.ratio_obj:
                        break
                else:
                    return cache[0]
        plan = _plan(self, x)
        if plan is None:
            self.__dict__.pop("_plan_cache", None)
            return None
        hidden, out_affine, (Wo, bo) = plan
        watched = [(out_affine, "W", Wo), (out_affine, "b", bo)]
        for blk in hidden:
            watched += [(blk.affine, "W", blk.W), (blk.affine, "b", blk.b)]
            if blk.bn is not None:
                watched += [(blk.bn, "gamma", blk.gamma), (blk.bn, "beta", blk.beta)]
        self._plan_cache = (
            plan, x.dtype, x.size // x.shape[0], self.last_layer, list(layers.items()),
            [(o, a, v, v.shape, v.dtype) for o, a, v in watched],
            self.hidden_layer_num, getattr(self, "use_batchnorm", False),
            getattr(self, "use_dropout", False),
        )
        return plan

    def _fused_gradient(self, x, t):
        plan = self._cached_plan(x)
        if plan is None:
            return None
        hidden, out_affine, (Wo, bo) = plan
        dtype = x.dtype
        n = x.shape[0]
        sizes = tuple(blk.W.shape[1] for blk in hidden)
        bn = any(blk.bn is not None for blk in hidden)
        drop = any(blk.drop is not None for blk in hidden)
        relus = tuple(blk.relu for blk in hidden)
        ws = self._workspace(n, sizes, dtype, bn, drop, relus)
        # One thread count for every block's kernels (their sizes are all below or all
        # near the threshold in practice; it only matters for huge layers).
        nt = threads_for(n * max(sizes), _STEP_PAR) if sizes else 1

        # ---- forward, as predict(x, train_flg): the drop-in layers' kernels on buffers
        h = x.reshape(n, -1)
        first_shape = x.shape
        for i, blk in enumerate(hidden):
            affine = blk.affine
            affine.original_x_shape = first_shape if i == 0 else h.shape
            affine.x = h
            z = ws.zv[i]
            np.dot(h, blk.W, out=z)
            if blk.bn is not None:
                layer = blk.bn
                d = z.shape[1]
                layer.input_shape = z.shape
                if layer.running_mean is None:
                    layer.running_mean = np.zeros(d)
                    layer.running_var = np.zeros(d)
                mean, var, std = ws.mean[:d], ws.var[:d], np.empty(d, dtype)
                xc = ws.xc[i]
            if blk.bn is not None and blk.relu:
                # Bias add, BatchNorm, Relu and Dropout in one kernel (fused_block).
                if blk.drop is not None:
                    u = ws.uv[i]
                    _draw_uniform(u)
                    h = ws.out[i]
                    dmask = ws.dmask[i]
                    blk.drop.mask = ws.dmask_bool[i]
                else:
                    u = dmask = None
                    h = ws.act[i]
                xn = ws.xn[i]
                _HIDDEN_FWD[dtype](z, blk.b, blk.gamma, blk.beta, u, blk.ratio, mean, var,
                                   std, xc, xn, ws.amask[i], dmask, h, nt)
                blk.act.mask = ws.amask_bool[i]
            else:
                _BIAS_ADD[dtype](z, blk.b, nt)
                a = z
                if blk.bn is not None:
                    a = ws.bn[i]
                    _BN_TRAIN[dtype](z, mean, var, std, xc, None, blk.gamma, blk.beta, a, nt)
                act = ws.act[i]
                if blk.relu:
                    _RELU_FWD[dtype](a.reshape(-1), act.reshape(-1), ws.amask[i].reshape(-1),
                                     nt)
                    blk.act.mask = ws.amask[i].view(np.bool_)
                else:
                    _SIGMOID_FWD[dtype](a.reshape(-1), act.reshape(-1), nt)
                    blk.act.out = act
                h = act
                if blk.drop is not None:
                    u = ws.uv[i]
                    _draw_uniform(u)
                    h = ws.out[i]
                    _DROPOUT_FWD[dtype](act.reshape(-1), u.reshape(-1), blk.ratio,
                                        h.reshape(-1), ws.dmask[i].reshape(-1), nt)
                    blk.drop.mask = ws.dmask[i].view(np.bool_)
            if blk.bn is not None:
                # What BatchNormalization._forward_train leaves behind.
                layer.batch_size = n
                layer.xc = xc
                if blk.relu:  # the fused kernel stores xn (backward then divides less)
                    layer.xn = xn
                    layer._xn_from = (None, None)
                else:
                    layer.__dict__.pop("xn", None)
                    layer._xn_from = (xc, std)
                layer.std = std
                layer._update_running(mean, var)
        out_affine.original_x_shape = h.shape if hidden else first_shape
        out_affine.x = h
        c = Wo.shape[1]
        if ws.s is None or ws.s.shape != (n, c):
            ws.s = np.empty((n, c), dtype)
        np.dot(h, Wo, out=ws.s)
        _BIAS_ADD[dtype](ws.s, bo, 1)
        self.last_layer.forward(ws.s, t)

        # ---- backward, as the book's loop (without the first layer's input gradient)
        shapes = tuple(blk.W.shape for blk in hidden) + (Wo.shape,)
        grads = self._grads_for(shapes, dtype)
        dy = self.last_layer.backward(1)
        if type(dy) is not np.ndarray or dy.dtype != dtype or not dy.flags.c_contiguous:
            dy = np.ascontiguousarray(dy, dtype)
        dW, db = grads[-1][:2]
        np.dot(h.T, dy, out=dW)
        _COLUMN_SUM[dtype](dy, db, 1)
        out_affine.dW, out_affine.db = dW, db
        # Two scratch buffers, alternating: each step writes into the one its input is not in.
        bufs = ws.scratch
        cur = None  # which of bufs holds dz (None: dz is dy)
        dz = dy
        W = Wo
        for i in range(len(hidden) - 1, -1, -1):
            blk = hidden[i]
            shape = ws.shapes[i]
            cur = 0 if cur != 0 else 1
            g = bufs[cur][i]
            np.dot(dz, W.T, out=g)
            dW, db = grads[i][:2]
            if blk.bn is not None and blk.relu:
                layer = blk.bn
                d = shape[1]
                cur ^= 1
                g2 = bufs[cur][i]
                dgamma, dbeta = np.empty(d, dtype), np.empty(d, dtype)
                _HIDDEN_BWD[dtype](g, None if blk.drop is None else ws.dmask[i], ws.amask[i],
                                   ws.xn[i], ws.xc[i], layer.std, blk.gamma, g2, dgamma,
                                   dbeta, db, nt)
                layer.dgamma, layer.dbeta = dgamma, dbeta
                g = g2
            else:
                if blk.drop is not None:
                    cur ^= 1
                    g2 = bufs[cur][i]
                    _DROPOUT_BWD[dtype](g.reshape(-1), ws.dmask[i].reshape(-1), g2.reshape(-1),
                                        nt)
                    g = g2
                if blk.relu:
                    flat = g.reshape(-1)
                    _RELU_BWD[dtype](flat, ws.amask[i].reshape(-1), flat, nt)
                else:
                    cur ^= 1
                    g2 = bufs[cur][i]
                    _SIGMOID_BWD[dtype](g.reshape(-1), ws.act[i].reshape(-1), g2.reshape(-1), nt)
                    g = g2
                if blk.bn is not None:
                    layer = blk.bn
                    d = shape[1]
                    cur ^= 1
                    g2 = bufs[cur][i]
                    dgamma, dbeta = np.empty(d, dtype), np.empty(d, dtype)
                    _BN_BWD[dtype](g, None, ws.xc[i], layer.std, blk.gamma, n, g2, dgamma, dbeta,
                                   nt)
                    layer.dgamma, layer.dbeta = dgamma, dbeta
                    g = g2
                _COLUMN_SUM[dtype](g, db, 1)
            np.dot(blk.affine.x.T, g, out=dW)
            blk.affine.dW, blk.affine.db = dW, db
            dz = g
            W = blk.W
        # ---- the book's grads dict: W{i} = dW + lambda * W (into buffers), db, dgamma...
        result = {}
        lam = self.weight_decay_lambda
        params = self.params
        decay = _weak_exact(lam, dtype)
        nblocks = len(hidden)
        for idx, (dW, db, gW, dW_flat, gW_flat, kW, kb, kg, kbeta) in enumerate(grads):
            P = params[kW]
            if (
                decay and type(P) is np.ndarray and P.shape == dW.shape and P.dtype == dtype
                and P.flags.c_contiguous
            ):
                _DECAY[dtype](dW_flat, P.reshape(-1), lam, gW_flat,
                              1 if P.size < _STEP_PAR else threads_for(P.size, _STEP_PAR))
            else:
                gW = dW + lam * P  # the book's expression, a new array
            result[kW] = gW
            result[kb] = db
            if idx < nblocks and hidden[idx].bn is not None:  # use_batchnorm
                bn = hidden[idx].bn
                result[kg] = bn.dgamma
                result[kbeta] = bn.dbeta
        return result
