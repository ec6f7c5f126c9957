"""What the compiled networks share: their layers, backpropagation, and parameter files.

* :func:`use_compiled_layers` swaps the book's layers a reference constructor built for the
  :mod:`bpfast.layers` classes, holding the very same parameter arrays (the weights were
  already drawn by the reference constructor, so the random stream is the book's).
* :func:`backprop` is the book's backward loop, except that the first layer's input
  gradient -- which the book computes and throws away -- is not computed.
* :class:`ParamsFile` gives every network ``save_params``/``load_params``: atomic writes, and
  loads that check the file against the network before changing anything.
"""

import os
import pickle
import tempfile

import numpy as np

from bpfast import layers as _layers
from bpfast import reference as _ref

__all__ = ["use_compiled_layers", "backprop", "ParamsFile"]


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
