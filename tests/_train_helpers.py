"""Helpers of the training tests (TwoLayerNet, optimizers, numerical gradients).

Synthetic MNIST-like data: sparse values in [0, 1], float32, 784 features, 10 classes, made
from a local ``np.random.default_rng`` -- learnable (each class has its own sparse prototype)
so that a few hundred SGD steps really move the loss.
"""

import numpy as np

from bpfast import reference as ref


def mnist_like(rng, n, *, features=784, classes=10, dtype=np.float32):
    """``(x, t)``: ``x`` (n, features) in [0, 1], ~80 % zeros; ``t`` int64 labels (n,)."""
    proto_rng = np.random.default_rng(12345)  # the same class prototypes for every batch
    prototypes = (proto_rng.random((classes, features)) < 0.15) * proto_rng.random(
        (classes, features)
    )
    t = rng.integers(0, classes, n)
    keep = rng.random((n, features)) < 0.8
    noise = (rng.random((n, features)) < 0.05) * rng.random((n, features))
    x = np.clip(prototypes[t] * keep + noise, 0.0, 1.0).astype(dtype)
    return x, t


def one_hot(t, classes=10, dtype=np.float32):
    """One-hot targets (n, classes) of the given float dtype."""
    out = np.zeros((t.size, classes), dtype)
    out[np.arange(t.size), t] = 1
    return out


def reference_as(net, dtype):
    """Give a reference TwoLayerNet parameters of ``dtype``, re-bound in params and layers."""
    for key, layer, attr in (("W1", "Affine1", "W"), ("b1", "Affine1", "b"),
                             ("W2", "Affine2", "W"), ("b2", "Affine2", "b")):
        net.params[key] = net.params[key].astype(dtype)
        setattr(net.layers[layer], attr, net.params[key])
    return net


def net_pair(sizes, seed, dtype=np.float64):
    """A reference and a bpfast TwoLayerNet made from the same ``np.random.seed``."""
    import bpfast

    np.random.seed(seed)
    net_ref = ref.TwoLayerNet(*sizes)
    np.random.seed(seed)
    net_fast = bpfast.TwoLayerNet(*sizes, dtype=dtype)
    if dtype != np.float64:
        reference_as(net_ref, dtype)
    return net_ref, net_fast


# Tolerances for bpfast vs the reference where the operation order differs.  The softmax uses
# bpfast's vector exp (< 2 ulp) and float32 sums accumulate in double; everything else is the
# book's arithmetic.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}
ATOL = {np.dtype(np.float64): 1e-15, np.dtype(np.float32): 1e-7}


def assert_grads_close(g_fast, g_ref, dtype):
    """Same keys in the same order, same shapes and dtypes, values within tolerance."""
    dtype = np.dtype(dtype)
    assert list(g_fast) == list(g_ref)
    for key in g_ref:
        assert g_fast[key].shape == g_ref[key].shape, key
        assert g_fast[key].dtype == g_ref[key].dtype, key
        scale = np.max(np.abs(g_ref[key]))
        np.testing.assert_allclose(
            g_fast[key], g_ref[key], rtol=RTOL[dtype], atol=ATOL[dtype] + RTOL[dtype] * scale,
            err_msg=key,
        )
