"""bpfast.optimizers against the book's common/optimizer.py (bpfast.reference)."""

import inspect

import numpy as np
import pytest

import bpfast
from bpfast import optimizers as fast
from bpfast import reference as ref

NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
STATE = {"SGD": (), "Momentum": ("v",), "Nesterov": ("v",), "AdaGrad": ("h",),
         "RMSprop": ("h",), "Adam": ("m", "v")}
SHAPES = {"W1": (30, 7), "b1": (7,), "W2": (7, 3), "b2": (3,), "s": ()}


def make_params(rng, dtype, layout=lambda a: a):
    return {k: layout(rng.standard_normal(s).astype(dtype)) for k, s in SHAPES.items()}


def make_grads(rng, dtype, scale=1.0):
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}


def assert_same(a, b):
    """Bit-for-bit equality of two arrays or scalars, dtype and type included."""
    assert type(a) is type(b)
    if isinstance(a, np.ndarray) or isinstance(a, np.generic):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def assert_state_same(opt_fast, opt_ref, name):
    for attr in STATE[name]:
        sf, sr = getattr(opt_fast, attr), getattr(opt_ref, attr)
        assert list(sf) == list(sr)
        for key in sr:
            assert_same(sf[key], sr[key])
    if name == "Adam":
        assert opt_fast.iter == opt_ref.iter


def run_both(name, params_fast, params_ref, rng, dtype, steps=20, grad_dtype=None, **kw):
    opt_fast = getattr(fast, name)(**kw)
    opt_ref = getattr(ref, name)(**kw)
    ids = {k: id(v) for k, v in params_fast.items()}
    for _ in range(steps):
        grads = make_grads(rng, grad_dtype or dtype)
        kept = {k: v.copy() for k, v in grads.items()}
        opt_fast.update(params_fast, grads)
        opt_ref.update(params_ref, grads)
        for k in grads:  # grads are never modified
            np.testing.assert_array_equal(grads[k], kept[k])
    return opt_fast, opt_ref, ids


# ------------------------------------------------------------------ signatures and defaults


@pytest.mark.parametrize("name", NAMES)
def test_same_signature_and_defaults(name):
    cls_fast, cls_ref = getattr(fast, name), getattr(ref, name)
    assert issubclass(cls_fast, cls_ref)
    assert inspect.signature(cls_fast) == inspect.signature(cls_ref)
    assert inspect.signature(cls_fast.update) == inspect.signature(cls_ref.update)
    assert vars(cls_fast()) == vars(cls_ref())


def test_book_defaults():
    assert fast.SGD().lr == 0.01
    assert (fast.Momentum().lr, fast.Momentum().momentum) == (0.01, 0.9)
    assert (fast.Nesterov().lr, fast.Nesterov().momentum) == (0.01, 0.9)
    assert fast.AdaGrad().lr == 0.01
    assert (fast.RMSprop().lr, fast.RMSprop().decay_rate) == (0.01, 0.99)
    adam = fast.Adam()
    assert (adam.lr, adam.beta1, adam.beta2, adam.iter, adam.m, adam.v) == (0.001, 0.9, 0.999, 0, None, None)


# ------------------------------------------------------------------ same numbers as the book


def layout_pair(rng, dtype, layout):
    """Two equal parameter dicts (different memory) in a given memory layout."""
    if layout == "strided":  # every other element of a wider array; 0-d stays 0-d
        base = {k: rng.standard_normal(s[:-1] + (2 * s[-1],) if s else s).astype(dtype)
                for k, s in SHAPES.items()}
        first = {k: v[..., ::2] if v.ndim else v for k, v in base.items()}
        second = {k: v.copy()[..., ::2] if v.ndim else v.copy() for k, v in base.items()}
        return first, second
    order = np.asfortranarray if layout == "F" else np.ascontiguousarray
    first = {k: order(v) for k, v in make_params(rng, dtype).items()}
    return first, {k: order(v.copy()) for k, v in first.items()}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_twenty_steps_bit_identical(name, dtype, layout):
    rng = np.random.default_rng(NAMES.index(name))
    params_fast, params_ref = layout_pair(rng, dtype, layout)
    opt_fast, opt_ref, ids = run_both(name, params_fast, params_ref, rng, dtype)
    for key in params_ref:
        assert id(params_fast[key]) == ids[key]  # updated in place
        assert_same(params_fast[key], params_ref[key])
    assert_state_same(opt_fast, opt_ref, name)


@pytest.mark.parametrize("name", NAMES)
def test_non_default_hyperparameters(name):
    kw = {"SGD": dict(lr=0.3), "Momentum": dict(lr=0.05, momentum=0.5),
          "Nesterov": dict(lr=0.05, momentum=0.7), "AdaGrad": dict(lr=1.5),
          "RMSprop": dict(lr=0.02, decay_rate=0.9), "Adam": dict(lr=0.01, beta1=0.8, beta2=0.99)}[name]
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(7)
        params_fast = make_params(rng, dtype)
        params_ref = {k: v.copy() for k, v in params_fast.items()}
        opt_fast, opt_ref, _ = run_both(name, params_fast, params_ref, rng, dtype, **kw)
        for key in params_ref:
            assert_same(params_fast[key], params_ref[key])
        assert_state_same(opt_fast, opt_ref, name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "hyper",
    [np.float64(0.05), np.float32(0.05), np.float16(0.05), 1],
    ids=["np.float64", "np.float32", "np.float16", "int"],
)
def test_numpy_scalar_hyperparameters_promote_like_the_book(name, hyper):
    # np.float64(lr) promotes a float32 update to float64 (NEP 50); a Python int does not.
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(8)
        params_fast = make_params(rng, dtype)
        params_ref = {k: v.copy() for k, v in params_fast.items()}
        opt_fast, opt_ref, _ = run_both(name, params_fast, params_ref, rng, dtype, steps=5,
                                        lr=hyper)
        for key in params_ref:
            assert_same(params_fast[key], params_ref[key])
        assert_state_same(opt_fast, opt_ref, name)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes_follow_the_book(name):
    # float32 parameters with float64 gradients: the book's NumPy statements (Momentum even
    # re-binds v to float64).
    rng = np.random.default_rng(9)
    params_fast = make_params(rng, np.float32)
    params_ref = {k: v.copy() for k, v in params_fast.items()}
    opt_fast, opt_ref, _ = run_both(name, params_fast, params_ref, rng, np.float32, steps=5,
                                    grad_dtype=np.float64)
    for key in params_ref:
        assert_same(params_fast[key], params_ref[key])
    assert_state_same(opt_fast, opt_ref, name)


@pytest.mark.parametrize("name", NAMES)
def test_python_float_params(name):
    # ch06/optimizer_compare_naive.py optimises {'x': -7.0, 'y': 2.0}.
    def df(x, y):
        return x / 10.0, 2.0 * y

    params_fast, params_ref = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
    opt_fast, opt_ref = getattr(fast, name)(lr=0.5), getattr(ref, name)(lr=0.5)
    for _ in range(20):
        gx, gy = df(params_ref["x"], params_ref["y"])
        opt_fast.update(params_fast, {"x": gx, "y": gy})
        opt_ref.update(params_ref, {"x": gx, "y": gy})
        for key in params_ref:
            assert_same(params_fast[key], params_ref[key])
    assert_state_same(opt_fast, opt_ref, name)
    if name == "SGD":
        assert type(params_fast["x"]) is float


@pytest.mark.parametrize("name", NAMES)
def test_float16_and_integer_params_follow_the_book(name):
    rng = np.random.default_rng(10)
    p16 = {"w": rng.standard_normal(5).astype(np.float16)}
    p16_ref = {"w": p16["w"].copy()}
    g16 = {"w": rng.standard_normal(5).astype(np.float16)}
    getattr(fast, name)().update(p16, g16)
    getattr(ref, name)().update(p16_ref, g16)
    assert_same(p16["w"], p16_ref["w"])
    with pytest.raises(TypeError) as exc_fast:  # UFuncTypeError: cannot cast back to int
        getattr(fast, name)().update({"w": np.arange(3)}, {"w": np.ones(3)})
    with pytest.raises(TypeError) as exc_ref:
        getattr(ref, name)().update({"w": np.arange(3)}, {"w": np.ones(3)})
    assert type(exc_fast.value) is type(exc_ref.value)


# ------------------------------------------------------------------ state and errors


@pytest.mark.parametrize("name", NAMES[1:])
def test_state_is_created_lazily(name):
    rng = np.random.default_rng(11)
    opt = getattr(fast, name)()
    for attr in STATE[name]:
        assert getattr(opt, attr) is None
    params = make_params(rng, np.float32)
    opt.update(params, make_grads(rng, np.float32))
    for attr in STATE[name]:
        state = getattr(opt, attr)
        assert list(state) == list(params)
        for key in params:
            assert state[key].dtype == params[key].dtype and state[key].shape == params[key].shape


@pytest.mark.parametrize("name", NAMES)
def test_missing_keys_raise_key_error(name):
    rng = np.random.default_rng(12)
    params = make_params(rng, np.float64)
    grads = make_grads(rng, np.float64)
    del grads["b1"]
    with pytest.raises(KeyError):
        getattr(fast, name)().update(params, grads)
    if name != "SGD":  # a key that appears after the state was created has no state
        opt = getattr(fast, name)()
        opt.update({"a": np.ones(2)}, {"a": np.ones(2)})
        with pytest.raises(KeyError):
            opt.update({"a": np.ones(2), "new": np.ones(2)}, {"a": np.ones(2), "new": np.ones(2)})


@pytest.mark.parametrize("name", NAMES)
def test_read_only_param_raises_like_the_book(name):
    p = np.ones(4)
    p.setflags(write=False)
    with pytest.raises(ValueError):
        getattr(fast, name)().update({"w": p}, {"w": np.ones(4)})
    np.testing.assert_array_equal(p, np.ones(4))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_aliasing_the_parameter(name):
    # grads[key] is params[key]: element-wise, so the book's result either way.
    a, b = np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)
    getattr(fast, name)().update({"w": a}, {"w": a})
    getattr(ref, name)().update({"w": b}, {"w": b})
    assert_same(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_thread_count_does_not_change_results(name, monkeypatch):
    # The threshold is set for speed (millions of elements); lowered so the array stays small.
    monkeypatch.setattr(bpfast.optimizers, "_PAR_ELEMENTWISE", 1 << 16)
    rng = np.random.default_rng(13)
    base = rng.standard_normal(200_003)  # above the (lowered) parallel threshold
    grads = [{"w": rng.standard_normal(base.size)} for _ in range(3)]
    results = []
    for threads in (1, 2):
        previous = bpfast.set_num_threads(threads)
        try:
            params = {"w": base.copy()}
            opt = getattr(fast, name)()
            for g in grads:
                opt.update(params, g)
            results.append(params["w"])
        finally:
            bpfast.set_num_threads(previous)
    params_ref = {"w": base.copy()}
    opt_ref = getattr(ref, name)()
    for g in grads:
        opt_ref.update(params_ref, g)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], params_ref["w"])


def test_nesterov_first_step_from_zero_velocity():
    # Post-2021 order: the first step is p -= (1 + momentum) * lr * g.
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.5, 0.25])}
    fast.Nesterov(lr=0.1, momentum=0.9).update(p, g)
    np.testing.assert_array_equal(p["w"], np.array([1.0, -2.0]) - (1 + 0.9) * 0.1 * g["w"])


def test_adam_iter_counts_calls_not_keys():
    opt = fast.Adam()
    params = {"a": np.ones(3), "b": np.ones(2)}
    for _ in range(3):
        opt.update(params, {"a": np.ones(3), "b": np.ones(2)})
    assert opt.iter == 3


def test_optimizer_kernels_reject_mismatched_lengths():
    from bpfast._kernels import optimizers as k

    p, short = np.zeros(5), np.zeros(4)
    with pytest.raises(ValueError):
        k.sgd_update["double"](p, short, 0.1)
    with pytest.raises(ValueError):
        k.momentum_update["double"](p, short, p.copy(), 0.9, 0.1)
    with pytest.raises(ValueError):
        k.nesterov_update["double"](p, p.copy(), short, 0.81, 0.19, 0.9, 0.1)
    with pytest.raises(ValueError):
        k.adagrad_update["double"](p, short, p.copy(), 0.1, 1e-7)
    with pytest.raises(ValueError):
        k.rmsprop_update["double"](p, p.copy(), short, 0.99, 0.01, 0.1, 1e-7)
    with pytest.raises(ValueError):
        k.adam_update["double"](p, p.copy(), short, p.copy(), 0.1, 0.001, 0.001, 1e-7)
