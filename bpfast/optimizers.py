"""Drop-in replacements for the book's ``common/optimizer.py``.

``from bpfast.optimizers import *`` stands in for ``from common.optimizer import *``: the same
six classes (``SGD``, ``Momentum``, ``Nesterov``, ``AdaGrad``, ``RMSprop``, ``Adam``), the same
constructor arguments and defaults, the same state attributes (``lr``, ``momentum``,
``decay_rate``, ``beta1``, ``beta2``, ``iter``, ``v``, ``h``, ``m``), and the same numbers.
Each class subclasses its :mod:`bpfast.reference.optimizer` counterpart.

``update(params, grads)`` walks ``params.keys()`` in order and changes every ``params[key]``
in place; state is created lazily at the first call (``zeros_like`` of each parameter, keyed
by name); ``grads`` is never modified; a key missing from ``grads`` (or, after the first
call, from the state) raises ``KeyError`` -- all as in the book.

Per parameter, the compiled path runs when the parameter, its gradient and its state arrays
are plain ndarrays of one dtype (float32 or float64) and one shape, all C-contiguous (or all
F-contiguous), writeable and not overlapping, and when the hyperparameters are Python
numbers (or NumPy scalars that do not change the array's precision).  It is one fused pass
per parameter, bit-identical to the book's NumPy statements for float64 *and* float32 (same
operations, same order, same precision; see ``bpfast/_kernels/optimizers.pyx``).  Anything
else -- Python floats (``ch06/optimizer_compare_naive.py``), integer or float16 arrays,
mixed dtypes, broadcasting gradients, strided views -- runs the book's own statements.

One observable difference: the book's ``Momentum`` re-binds ``v[key]`` to a new array at
every step; the compiled path updates ``v[key]`` in place (same values, same dtype).
"""

import numpy as np

from bpfast import reference as _ref
from bpfast._kernels import optimizers as _kopt
from bpfast._threads import threads_for
from bpfast._validation import F32, F64, KERNEL_DTYPES
from bpfast.layers import _PAR_ELEMENTWISE  # the layers' thread threshold (see there why)

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]

_EPS = 1e-7  # the book's eps, outside the square root
# Below this many elements the book's `p -= lr * g` (one small temporary) costs less than the
# checks a kernel call needs (a few microseconds: dtype, layout and overlap), and computes the
# same bits; above it the kernel's single pass wins (the `SGD` update time is part of the
# "step" rows of `python benchmarks/run.py --filter MultiLayerNetExtend --filter NetStep`).
_SGD_KERNEL_MIN = 1 << 14


def _spec(fused):
    """The specialisations of a fused kernel by dtype (skips the per-call fused dispatch)."""
    return {F32: fused["float"], F64: fused["double"]}


_SGD = _spec(_kopt.sgd_update)
_MOMENTUM = _spec(_kopt.momentum_update)
_NESTEROV = _spec(_kopt.nesterov_update)
_ADAGRAD = _spec(_kopt.adagrad_update)
_RMSPROP = _spec(_kopt.rmsprop_update)
_ADAM = _spec(_kopt.adam_update)


def _zeros_like_each(params):
    """The book's lazily created optimizer state: ``zeros_like`` of every parameter, by key."""
    return {key: np.zeros_like(val) for key, val in params.items()}


def weak_scalar(value, dtype):
    """True when ``value * array_of_dtype`` is computed in ``dtype`` with ``value`` rounded once.

    Python ints and floats are "weak" under NumPy's promotion rules (NEP 50): they take the
    array's precision.  A NumPy scalar keeps its own dtype and may promote the operation
    (``np.float64(0.1) * float32_array`` runs in float64), which the kernels do not model.
    """
    kind = type(value)
    if kind is float or kind is int:
        return True
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        return value.dtype.kind in "iuf" and np.result_type(value, dtype) == dtype
    return False


def flat_views(p, g, *state):
    """1-D views of a parameter, its gradient and its state for a kernel, or ``None``.

    ``None`` (use the book's statements) unless all are plain ndarrays of one kernel dtype
    and one shape, all C-contiguous or all F-contiguous (so that element ``i`` of every view
    is the same array element), ``p`` and the state are writeable, and no two overlap.
    """
    if type(p) is not np.ndarray or type(g) is not np.ndarray:
        return None
    dtype, shape = p.dtype, p.shape
    if dtype not in KERNEL_DTYPES or g.dtype != dtype or g.shape != shape:
        return None
    # Called once per parameter per step: read each flags object once (every `.flags` access
    # builds a new one) and ravel (a view for contiguous input) rather than reshape.
    flags = p.flags
    if not flags.writeable:
        return None
    if flags.c_contiguous:
        order = "C"
    elif flags.f_contiguous:
        order = "F"
    else:
        return None
    arrays = (p, g) + state
    for a in state:
        if type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape:
            return None
        if not a.flags.writeable:
            return None
    for a in arrays[1:]:
        if not (a.flags.c_contiguous if order == "C" else a.flags.f_contiguous):
            return None
    n = len(arrays)
    for i in range(n):
        for j in range(i + 1, n):
            if np.may_share_memory(arrays[i], arrays[j]):
                return None
    return tuple(a.ravel(order) for a in arrays)


def sgd_step(p, g, lr, n_threads=None):
    """``p -= lr * g`` in place with the kernel; False (nothing done) if it does not apply.

    ``n_threads`` defaults to the elementwise threshold rule of the layers.
    """
    views = flat_views(p, g)
    if views is None or not weak_scalar(lr, p.dtype):
        return False
    if n_threads is None:
        n_threads = threads_for(p.size, _PAR_ELEMENTWISE)
    _SGD[p.dtype](views[0], views[1], lr, n_threads=n_threads)
    return True


class SGD(_ref.SGD):
    """Stochastic gradient descent, as the book's ``SGD`` (section 6.1.2).

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    """

    def update(self, params, grads):
        """``params[key] -= lr * grads[key]`` for every key, in place.

        Parameters
        ----------
        params : dict of str to ndarray (or Python float)
            Updated in place (Python floats are re-bound, as in the book).
        grads : dict of str to ndarray
            Must hold every key of ``params``; not modified.
        """
        for key in params.keys():
            p = params[key]
            if type(p) is np.ndarray and p.size >= _SGD_KERNEL_MIN and sgd_step(
                    p, grads[key], self.lr):
                continue
            params[key] -= self.lr * grads[key]


class Momentum(_ref.Momentum):
    """Momentum SGD, as the book's ``Momentum`` (section 6.1.4).

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.9

    Attributes
    ----------
    v : dict of str to ndarray or None
        Velocities, created at the first ``update`` (``zeros_like`` of each parameter).
    """

    def update(self, params, grads):
        """``v = momentum * v - lr * g``; ``p += v`` for every key, in place.

        Parameters
        ----------
        params : dict of str to ndarray (or Python float)
        grads : dict of str to ndarray
        """
        if self.v is None:
            self.v = _zeros_like_each(params)

        mu, lr = self.momentum, self.lr
        for key in params.keys():
            p, v, g = params[key], self.v[key], grads[key]
            views = flat_views(p, g, v)
            if views is not None and weak_scalar(mu, p.dtype) and weak_scalar(lr, p.dtype):
                pf, gf, vf = views
                _MOMENTUM[p.dtype](pf, vf, gf, mu, lr,
                                   n_threads=threads_for(p.size, _PAR_ELEMENTWISE))
            else:
                self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
                params[key] += self.v[key]


class Nesterov(_ref.Nesterov):
    """Nesterov's accelerated gradient, as the book's ``Nesterov`` (post-2021 order).

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.9

    Attributes
    ----------
    v : dict of str to ndarray or None
        Velocities, created at the first ``update``.
    """

    def update(self, params, grads):
        """``p += momentum**2 * v; p -= (1 + momentum) * lr * g; v = momentum * v - lr * g``.

        Parameters
        ----------
        params : dict of str to ndarray (or Python float)
        grads : dict of str to ndarray
        """
        if self.v is None:
            self.v = _zeros_like_each(params)

        mu, lr = self.momentum, self.lr
        for key in params.keys():
            p, v, g = params[key], self.v[key], grads[key]
            views = flat_views(p, g, v)
            if views is not None and weak_scalar(mu, p.dtype) and weak_scalar(lr, p.dtype):
                # The book's scalar sub-expressions, evaluated in Python as the book does.
                mm, step = mu * mu, (1 + mu) * lr
                if not (weak_scalar(mm, p.dtype) and weak_scalar(step, p.dtype)):
                    views = None
            else:
                views = None
            if views is not None:
                pf, gf, vf = views
                _NESTEROV[p.dtype](pf, vf, gf, mm, step, mu, lr,
                                   n_threads=threads_for(p.size, _PAR_ELEMENTWISE))
            else:
                params[key] += self.momentum * self.momentum * self.v[key]
                params[key] -= (1 + self.momentum) * self.lr * grads[key]
                self.v[key] *= self.momentum
                self.v[key] -= self.lr * grads[key]


class AdaGrad(_ref.AdaGrad):
    """AdaGrad, as the book's ``AdaGrad`` (section 6.1.5).

    Parameters
    ----------
    lr : float, default 0.01

    Attributes
    ----------
    h : dict of str to ndarray or None
        Sums of squared gradients, created at the first ``update``.
    """

    def update(self, params, grads):
        """``h += g * g; p -= lr * g / (sqrt(h) + 1e-7)`` for every key, in place.

        Parameters
        ----------
        params : dict of str to ndarray (or Python float)
        grads : dict of str to ndarray
        """
        if self.h is None:
            self.h = _zeros_like_each(params)

        lr = self.lr
        for key in params.keys():
            p, h, g = params[key], self.h[key], grads[key]
            views = flat_views(p, g, h)
            if views is not None and weak_scalar(lr, p.dtype):
                pf, gf, hf = views
                _ADAGRAD[p.dtype](pf, hf, gf, lr, _EPS,
                                  n_threads=threads_for(p.size, _PAR_ELEMENTWISE))
            else:
                self.h[key] += grads[key] * grads[key]
                params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class RMSprop(_ref.RMSprop):
    """RMSprop, as the book's ``RMSprop``.

    Parameters
    ----------
    lr : float, default 0.01
    decay_rate : float, default 0.99

    Attributes
    ----------
    h : dict of str to ndarray or None
        Running averages of squared gradients, created at the first ``update``.
    """

    def update(self, params, grads):
        """``h = decay * h + (1 - decay) * g * g; p -= lr * g / (sqrt(h) + 1e-7)``.

        Parameters
        ----------
        params : dict of str to ndarray (or Python float)
        grads : dict of str to ndarray
        """
        if self.h is None:
            self.h = _zeros_like_each(params)

        lr, decay = self.lr, self.decay_rate
        for key in params.keys():
            p, h, g = params[key], self.h[key], grads[key]
            views = flat_views(p, g, h)
            if (
                views is not None
                and weak_scalar(lr, p.dtype)
                and weak_scalar(decay, p.dtype)
                and weak_scalar(1 - decay, p.dtype)
            ):
                pf, gf, hf = views
                _RMSPROP[p.dtype](pf, hf, gf, decay, 1 - decay, lr, _EPS,
                                  n_threads=threads_for(p.size, _PAR_ELEMENTWISE))
            else:
                self.h[key] *= self.decay_rate
                self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
                params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class Adam(_ref.Adam):
    """Adam, as the book's ``Adam`` (section 6.1.6): bias corrections folded into ``lr_t``.

    Parameters
    ----------
    lr : float, default 0.001
    beta1 : float, default 0.9
    beta2 : float, default 0.999

    Attributes
    ----------
    iter : int
        Number of ``update`` calls so far (once per call, not per key).
    m, v : dict of str to ndarray or None
        First and second moments, created at the first ``update``.
    """

    def update(self, params, grads):
        """One Adam step for every key, in place.

        ``lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)``;
        ``m += (1 - beta1) * (g - m)``; ``v += (1 - beta2) * (g**2 - v)``;
        ``p -= lr_t * m / (sqrt(v) + 1e-7)``.

        Parameters
        ----------
        params : dict of str to ndarray (or Python float)
        grads : dict of str to ndarray
        """
        if self.m is None:
            self.m, self.v = _zeros_like_each(params), _zeros_like_each(params)

        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)

        c1, c2 = 1 - self.beta1, 1 - self.beta2
        for key in params.keys():
            p, m, v, g = params[key], self.m[key], self.v[key], grads[key]
            views = flat_views(p, g, m, v)
            if (
                views is not None
                # In the book lr_t is a numpy.float64 (from np.sqrt): the last statement runs
                # in double for float32 parameters too.  Anything wider is not modelled.
                and type(lr_t) is np.float64
                and weak_scalar(c1, p.dtype)
                and weak_scalar(c2, p.dtype)
            ):
                pf, gf, mf, vf = views
                _ADAM[p.dtype](pf, mf, vf, gf, c1, c2, lr_t, _EPS,
                               n_threads=threads_for(p.size, _PAR_ELEMENTWISE))
            else:
                self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
                self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
                params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)
