"""MultiLayerNet and MultiLayerNetExtend: parity with the book's classes, gradients, structure.

Every comparison builds the book's network (``bpfast.reference``) and bpfast's from the same
``np.random.seed`` and checks the weights drawn, ``predict``, ``loss``, every gradient and
``accuracy`` -- for both activations, every ``weight_init_std`` option, with and without
weight decay, dropout and batch normalisation -- and that both consumed the global random
stream identically (dropout masks).
"""

from collections import OrderedDict

import numpy as np
import pytest

import bpfast
import bpfast.layers
from bpfast import reference as ref
from _net_helpers import (
    assert_close,
    assert_grads_close,
    pair,
    rebind_params,
    same_random_draws,
)

D, HIDDEN, C, N = 30, [20, 16, 12], 7, 24


def _data(rng, n=N, d=D, c=C, dtype=np.float64):
    x = rng.random((n, d)).astype(dtype)
    t = rng.integers(0, c, n)
    return x, t


def _onehot(t, c=C):
    return np.eye(c)[t]


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_init_std", ["relu", "He", "sigmoid", "XAVIER", 0.05])
@pytest.mark.parametrize("weight_decay_lambda", [0, 0.1])
def test_multi_layer_net_matches_the_book(rng, activation, weight_init_std,
                                          weight_decay_lambda):
    net_ref, net = pair("MultiLayerNet", D, HIDDEN, C, activation=activation,
                        weight_init_std=weight_init_std,
                        weight_decay_lambda=weight_decay_lambda)
    assert list(net.params) == list(net_ref.params)
    for key in net_ref.params:  # the same draws, bit for bit
        np.testing.assert_array_equal(net.params[key], net_ref.params[key])
    x, t = _data(rng)
    for target in (t, _onehot(t)):
        assert_close(net.predict(x), net_ref.predict(x), what="predict")
        loss, loss_ref = net.loss(x, target), net_ref.loss(x, target)
        assert type(loss) is type(loss_ref)
        assert_close(loss, loss_ref, what="loss")
        x_before = x.copy()
        assert_grads_close(net.gradient(x, target), net_ref.gradient(x, target))
        np.testing.assert_array_equal(x, x_before)  # the input is never written
        # gradient leaves the book's state behind: the loss without weight decay.
        assert_close(net.last_layer.loss, net_ref.last_layer.loss, what="last_layer.loss")
        assert net.accuracy(x, target) == net_ref.accuracy(x, target)
        assert type(net.accuracy(x, target)) is type(net_ref.accuracy(x, target))


def test_weight_scales_follow_the_init_option():
    # He sqrt(2/fan_in), the book's Xavier sqrt(1/fan_in), or the number itself.
    for option, scale in (("relu", np.sqrt(2.0 / D)), ("xavier", np.sqrt(1.0 / D)),
                          (0.3, 0.3)):
        np.random.seed(7)
        draw = np.random.randn(D, HIDDEN[0])
        np.random.seed(7)
        net = bpfast.MultiLayerNet(D, HIDDEN, C, weight_init_std=option)
        np.testing.assert_array_equal(net.params["W1"], scale * draw)


@pytest.mark.parametrize("use_dropout", [False, True])
@pytest.mark.parametrize("use_batchnorm", [False, True])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_decay_lambda", [0, 0.05])
def test_multi_layer_net_extend_matches_the_book(rng, use_dropout, use_batchnorm, activation,
                                                 weight_decay_lambda):
    kwargs = dict(activation=activation, weight_decay_lambda=weight_decay_lambda,
                  use_dropout=use_dropout, dropout_ration=0.3, use_batchnorm=use_batchnorm)
    net_ref, net = pair("MultiLayerNetExtend", D, HIDDEN, C, **kwargs)
    assert list(net.params) == list(net_ref.params)
    x, t = _data(rng)
    for train_flg in (False, True):
        # Inference before any training step: BatchNorm divides by sqrt(0 + 1e-6), and the
        # book's sigmoid overflows (a RuntimeWarning) on the large values.
        with np.errstate(over="ignore"):
            p_ref, p = same_random_draws(lambda: net_ref.predict(x, train_flg),
                                         lambda: net.predict(x, train_flg))
        assert_close(p, p_ref, what=f"predict train_flg={train_flg}")
    for step in range(3):  # gradients, then an update, so running statistics move
        g_ref, g = same_random_draws(lambda: net_ref.gradient(x, t), lambda: net.gradient(x, t),
                                     seed=step)
        assert_grads_close(g, g_ref)
        for key in net.params:
            net.params[key] -= 0.1 * g[key]
            net_ref.params[key] -= 0.1 * g_ref[key]
    l_ref, l = same_random_draws(lambda: net_ref.loss(x, t, train_flg=True),
                                 lambda: net.loss(x, t, train_flg=True))
    assert_close(l, l_ref, what="loss")
    assert_close(net.loss(x, t), net_ref.loss(x, t), what="inference loss")
    assert net.accuracy(x, t) == net_ref.accuracy(x, t)
    for key, layer in net.layers.items():
        if key.startswith("BatchNorm"):
            assert_close(layer.running_mean, net_ref.layers[key].running_mean, what=key)
            assert_close(layer.running_var, net_ref.layers[key].running_var, what=key)
        if key.startswith("Dropout"):
            np.testing.assert_array_equal(layer.mask, net_ref.layers[key].mask)


@pytest.mark.parametrize("name", ["MultiLayerNet", "MultiLayerNetExtend"])
def test_float32_parameters_and_inputs_match_the_book(rng, name):
    kwargs = {"use_batchnorm": True, "use_dropout": True} if name == "MultiLayerNetExtend" else {}
    net_ref, net = pair(name, D, HIDDEN, C, weight_decay_lambda=0.01, **kwargs)
    rebind_params(net_ref, np.float32)
    rebind_params(net, np.float32)
    x, t = _data(rng, dtype=np.float32)
    g_ref, g = same_random_draws(lambda: net_ref.gradient(x, t), lambda: net.gradient(x, t))
    assert_grads_close(g, g_ref, np.float32)
    assert g["W1"].dtype == np.float32 and g["b1"].dtype == np.float32


def test_structure_and_parameter_sharing():
    net = bpfast.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
    book = ref.MultiLayerNetExtend(D, HIDDEN, C, use_dropout=True, use_batchnorm=True)
    assert type(net.layers) is OrderedDict
    assert list(net.layers) == list(book.layers) == [
        "Affine1", "BatchNorm1", "Activation_function1", "Dropout1",
        "Affine2", "BatchNorm2", "Activation_function2", "Dropout2",
        "Affine3", "BatchNorm3", "Activation_function3", "Dropout3", "Affine4"]
    assert list(net.params)[-6:] == ["gamma1", "beta1", "gamma2", "beta2", "gamma3", "beta3"]
    for key, layer in net.layers.items():
        assert type(layer) is getattr(bpfast.layers, type(book.layers[key]).__name__), key
    assert type(net.last_layer) is bpfast.layers.SoftmaxWithLoss
    assert net.layers["Affine2"].W is net.params["W2"]
    assert net.layers["BatchNorm3"].gamma is net.params["gamma3"]
    assert net.layers["Dropout1"].dropout_ratio == 0.5
    assert net.hidden_layer_num == 3 and net.use_dropout and net.use_batchnorm
    assert net.weight_decay_lambda == 0


def test_in_place_updates_reach_the_layers(rng):
    # Optimizers update params in place; the layers must see it (book section 0).
    net = bpfast.MultiLayerNet(D, HIDDEN, C)
    x, t = _data(rng)
    before = net.loss(x, t)
    opt = bpfast.optimizers.SGD(lr=0.5)
    for _ in range(5):
        opt.update(net.params, net.gradient(x, t))
    assert net.loss(x, t) < before


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_multi_layer_net_gradient_matches_numerical_gradient(rng, activation):
    net = bpfast.MultiLayerNet(6, [5, 4], 3, activation=activation, weight_decay_lambda=0.1)
    x, t = _data(rng, n=5, d=6, c=3)
    num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    assert list(num) == list(grad)
    for key in grad:
        np.testing.assert_allclose(grad[key], num[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_extend_gradient_with_batchnorm_matches_numerical_gradient(rng):
    net = bpfast.MultiLayerNetExtend(6, [5, 4], 3, activation="sigmoid", use_batchnorm=True,
                                     weight_decay_lambda=0.05)
    x, t = _data(rng, n=6, d=6, c=3)
    num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    assert list(num) == list(grad) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2",
                                       "beta2", "W3", "b3"]
    for key in grad:
        np.testing.assert_allclose(grad[key], num[key], rtol=1e-4, atol=1e-7, err_msg=key)


def test_numerical_gradient_matches_the_books(rng):
    net_ref, net = pair("MultiLayerNetExtend", 5, [4], 3, use_batchnorm=True)
    x, t = _data(rng, n=4, d=5, c=3)
    g_ref, g = net_ref.numerical_gradient(x, t), net.numerical_gradient(x, t)
    assert list(g) == list(g_ref)
    for key in g_ref:
        np.testing.assert_allclose(g[key], g_ref[key], rtol=1e-7, atol=1e-9, err_msg=key)


def test_unknown_activation_raises_keyerror_as_in_the_book():
    for name in ("MultiLayerNet", "MultiLayerNetExtend"):
        with pytest.raises(KeyError):
            getattr(bpfast, name)(D, HIDDEN, C, activation="tanh")
        with pytest.raises(KeyError):
            getattr(ref, name)(D, HIDDEN, C, activation="tanh")


@pytest.mark.parametrize("shape", [(9, 6), (9, 2, 3)])
def test_affine_backward_params_equals_backward(rng, shape):
    # The first layer of a network skips dx; dW and db must be backward's, also for N-D input
    # and for inputs the kernels do not take (the fallback runs the full backward).
    for x in (rng.random(shape), rng.random(shape).astype(np.float32), rng.random(shape) > 0.5):
        W, b = rng.random((6, 4)), rng.random(4)
        full, part = bpfast.layers.Affine(W, b), bpfast.layers.Affine(W, b)
        full.forward(x)
        part.forward(x)
        dout = rng.random((shape[0], 4))
        full.backward(dout)
        assert part._backward_params(dout) is None
        np.testing.assert_array_equal(part.dW, full.dW)
        np.testing.assert_array_equal(part.db, full.db)
