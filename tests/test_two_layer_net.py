"""bpfast.TwoLayerNet against the book's ch05/two_layer_net.py (bpfast.reference)."""

import inspect
import tracemalloc
from collections import OrderedDict

import numpy as np
import pytest

import bpfast
from bpfast import layers as fast_layers
from bpfast import optimizers as fast_opt
from bpfast import reference as ref
from _train_helpers import RTOL, assert_grads_close, mnist_like, net_pair, one_hot

SIZES = (784, 50, 10)


def batch(seed, n=100, **kw):
    return mnist_like(np.random.default_rng(seed), n, **kw)


# ------------------------------------------------------------------ construction


def test_same_initial_params_and_rng_stream():
    np.random.seed(42)
    net_ref = ref.TwoLayerNet(*SIZES)
    after_ref = np.random.random()
    np.random.seed(42)
    net = bpfast.TwoLayerNet(*SIZES)
    after_fast = np.random.random()
    assert after_fast == after_ref  # the same draws, no more, no fewer
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    for key in net_ref.params:
        assert net.params[key].dtype == np.float64
        np.testing.assert_array_equal(net.params[key], net_ref.params[key])


def test_weight_init_std_and_float32_option():
    np.random.seed(3)
    net_ref = ref.TwoLayerNet(20, 6, 4, weight_init_std=0.5)
    np.random.seed(3)
    net = bpfast.TwoLayerNet(20, 6, 4, weight_init_std=0.5, dtype=np.float32)
    for key in net_ref.params:
        assert net.params[key].dtype == np.float32
        np.testing.assert_array_equal(net.params[key], net_ref.params[key].astype(np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        bpfast.TwoLayerNet(20, 6, 4, dtype=np.int64)


def test_structure_is_the_books():
    net = bpfast.TwoLayerNet(*SIZES)
    assert isinstance(net, ref.TwoLayerNet)
    params_sig = inspect.signature(ref.TwoLayerNet).parameters
    fast_sig = inspect.signature(bpfast.TwoLayerNet).parameters
    assert list(fast_sig)[: len(params_sig)] == list(params_sig)
    assert fast_sig["weight_init_std"].default == 0.01
    assert fast_sig["dtype"].kind is inspect.Parameter.KEYWORD_ONLY
    assert type(net.layers) is OrderedDict
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert type(net.layers["Affine1"]) is fast_layers.Affine
    assert type(net.layers["Relu1"]) is fast_layers.Relu
    assert type(net.lastLayer) is fast_layers.SoftmaxWithLoss
    assert net.layers["Affine1"].W is net.params["W1"]
    assert net.layers["Affine1"].b is net.params["b1"]
    assert net.layers["Affine2"].W is net.params["W2"]
    assert net.layers["Affine2"].b is net.params["b2"]
    for name in ("predict", "loss", "accuracy", "numerical_gradient", "gradient"):
        assert inspect.signature(getattr(net, name)) == inspect.signature(
            getattr(ref.TwoLayerNet(2, 2, 2), name)
        )


def uses_fused_path(net, x, t):
    """The fused path returns its gradient buffers again; the book's code makes new arrays."""
    return net.gradient(x, t)["W1"] is net.gradient(x, t)["W1"]


@pytest.mark.parametrize(
    "dtype, x_dtype, target, expected",
    [
        (np.float64, np.float32, "labels", True),
        (np.float64, np.float64, "labels", True),
        (np.float64, np.uint8, "labels", True),
        (np.float64, np.float32, "onehot32", True),
        (np.float64, np.float32, "onehot64", True),
        (np.float32, np.float32, "labels", True),
        (np.float32, np.float32, "onehot32", True),
        (np.float32, np.float64, "labels", False),  # promotes to float64
        (np.float32, np.float32, "onehot64", False),  # promotes the backward to float64
        (np.float64, np.float32, "onehot_int", False),  # integer one-hot targets
    ],
)
def test_which_inputs_take_the_fused_path(dtype, x_dtype, target, expected):
    net = bpfast.TwoLayerNet(*SIZES, dtype=dtype)
    x, t = batch(0, 8)
    x = (x * 255).astype(x_dtype) if x_dtype == np.uint8 else x.astype(x_dtype)
    if target != "labels":
        t = one_hot(t, dtype={"onehot32": np.float32, "onehot64": np.float64,
                              "onehot_int": np.int64}[target])
    assert uses_fused_path(net, x, t) is expected


# ------------------------------------------------------------------ same numbers as the book


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target", ["labels", "onehot32", "onehot64"])
def test_gradient_equals_reference(dtype, target):
    # (float32 weights with float64 one-hot targets: NumPy promotes the backward pass to
    # float64 -- the book's layer-by-layer code on the drop-in layers does the same.)
    net_ref, net = net_pair(SIZES, seed=1, dtype=dtype)
    for i, n in enumerate([100, 7, 100, 1, 33]):  # the batch size changes between calls
        x, t = batch(i, n)
        if target != "labels":
            t = one_hot(t, dtype=np.float32 if target == "onehot32" else np.float64)
        g_ref = net_ref.gradient(x, t)
        g = net.gradient(x, t)
        assert_grads_close(g, g_ref, dtype)
        assert type(net.lastLayer.loss) is type(net_ref.lastLayer.loss)
        np.testing.assert_allclose(net.lastLayer.loss, net_ref.lastLayer.loss, rtol=RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_predict_accuracy_equal_reference(dtype):
    net_ref, net = net_pair(SIZES, seed=2, dtype=dtype)
    x, t = batch(5, 64)
    loss_ref, loss = net_ref.loss(x, t), net.loss(x, t)
    assert type(loss) is type(loss_ref)
    np.testing.assert_allclose(loss, loss_ref, rtol=RTOL[np.dtype(dtype)])
    np.testing.assert_allclose(net.predict(x), net_ref.predict(x), rtol=RTOL[np.dtype(dtype)], atol=1e-7)
    for target in (t, one_hot(t)):
        acc_ref, acc = net_ref.accuracy(x, target), net.accuracy(x, target)
        assert type(acc) is type(acc_ref) and acc == acc_ref


def test_layer_state_after_gradient_matches_the_book():
    net_ref, net = net_pair(SIZES, seed=3)
    x, t = batch(7, 50)
    x4 = x.reshape(50, 1, 28, 28)  # an image-shaped input is flattened, as in the book
    g_ref = net_ref.gradient(x4, t)
    g = net.gradient(x4, t)
    assert_grads_close(g, g_ref, np.float64)
    a1, a1_ref = net.layers["Affine1"], net_ref.layers["Affine1"]
    assert a1.original_x_shape == a1_ref.original_x_shape == (50, 1, 28, 28)
    assert np.shares_memory(a1.x, x4) and a1.x.shape == a1_ref.x.shape == (50, 784)
    np.testing.assert_array_equal(net.layers["Relu1"].mask, net_ref.layers["Relu1"].mask)
    assert net.layers["Relu1"].mask.dtype == np.bool_
    a2, a2_ref = net.layers["Affine2"], net_ref.layers["Affine2"]
    assert a2.original_x_shape == a2_ref.original_x_shape
    np.testing.assert_array_equal(a2.x, a2_ref.x)  # hidden activations: the book's bits
    assert net.lastLayer.t is t
    np.testing.assert_allclose(net.lastLayer.y, net_ref.lastLayer.y, rtol=1e-12, atol=1e-16)
    # The returned arrays are the layers' own dW/db, as in the book.
    assert g["W1"] is a1.dW and g["b1"] is a1.db
    assert g["W2"] is a2.dW and g["b2"] is a2.db
    # The layers can still be used by hand, like the book's.
    dout = net.lastLayer.backward()
    np.testing.assert_allclose(dout, net_ref.lastLayer.backward(), rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize(
    "make_x",
    [
        lambda x: x.astype(np.float64),
        lambda x: np.asfortranarray(x),
        lambda x: (x * 255).astype(np.uint8),
        lambda x: np.repeat(x, 2, axis=0)[::2],
    ],
    ids=["float64", "fortran", "uint8", "strided"],
)
def test_input_dtypes_and_layouts(make_x):
    net_ref, net = net_pair(SIZES, seed=4)
    x, t = batch(8, 40)
    x = make_x(x)
    assert_grads_close(net.gradient(x, t), net_ref.gradient(x, t), np.float64)
    np.testing.assert_allclose(net.loss(x, t), net_ref.loss(x, t), rtol=1e-12)


# ------------------------------------------------------------------ 200 SGD steps


def test_same_loss_for_200_sgd_steps():
    # Issue 4's acceptance test: same seed, same batches, the book's SGD loop, float64.
    net_ref, net = net_pair(SIZES, seed=5)
    net_split = net_pair(SIZES, seed=5)[1]  # gradient + bpfast's SGD instead of train_step
    opt = fast_opt.SGD(lr=0.1)
    rng = np.random.default_rng(6)
    data = [mnist_like(rng, 100) for _ in range(20)]
    losses_ref, losses, losses_split = [], [], []
    for i in range(200):
        x, t = data[i % len(data)]
        grads = net_ref.gradient(x, t)
        losses_ref.append(net_ref.lastLayer.loss)
        for key in ("W1", "b1", "W2", "b2"):
            net_ref.params[key] -= 0.1 * grads[key]
        losses.append(net.train_step(x, t, 0.1))
        grads_split = net_split.gradient(x, t)
        losses_split.append(net_split.lastLayer.loss)
        opt.update(net_split.params, grads_split)
        if i % 50 == 49:  # the book's recorded loss: after the update, on the same batch
            np.testing.assert_allclose(net.loss(x, t), net_ref.loss(x, t), rtol=1e-10)
    assert losses_ref[-1] < 0.5 * losses_ref[0]  # the data are learnable: the loss moved
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-10)
    np.testing.assert_allclose(losses_split, losses_ref, rtol=1e-10)
    for key in net_ref.params:
        np.testing.assert_allclose(net.params[key], net_ref.params[key], rtol=1e-9, atol=1e-13)
        np.testing.assert_array_equal(net.params[key], net_split.params[key])


@pytest.mark.parametrize("target", ["labels", "onehot"])
def test_train_step_float32(target):
    net_ref, net = net_pair(SIZES, seed=7, dtype=np.float32)
    rng = np.random.default_rng(8)
    for _ in range(20):
        x, t = mnist_like(rng, 100)
        if target == "onehot":
            t = one_hot(t)
        grads = net_ref.gradient(x, t)
        loss_ref = net_ref.lastLayer.loss
        ref.SGD(0.1).update(net_ref.params, grads)
        loss = net.train_step(x, t, 0.1)
        assert type(loss) is np.float32
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    for key in net_ref.params:
        assert net.params[key].dtype == np.float32
        np.testing.assert_allclose(net.params[key], net_ref.params[key], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda m: m.SGD(lr=0.1),
        lambda m: m.Momentum(lr=0.05),
        lambda m: m.Nesterov(lr=0.05),
        lambda m: m.AdaGrad(lr=0.05),
        lambda m: m.RMSprop(lr=0.001),
        lambda m: m.Adam(),
    ],
    ids=["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"],
)
@pytest.mark.parametrize("module", [fast_opt, ref], ids=["bpfast-opt", "book-opt"])
def test_train_step_with_optimizers(make_opt, module):
    net_ref, net = net_pair(SIZES, seed=9)
    opt_ref, opt = make_opt(ref), make_opt(module)
    rng = np.random.default_rng(10)
    for _ in range(20):
        x, t = mnist_like(rng, 100)
        opt_ref.update(net_ref.params, net_ref.gradient(x, t))
        loss = net.train_step(x, t, opt)
        np.testing.assert_allclose(loss, net_ref.lastLayer.loss, rtol=1e-10)
    for key in net_ref.params:
        np.testing.assert_allclose(net.params[key], net_ref.params[key], rtol=1e-8, atol=1e-12)
    assert net.params["W1"] is net.layers["Affine1"].W  # updated in place
    assert net.params["b2"] is net.layers["Affine2"].b


def test_failed_step_leaves_params_untouched():
    net = bpfast.TwoLayerNet(*SIZES)
    before = {k: v.copy() for k, v in net.params.items()}
    x, t = batch(11, 10)
    t[3] = 10  # out of range for 10 classes
    with pytest.raises(IndexError):
        net.train_step(x, t, 0.1)
    with pytest.raises(IndexError):
        net.gradient(x, t)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])


def test_read_only_weight_raises_before_any_update():
    net_ref, net = net_pair((30, 8, 4), seed=25)
    x, t = batch(26, 12, features=30, classes=4)
    for n in (net_ref, net):
        n.params["W1"].setflags(write=False)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError):
        ref.SGD(0.1).update(net_ref.params, net_ref.gradient(x, t))
    with pytest.raises(ValueError):
        net.train_step(x, t, 0.1)
    for key in before:  # the book's loop starts with W1: nothing was updated
        np.testing.assert_array_equal(net.params[key], before[key])
        np.testing.assert_array_equal(net_ref.params[key], before[key])


# ------------------------------------------------------------------ buffers and aliasing


def test_gradient_arrays_are_reused_and_overwritten():
    # Documented difference: the book returns fresh arrays at every call.
    net_ref, net = net_pair(SIZES, seed=12)
    x1, t1 = batch(13, 30)
    x2, t2 = batch(14, 30)
    g1 = net.gradient(x1, t1)
    g1_values = {k: v.copy() for k, v in g1.items()}
    mask1, hidden1, y1 = net.layers["Relu1"].mask, net.layers["Affine2"].x, net.lastLayer.y
    g2 = net.gradient(x2, t2)
    for key in g1:
        assert g2[key] is g1[key]  # the same buffers ...
    assert_grads_close(g2, net_ref.gradient(x2, t2), np.float64)  # ... now holding batch 2
    assert not np.array_equal(g1["W1"], g1_values["W1"])
    assert net.layers["Relu1"].mask is mask1 and net.layers["Affine2"].x is hidden1
    assert net.lastLayer.y is y1
    # A copy keeps the first gradient.
    assert_grads_close(g1_values, net_ref.gradient(x1, t1), np.float64)


def test_weights_are_read_live_and_rebinding_params_is_the_books():
    net_ref, net = net_pair((30, 8, 4), seed=15)
    x, t = batch(16, 12, features=30, classes=4)
    # In-place changes of params reach the layers (optimizers, numerical_gradient rely on it).
    for n in (net_ref, net):
        n.params["W1"] *= 2.0
        n.params["b2"] += 0.5
    np.testing.assert_allclose(net.loss(x, t), net_ref.loss(x, t), rtol=1e-12)
    # Re-binding a params entry does not change the layers (the book's behaviour) ...
    for n in (net_ref, net):
        n.params["W2"] = np.zeros_like(n.params["W2"])
    np.testing.assert_allclose(net.loss(x, t), net_ref.loss(x, t), rtol=1e-12)
    assert net.loss(x, t) != np.log(4)
    # ... and a step then updates the arrays in params, not the layers' (as the book's loop).
    grads_ref = net_ref.gradient(x, t)
    ref.SGD(0.1).update(net_ref.params, grads_ref)
    net.train_step(x, t, 0.1)
    for key in net_ref.params:
        np.testing.assert_allclose(net.params[key], net_ref.params[key], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.loss(x, t), net_ref.loss(x, t), rtol=1e-12)
    # Re-binding a layer's W changes what the network computes, as in the book.
    for n in (net_ref, net):
        n.layers["Affine2"].W = np.ones((8, 4)) * 0.01
    np.testing.assert_allclose(net.loss(x, t), net_ref.loss(x, t), rtol=1e-12)
    assert_grads_close(net.gradient(x, t), net_ref.gradient(x, t), np.float64)


def test_replaced_layer_runs_the_books_code():
    net_ref, net = net_pair((30, 8, 4), seed=17)
    net_ref.layers["Relu1"] = ref.Sigmoid()
    net.layers["Relu1"] = fast_layers.Sigmoid()
    x, t = batch(18, 12, features=30, classes=4)
    assert_grads_close(net.gradient(x, t), net_ref.gradient(x, t), np.float64)
    loss_ref = net_ref.lastLayer.loss
    ref.SGD(0.1).update(net_ref.params, net_ref.gradient(x, t))
    np.testing.assert_allclose(net.train_step(x, t, 0.1), loss_ref, rtol=1e-12)
    for key in net_ref.params:
        np.testing.assert_allclose(net.params[key], net_ref.params[key], rtol=1e-12, atol=1e-15)


def test_mixed_dtypes_fall_back_to_the_book():
    # float32 weights with a float64 input: NumPy promotes everything to float64.
    net_ref, net = net_pair((30, 8, 4), seed=19, dtype=np.float32)
    x, t = batch(20, 12, features=30, classes=4)
    x = x.astype(np.float64)
    g_ref, g = net_ref.gradient(x, t), net.gradient(x, t)
    for key in g_ref:
        assert g[key].dtype == g_ref[key].dtype == np.float64
    assert_grads_close(g, g_ref, np.float64)


def test_no_allocation_per_step_for_a_repeated_batch_shape():
    net = bpfast.TwoLayerNet(*SIZES)
    x, t = batch(21, 100)
    for _ in range(3):  # warm-up: buffers for this batch shape
        net.train_step(x, t, 0.01)
        net.gradient(x, t)
        net.loss(x, t)
    one_buffer = 100 * 50 * 8  # the smallest (N, H) float64 array of this step
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(5):
            net.train_step(x, t, 0.01)
            net.gradient(x, t)
            net.loss(x, t)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < one_buffer // 4, peak


def test_results_do_not_depend_on_thread_count(monkeypatch):
    # Thresholds lowered so that every kernel of the step splits its work.
    import bpfast.two_layer_net as tln

    monkeypatch.setattr(tln, "_PAR_ELEMENTWISE", 1 << 10)
    monkeypatch.setattr(tln, "_PAR_ROWS", 1 << 10)
    results = []
    x, t = batch(22, 300, features=64, classes=100)
    for threads in (1, 2):
        previous = bpfast.set_num_threads(threads)
        try:
            np.random.seed(23)
            net = bpfast.TwoLayerNet(64, 300, 100)
            loss = net.train_step(x, t, 0.1)
            results.append((loss, {k: v.copy() for k, v in net.gradient(x, t).items()}))
        finally:
            bpfast.set_num_threads(previous)
    assert results[0][0] == results[1][0]
    for key in results[0][1]:
        np.testing.assert_array_equal(results[0][1][key], results[1][1][key])


@pytest.mark.parametrize("one_hot_label", [False, True])
def test_real_digits_same_losses_as_the_book(one_hot_label):
    # The 5,000 MNIST digits embedded in bpfast.datasets (uint8 labels or float64 one-hot).
    datasets = pytest.importorskip("bpfast.datasets")
    (x_train, t_train), _ = datasets.load_dataset("embedded", one_hot_label=one_hot_label)
    net_ref, net = net_pair(SIZES, seed=24)
    for i in range(40):
        x, t = x_train[i * 100:(i + 1) * 100], t_train[i * 100:(i + 1) * 100]
        grads = net_ref.gradient(x, t)
        loss_ref = net_ref.lastLayer.loss
        ref.SGD(0.1).update(net_ref.params, grads)
        np.testing.assert_allclose(net.train_step(x, t, 0.1), loss_ref, rtol=1e-10)
    assert net.accuracy(x_train[:1000], t_train[:1000]) == net_ref.accuracy(x_train[:1000], t_train[:1000])


# ------------------------------------------------------------------ kernels: checks before the loops


def test_step_kernels_reject_mismatched_shapes():
    from bpfast._kernels import two_layer_net as k

    f64 = np.float64
    a, b, mask = np.zeros((4, 3)), np.zeros(3), np.zeros((4, 3), np.uint8)
    with pytest.raises(ValueError):
        k.bias_relu_forward["double"](a, np.zeros(2), mask)
    with pytest.raises(ValueError):
        k.bias_relu_forward["double"](a, b, np.zeros((3, 3), np.uint8))
    s, y, dy, db = np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)), np.zeros(3)
    labels = np.array([0, 1, 2, 1])
    xent = k.bias_softmax_xent_grad["double|long"]
    with pytest.raises(ValueError):
        xent(s, b, labels[:3], y, dy, db)
    with pytest.raises(ValueError):
        xent(s, b, labels, y, np.zeros((4, 2)), db)
    with pytest.raises(ValueError):
        xent(s, b, labels, y, dy, db, b_sgd=np.zeros(2), lr=0.1)
    with pytest.raises(ValueError):
        k.bias_softmax_xent["double|long"](np.zeros((0, 3)), b, labels[:0], np.zeros((0, 3)))
    for bad in (3, -1):
        with pytest.raises(IndexError):
            xent(s, b, np.array([0, bad, 1, 1]), y, dy, db)
    with pytest.raises(ValueError):
        k.bias_softmax_xent_onehot_grad["double|double"](s, b, np.zeros((4, 2)), y, dy, db)
    with pytest.raises(ValueError):
        k.relu_backward_colsum["double"](np.zeros((4, 3), f64), mask, np.zeros(2))
    with pytest.raises(ValueError):
        k.sgd_weights["double"](np.zeros((3, 2)), np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)), 0.1)


def test_pickle_and_deepcopy_keep_the_books_sharing():
    import copy
    import pickle

    net_ref, net = net_pair((30, 8, 4), seed=27)
    x, t = batch(28, 12, features=30, classes=4)
    net.train_step(x, t, 0.1)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert clone.layers["Affine1"].W is clone.params["W1"]
        assert clone.layers["Affine2"].b is clone.params["b2"]
        assert clone._workspaces == {}
        np.testing.assert_array_equal(clone.params["W1"], net.params["W1"])
        assert clone.loss(x, t) == net.loss(x, t)
        clone.train_step(x, t, 0.1)  # trains its own arrays
        assert not np.array_equal(clone.params["W1"], net.params["W1"])

