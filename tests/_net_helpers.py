"""Helpers of the network tests (MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, Trainer).

``pair`` builds the book's network and bpfast's from the same ``np.random.seed``; the
comparisons check keys, order, shapes, dtypes and values (float64: 1e-12 relative to the
largest magnitude, as the matrix products' summation order is BLAS's).
"""

import numpy as np

import bpfast
from bpfast import reference as ref

RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def pair(name, *args, seed=0, **kwargs):
    """``(reference_net, bpfast_net)`` of class ``name`` built from the same seed.

    Also checks that both constructors consumed the global random stream identically.
    """
    np.random.seed(seed)
    net_ref = getattr(ref, name)(*args, **kwargs)
    state_ref = np.random.get_state()[1].copy()
    np.random.seed(seed)
    net_fast = getattr(bpfast, name)(*args, **kwargs)
    np.testing.assert_array_equal(np.random.get_state()[1], state_ref)
    return net_ref, net_fast


def assert_close(actual, desired, dtype=np.float64, what="", scale=0.0):
    """Equal shape and dtype; values within rtol of max(|desired|, scale)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    assert actual.dtype == desired.dtype, (what, actual.dtype, desired.dtype)
    rtol = RTOL[np.dtype(dtype)]
    scale = max(scale, float(np.max(np.abs(desired))) if desired.size else 0.0)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=what)


def assert_grads_close(g_fast, g_ref, dtype=np.float64):
    """Same keys in the same order; every gradient within tolerance.

    The absolute tolerance is relative to the largest gradient of the network: some
    gradients are rounding noise around zero (a bias followed by BatchNorm has gradient 0
    in exact arithmetic), and their last bits depend on the summation order.
    """
    assert list(g_fast) == list(g_ref)
    scale = max(float(np.max(np.abs(g))) for g in g_ref.values())
    for key in g_ref:
        assert_close(g_fast[key], g_ref[key], dtype, key, scale=scale)


def rebind_params(net, dtype):
    """Convert every parameter to ``dtype``, re-bound in ``params`` and in the layers."""
    for key, old in list(net.params.items()):
        new = old.astype(dtype)
        net.params[key] = new
        for layer in net.layers.values():
            for attr in ("W", "b", "gamma", "beta"):
                if getattr(layer, attr, None) is old:
                    setattr(layer, attr, new)
    return net


def same_random_draws(fn_ref, fn_fast, seed=1):
    """Run both from the same seed; return both results; check the stream ended equal."""
    np.random.seed(seed)
    r = fn_ref()
    state = np.random.get_state()[1].copy()
    np.random.seed(seed)
    f = fn_fast()
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    return r, f
