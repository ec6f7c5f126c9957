"""The fused ``gradient`` of MultiLayerNet(Extend) (``bpfast._network.FusedGradient``).

The fused step must give what the drop-in layers give layer by layer -- the same gradients,
layer attributes, running statistics, Dropout masks and random-stream position, bit for bit
(the layer path itself is compared with the book in test_multi_layer_net.py) -- for every
configuration, input layout and parameter dtype it accepts, and must hand anything else to
the layers.  The layer path is forced by disabling the fused one on a twin network.
"""

import copy
import pickle

import numpy as np
import pytest

import bpfast
import bpfast.layers
from bpfast import reference as ref
from bpfast._kernels import multi_layer_net as kmln
from bpfast._network import FusedGradient
from _net_helpers import rebind_params

D, HIDDEN, C, N = 30, [20, 16, 12], 7, 24


def _twins(name, seed=0, **kwargs):
    np.random.seed(seed)
    fused = getattr(bpfast, name)(D, HIDDEN, C, **kwargs)
    np.random.seed(seed)
    layered = getattr(bpfast, name)(D, HIDDEN, C, **kwargs)
    layered._fused_gradient = lambda x, t: None  # the layer-by-layer path
    return fused, layered


def _data(rng, n=N, d=D, c=C, dtype=np.float64):
    return rng.random((n, d)).astype(dtype), rng.integers(0, c, n)


def _gradients(net_a, net_b, x, t, seed):
    np.random.seed(seed)
    ga = net_a.gradient(x, t)
    state_a = np.random.get_state()[1].copy()
    np.random.seed(seed)
    gb = net_b.gradient(x, t)
    np.testing.assert_array_equal(np.random.get_state()[1], state_a)
    return ga, gb


def _assert_identical(a, b, what):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    # Bit for bit, signed zeros and NaNs included.
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=what)


def _assert_same_state(fused, layered):
    for key, layer in fused.layers.items():
        other = layered.layers[key]
        for attr in ("x", "dW", "db", "mask", "out", "xc", "std", "xn", "running_mean",
                     "running_var", "dgamma", "dbeta"):
            if hasattr(other, attr) and getattr(other, attr) is not None:
                _assert_identical(getattr(layer, attr), getattr(other, attr), f"{key}.{attr}")
        for attr in ("original_x_shape", "input_shape", "batch_size"):
            if hasattr(other, attr):
                assert getattr(layer, attr) == getattr(other, attr), (key, attr)
    _assert_identical(fused.last_layer.y, layered.last_layer.y, "last_layer.y")
    assert fused.last_layer.loss == layered.last_layer.loss
    assert fused.last_layer.t is layered.last_layer.t


def _check_steps(fused, layered, batches, lr=0.1):
    for step, (x, t) in enumerate(batches):
        g_fused, g_layered = _gradients(fused, layered, x, t, seed=step)
        assert list(g_fused) == list(g_layered)
        for key in g_layered:
            _assert_identical(g_fused[key], g_layered[key], key)
        _assert_same_state(fused, layered)
        for key in fused.params:
            fused.params[key] -= lr * g_fused[key]
            layered.params[key] -= lr * g_layered[key]


@pytest.mark.parametrize("use_dropout", [False, True])
@pytest.mark.parametrize("use_batchnorm", [False, True])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_decay_lambda", [0, 0.05])
def test_extend_fused_equals_layers(rng, use_dropout, use_batchnorm, activation,
                                    weight_decay_lambda):
    fused, layered = _twins("MultiLayerNetExtend", activation=activation,
                            weight_decay_lambda=weight_decay_lambda, use_dropout=use_dropout,
                            dropout_ration=0.3, use_batchnorm=use_batchnorm)
    # Three steps of one batch size, one of another (a second workspace), then the first.
    batches = [_data(rng) for _ in range(3)] + [_data(rng, n=5), _data(rng)]
    _check_steps(fused, layered, batches)
    assert fused.__dict__.get("_workspaces"), "the fused path did not run"


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_decay_lambda", [0, 0.1, np.float64(0.1), 1e39])
def test_multi_layer_net_fused_equals_layers(rng, activation, weight_decay_lambda):
    fused, layered = _twins("MultiLayerNet", activation=activation,
                            weight_decay_lambda=weight_decay_lambda)
    with np.errstate(over="ignore", invalid="ignore"):
        _check_steps(fused, layered, [_data(rng) for _ in range(2)], lr=1e-3)
    assert fused.__dict__.get("_workspaces")


def test_float32_network_fused_equals_layers(rng):
    fused, layered = _twins("MultiLayerNetExtend", weight_decay_lambda=0.01, use_dropout=True,
                            use_batchnorm=True)
    rebind_params(fused, np.float32)
    rebind_params(layered, np.float32)
    _check_steps(fused, layered, [_data(rng, dtype=np.float32) for _ in range(2)])
    assert fused.__dict__.get("_workspaces")


def _layouts(x):
    n, d = x.shape
    wide = np.zeros((n, 2 * d))
    wide[:, ::2] = x
    rev = np.ascontiguousarray(x[::-1])[::-1]
    ro = x.copy()
    ro.flags.writeable = False
    return {
        "fortran": np.asfortranarray(x),
        "strided": wide[:, ::2],
        "negative": rev,
        "readonly": ro,
        "3-d": x.reshape(n, 5, d // 5),
    }


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative", "readonly", "3-d"])
def test_any_input_layout(rng, layout):
    fused, layered = _twins("MultiLayerNetExtend", use_dropout=True, use_batchnorm=True)
    x, t = _data(rng)
    xl = _layouts(x)[layout]
    before = xl.copy()
    _check_steps(fused, layered, [(xl, t)])
    np.testing.assert_array_equal(xl, before)  # the caller's input is not written
    assert fused.layers["Affine1"].original_x_shape == xl.shape


def test_one_hot_targets(rng):
    fused, layered = _twins("MultiLayerNetExtend", use_batchnorm=True)
    x, t = _data(rng)
    _check_steps(fused, layered, [(x, np.eye(C)[t])])


def test_gradient_buffers_are_reused_for_a_seen_batch_shape(rng):
    net = bpfast.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
    x, t = _data(rng)
    g1 = net.gradient(x, t)
    kept = {k: v.copy() for k, v in g1.items()}
    g2 = net.gradient(x[::-1].copy(), t[::-1].copy())
    assert g2["W1"] is g1["W1"] and g2["b3"] is g1["b3"]  # documented: overwritten
    assert g1["W1"] is not net.layers["Affine1"].dW  # dW + lambda * W, as the book's
    assert not np.array_equal(g2["W4"], kept["W4"])


def test_other_structures_take_the_layer_path(rng):
    x, t = _data(rng)
    # A reference layer swapped in, a float32 bias, a non-contiguous bias, a plain dict.
    changes = [
        lambda net: net.layers.__setitem__("Activation_function2", ref.Relu()),
        lambda net: setattr(net.layers["Affine2"], "b", net.layers["Affine2"].b.astype(
            np.float32)),
        lambda net: setattr(net.layers["Affine3"], "b",
                            np.repeat(net.layers["Affine3"].b, 2)[::2]),
        lambda net: setattr(net, "layers", dict(net.layers)),
        lambda net: setattr(net.layers["Dropout1"], "dropout_ratio", np.float32(0.5)),
    ]
    for change in changes:
        np.random.seed(3)
        net_ref = ref.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
        np.random.seed(3)
        net = bpfast.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
        change(net)
        change(net_ref)
        g_ref, g = _gradients(net_ref, net, x, t, seed=1)
        assert "_workspaces" not in net.__dict__
        assert list(g) == list(g_ref)
        for key in g:
            np.testing.assert_allclose(g[key], g_ref[key], rtol=1e-10, atol=1e-12)


def test_changes_after_a_fused_call_are_seen(rng):
    # The validated plan is cached; every change below must be picked up.
    fused, layered = _twins("MultiLayerNetExtend", use_dropout=True, use_batchnorm=True)
    x, t = _data(rng)
    _check_steps(fused, layered, [(x, t)])
    changes = [
        lambda net: setattr(net.layers["Dropout2"], "dropout_ratio", 0.2),
        lambda net: setattr(net.layers["Affine2"], "W", net.layers["Affine2"].W.copy()),
        lambda net: setattr(net.layers["BatchNorm1"], "gamma",
                            net.layers["BatchNorm1"].gamma * 2.0),
        lambda net: setattr(net.layers["Affine4"], "b", net.layers["Affine4"].b + 1.0),
    ]
    for change in changes:
        change(fused)
        change(layered)
        _check_steps(fused, layered, [(x, t)])
    # Mixed activations (a drop-in Sigmoid in a Relu network): still fused.
    for net in (fused, layered):
        net.layers["Activation_function3"] = bpfast.layers.Sigmoid()
    _check_steps(fused, layered, [(x, t)])
    assert "_plan_cache" in fused.__dict__
    # A layer the fused step does not know (the book's own): the layer path.
    for net in (fused, layered):
        net.layers["Activation_function2"] = ref.Relu()
    _check_steps(fused, layered, [(x, t)])
    assert "_plan_cache" not in fused.__dict__
    # An in-place reshape of a weight: the layers' error (np.dot's), not a stale plan.
    W = fused.layers["Affine1"].W
    W.shape = (W.shape[1], W.shape[0])
    with pytest.raises(ValueError):
        fused.gradient(x, t)


def test_bad_input_raises_as_the_layers(rng):
    net = bpfast.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
    x, t = _data(rng)
    with pytest.raises(ValueError):
        net.gradient(x[:, :-1], t)  # another input width: np.dot's error in Affine1
    with pytest.raises(IndexError):
        net.gradient(x, np.full(N, C))  # a label out of range
    with pytest.raises((IndexError, ValueError)):
        net.gradient(x, t[:-1])  # labels of another batch size
    # Empty batch and integer input: the layers' (book's) behaviour, whatever it is.
    for bad in (x[:0], (x * 10).astype(np.int64)):
        fused, layered = _twins("MultiLayerNetExtend", use_batchnorm=True)
        outcomes = []
        for net_ in (fused, layered):
            try:
                with np.errstate(all="ignore"):
                    outcomes.append(sorted(net_.gradient(bad, t[:len(bad)])))
            except Exception as exc:  # noqa: BLE001 -- the type is what is compared
                outcomes.append(type(exc))
        assert outcomes[0] == outcomes[1]
    # The network still works after the errors.
    g = net.gradient(x, t)
    assert np.isfinite(g["W1"]).all()


def test_a_patched_np_random_rand_is_used(rng, monkeypatch):
    fused, layered = _twins("MultiLayerNetExtend", use_dropout=True, use_batchnorm=True)
    calls = []

    def fake_rand(*shape):
        calls.append(shape)
        return np.full(shape, 0.75)

    monkeypatch.setattr(np.random, "rand", fake_rand)
    x, t = _data(rng)
    _check_steps(fused, layered, [(x, t)])
    assert calls and all(mask.all() for key, mask in
                         ((k, v.mask) for k, v in fused.layers.items() if "Dropout" in k))


def test_pickle_and_deepcopy_leave_the_buffers_behind(rng):
    net = bpfast.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
    x, t = _data(rng)
    net.gradient(x, t)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert "_workspaces" not in clone.__dict__ and "_grad_buffers" not in clone.__dict__
        np.random.seed(0)
        g_clone = clone.gradient(x, t)
        np.random.seed(0)
        g = net.gradient(x, t)
        for key in g:
            _assert_identical(g_clone[key], g[key], key)


def test_fused_gradient_is_a_mixin_of_both_networks():
    assert issubclass(bpfast.MultiLayerNet, FusedGradient)
    assert issubclass(bpfast.MultiLayerNetExtend, FusedGradient)


# ------------------------------------------------------------------------ the kernels


def _fwd_args(n=4, d=3, dtype=np.float64):
    z = np.zeros((n, d), dtype)
    vec = [np.ones(d, dtype) for _ in range(3)]  # b, gamma, beta
    u = np.full((n, d), 0.9)
    stats = [np.empty(d, dtype) for _ in range(3)]
    xc, xn = np.empty((n, d), dtype), np.empty((n, d), dtype)
    rmask, dmask = np.empty((n, d), np.uint8), np.empty((n, d), np.uint8)
    h = np.empty((n, d), dtype)
    return [z, *vec, u, 0.5, *stats, xc, xn, rmask, dmask, h]


def test_hidden_forward_checks_its_arguments():
    f = kmln.hidden_forward
    args = _fwd_args()
    f(*args)
    bad = list(args)
    bad[1] = np.ones(4)  # b of another length
    with pytest.raises(ValueError, match="b has length"):
        f(*bad)
    bad = list(args)
    bad[13] = np.empty((4, 4))  # h of another shape
    with pytest.raises(ValueError, match="h_out"):
        f(*bad)
    bad = list(args)
    bad[13] = bad[0]  # h_out overlaps z
    with pytest.raises(ValueError, match="overlaps"):
        f(*bad)
    bad = list(args)
    bad[10] = bad[9]  # xn_out is xc_out
    with pytest.raises(ValueError, match="overlaps"):
        f(*bad)
    bad = list(args)
    bad[4] = None  # u without dmask
    with pytest.raises(ValueError, match="both"):
        f(*bad)
    bad = list(_fwd_args(n=0))
    with pytest.raises(ValueError, match="need N, D >= 1"):
        f(*bad)


def test_hidden_backward_checks_its_arguments():
    n, d = 4, 3
    b = kmln.hidden_backward
    args = [np.ones((n, d)), np.ones((n, d), np.uint8), np.zeros((n, d), np.uint8),
            np.ones((n, d)), np.ones((n, d)), np.ones(d), np.ones(d), np.empty((n, d)),
            np.empty(d), np.empty(d), np.empty(d)]
    b(*args)
    bad = list(args)
    bad[5] = np.ones(2)
    with pytest.raises(ValueError, match="std has length"):
        b(*bad)
    bad = list(args)
    bad[3] = np.ones((n, d + 1))
    with pytest.raises(ValueError, match="xn has shape"):
        b(*bad)
    bad = list(args)
    bad[7] = bad[0]
    with pytest.raises(ValueError, match="overlaps"):
        b(*bad)
    bad = list(args)
    bad[2] = np.zeros((n, d + 1), np.uint8)
    with pytest.raises(ValueError, match="rmask"):
        b(*bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_decay_grad_is_numpys_expression(rng, dtype):
    dW = rng.standard_normal(1000).astype(dtype)
    W = rng.standard_normal(1000).astype(dtype)
    dW[:10] = -0.0  # -0.0 + (0.0 * W) is +0.0 for W >= 0, -0.0 for W < 0
    W[:5] = np.abs(W[:5])
    W[10:12] = [np.inf, np.nan]
    for lam in (0, 0.1, 3):
        out = np.empty_like(dW)
        with np.errstate(invalid="ignore"):
            kmln.weight_decay_grad(dW, W, lam, out)
            expected = dW + lam * W
        _assert_identical(out, expected, f"lam={lam}")
    with pytest.raises(ValueError, match="lengths differ"):
        kmln.weight_decay_grad(dW, W[:-1], 0.1, out)
    with pytest.raises(ValueError, match="overlaps"):
        kmln.weight_decay_grad(dW, W, 0.1, W)
