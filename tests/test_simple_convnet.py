"""SimpleConvNet: parity with the book's class, gradients, bad input in subprocesses.

(save_params/load_params of every network: tests/test_save_load.py.)
"""

import textwrap
from collections import OrderedDict

import numpy as np
import pytest

import bpfast
import bpfast.layers
from _helpers import run_snippet
from _net_helpers import assert_close, assert_grads_close, pair, rebind_params

SMALL = dict(input_dim=(2, 10, 10),
             conv_param={"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
             hidden_size=12, output_size=5)


def _data(rng, n, dim, c, dtype=np.float64):
    return rng.random((n, *dim)).astype(dtype), rng.integers(0, c, n)


@pytest.mark.parametrize("conv_param", [
    {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
    {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 2, "filter_size": 2, "pad": 1, "stride": 2},
])
@pytest.mark.parametrize("weight_init_std", [0.01, 0.3])
def test_matches_the_book(rng, conv_param, weight_init_std):
    kwargs = dict(SMALL, conv_param=conv_param, weight_init_std=weight_init_std)
    net_ref, net = pair("SimpleConvNet", **kwargs)
    assert list(net.params) == list(net_ref.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for key in net_ref.params:
        np.testing.assert_array_equal(net.params[key], net_ref.params[key])
    x, t = _data(rng, 7, SMALL["input_dim"], SMALL["output_size"])
    onehot = np.eye(SMALL["output_size"])[t]
    for target in (t, onehot):
        assert_close(net.predict(x), net_ref.predict(x), what="predict")
        loss, loss_ref = net.loss(x, target), net_ref.loss(x, target)
        assert type(loss) is type(loss_ref)
        assert_close(loss, loss_ref, what="loss")
        g_ref, g = net_ref.gradient(x, target), net.gradient(x, target)
        assert_grads_close(g, g_ref)
        # The book returns the layers' own arrays.
        assert g["W1"] is net.layers["Conv1"].dW and g["b3"] is net.layers["Affine2"].db
    # accuracy in chunks: 7 samples in chunks of 3 leave one out of the count (the book's).
    for batch_size in (100, 3, 7):
        acc, acc_ref = net.accuracy(x, t, batch_size), net_ref.accuracy(x, t, batch_size)
        assert acc == acc_ref and type(acc) is type(acc_ref)
    assert net.accuracy(x, onehot, 2) == net_ref.accuracy(x, onehot, 2)


def test_default_network_on_mnist_shapes(rng):
    net_ref, net = pair("SimpleConvNet")
    assert net.params["W2"].shape == (30 * 12 * 12, 100)
    x, t = _data(rng, 4, (1, 28, 28), 10)
    assert_grads_close(net.gradient(x, t), net_ref.gradient(x, t))


def test_float32_input_and_parameters(rng):
    net_ref, net = pair("SimpleConvNet", **SMALL)
    rebind_params(net_ref, np.float32)
    rebind_params(net, np.float32)
    x, t = _data(rng, 5, SMALL["input_dim"], SMALL["output_size"], np.float32)
    # im2col is float64 in the book, so the convolution's results are float64 regardless.
    assert_grads_close(net.gradient(x, t), net_ref.gradient(x, t), np.float32)
    assert_close(net.loss(x, t), net_ref.loss(x, t), np.float32)


def test_structure_and_parameter_sharing():
    net = bpfast.SimpleConvNet(**SMALL)
    assert type(net.layers) is OrderedDict
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    for key, cls in zip(net.layers, ("Convolution", "Relu", "Pooling", "Affine", "Relu",
                                     "Affine")):
        assert type(net.layers[key]) is getattr(bpfast.layers, cls)
    assert net.layers["Conv1"].W is net.params["W1"] and net.layers["Conv1"].b is net.params["b1"]
    assert net.layers["Affine2"].W is net.params["W3"]
    pool = net.layers["Pool1"]
    assert (pool.pool_h, pool.pool_w, pool.stride, pool.pad) == (2, 2, 2, 0)
    assert type(net.last_layer) is bpfast.layers.SoftmaxWithLoss


def test_gradient_matches_numerical_gradient(rng):
    # The book's ch07/gradient_check.py, smaller.
    net = bpfast.SimpleConvNet(input_dim=(1, 6, 6),
                               conv_param={"filter_num": 2, "filter_size": 3, "pad": 0,
                                           "stride": 1},
                               hidden_size=4, output_size=3, weight_init_std=0.3)
    x, t = _data(rng, 2, (1, 6, 6), 3)
    num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    assert list(num) == list(grad)
    for key in grad:
        np.testing.assert_allclose(grad[key], num[key], rtol=1e-4, atol=1e-7, err_msg=key)


def test_numerical_gradient_matches_the_books(rng):
    kwargs = dict(input_dim=(1, 4, 4),
                  conv_param={"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1},
                  hidden_size=3, output_size=2)
    net_ref, net = pair("SimpleConvNet", **kwargs)
    x, t = _data(rng, 2, (1, 4, 4), 2)
    g_ref, g = net_ref.numerical_gradient(x, t), net.numerical_gradient(x, t)
    for key in g_ref:
        np.testing.assert_allclose(g[key], g_ref[key], rtol=1e-7, atol=1e-9, err_msg=key)


# ------------------------------------------------------------------ bad input, in subprocesses

_BAD_INPUT = textwrap.dedent("""
    import numpy as np
    import bpfast
    from bpfast import reference as ref

    def outcome(make, call):
        try:
            np.random.seed(0)
            net = make()
            call(net)
        except Exception as exc:
            return type(exc).__name__
        return "ok"

    conv = lambda **k: (lambda mod: (lambda: mod.SimpleConvNet(**k)))
    cases = {
        # 2-channel input to a 1-channel network.
        "channels": (conv(input_dim=(1, 8, 8), hidden_size=4,
                          conv_param={"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}),
                     lambda net: net.loss(np.ones((2, 2, 8, 8)), np.array([0, 1]))),
        # 9x9 input, 3x3 filters: conv output 7x7, pooled 3x3 -- but the book sizes W2 for
        # 3.5x3.5 (a non-integer output size), so Affine1 does not fit.
        "non_integer": (conv(input_dim=(1, 9, 9), hidden_size=4,
                             conv_param={"filter_num": 2, "filter_size": 3, "pad": 0,
                                         "stride": 1}),
                        lambda net: net.gradient(np.ones((2, 1, 9, 9)), np.array([0, 1]))),
        # 5x5 filters on a 5x5 input: a 1x1 map under a 2x2 pool.
        "pool_too_large": (conv(input_dim=(1, 5, 5), hidden_size=4,
                                conv_param={"filter_num": 2, "filter_size": 5, "pad": 0,
                                            "stride": 1}),
                           lambda net: net.predict(np.ones((2, 1, 5, 5)))),
        # An array as train_flg: its truth value is ambiguous.
        "train_flg": (lambda mod: (lambda: mod.MultiLayerNetExtend(
                          4, [3], 2, use_dropout=True, use_batchnorm=True)),
                      lambda net: net.predict(np.ones((2, 4)), train_flg=np.array([1, 0]))),
        # Input of the wrong width for a MultiLayerNet.
        "mlp_width": (lambda mod: (lambda: mod.MultiLayerNet(4, [3], 2)),
                      lambda net: net.gradient(np.ones((2, 5)), np.array([0, 1]))),
    }
    for name, (make, call) in cases.items():
        print(name, outcome(make(ref), call), outcome(make(bpfast), call))
""")


def test_bad_input_raises_the_books_exception_without_crashing():
    rc, out, err = run_snippet(_BAD_INPUT)
    assert rc == 0, err
    lines = dict((line.split()[0], line.split()[1:]) for line in out.splitlines())
    assert set(lines) == {"channels", "non_integer", "pool_too_large", "train_flg",
                          "mlp_width"}, out
    for name, (book, fast) in lines.items():
        assert book != "ok", (name, book)  # the case is really bad input
        assert fast == book or (name == "channels" and fast == "ValueError"), (name, book, fast)


@pytest.mark.parametrize("assign_col", [False, True])
def test_convolution_backward_params_equals_backward(rng, assign_col):
    W, b = rng.random((3, 2, 3, 3)), rng.random(3)
    x = rng.random((4, 2, 7, 7))
    full, part = bpfast.layers.Convolution(W, b, 2, 1), bpfast.layers.Convolution(W, b, 2, 1)
    out = full.forward(x)
    part.forward(x)
    if assign_col:  # an assigned col is what the book's backward uses: the fallback path
        full.col = full.col * 2
        part.col = full.col
    dout = rng.random(out.shape)
    full.backward(dout)
    assert part._backward_params(dout) is None
    np.testing.assert_array_equal(part.dW, full.dW)
    np.testing.assert_array_equal(part.db, full.db)
