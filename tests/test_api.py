"""The public API is the book's: names, signatures, imports, class relationships, __all__."""

import inspect

import pytest

import bpfast
import bpfast.functions
import bpfast.layers
from bpfast import reference as ref
from bpfast.reference import functions as ref_functions
from bpfast.reference import layers as ref_layers

LAYERS = ["AddLayer", "MulLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "Dropout",
          "BatchNormalization", "Convolution", "Pooling"]
COMPILED = ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "Dropout", "BatchNormalization",
            "Convolution", "Pooling"]
# Constructor arguments for layers that need them (the values do not matter here).
_ARGS = {"Affine": (None, None), "BatchNormalization": (None, None),
         "Convolution": (None, None), "Pooling": (2, 2)}
FUNCTIONS = ["identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu",
             "relu_grad", "softmax", "sum_squared_error", "mean_squared_error",
             "cross_entropy_error", "softmax_loss"]
# common/gradient.py, common/optimizer.py, ch05/two_layer_net.py (tests/test_gradient.py,
# test_optimizers.py and test_two_layer_net.py check their APIs in detail).
TRAINING = ["numerical_gradient", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
            "TwoLayerNet"]
# common/multi_layer_net*.py, ch07/simple_convnet.py, common/trainer.py (details in
# test_multi_layer_net.py, test_simple_convnet.py, test_trainer.py).
NETWORKS = ["MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "Trainer"]


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("method", ["__init__", "forward", "backward"])
def test_method_signatures_match_the_book(name, method):
    fast = getattr(getattr(bpfast, name), method)
    book = getattr(getattr(ref, name), method)
    assert inspect.signature(fast) == inspect.signature(book)


def _new(cls):
    return cls(*_ARGS.get(cls.__name__, ()))


@pytest.mark.parametrize("name", LAYERS)
def test_class_signature_and_initial_attributes(name):
    cls, book = getattr(bpfast, name), getattr(ref, name)
    assert inspect.signature(cls) == inspect.signature(book)
    assert vars(_new(cls)) == vars(_new(book))  # same public attributes, all None


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_signatures_match_the_book(name):
    assert inspect.signature(getattr(bpfast.functions, name)) == inspect.signature(
        getattr(ref_functions, name))


def test_package_imports():
    from bpfast import Affine, AddLayer, MulLayer, Relu, Sigmoid, SoftmaxWithLoss  # noqa: F401

    namespace = {}
    exec("from bpfast.layers import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(LAYERS)
    namespace = {}
    exec("from bpfast.functions import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(FUNCTIONS)


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_layers_subclass_the_book(name):
    cls = getattr(bpfast, name)
    assert cls is getattr(bpfast.layers, name)
    assert issubclass(cls, getattr(ref_layers, name))
    assert cls is not getattr(ref_layers, name)
    assert isinstance(_new(cls), getattr(ref, name))


def test_all():
    assert sorted(bpfast.layers.__all__) == sorted(LAYERS)
    assert sorted(bpfast.functions.__all__) == sorted(FUNCTIONS)
    assert set(LAYERS) <= set(bpfast.__all__)
    assert {"openmp_enabled", "get_num_threads", "set_num_threads", "simd_dispatch",
            "LabelError", "__version__"} <= set(bpfast.__all__)
    for module in (bpfast, bpfast.layers, bpfast.functions, ref):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    assert sorted(ref.__all__) == sorted(FUNCTIONS + LAYERS + TRAINING + NETWORKS)
    assert set(NETWORKS) <= set(bpfast.__all__)


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_and_trainer_have_the_books_signatures(name):
    cls, book = getattr(bpfast, name), getattr(ref, name)
    assert cls is not book and issubclass(cls, book)
    assert inspect.signature(cls) == inspect.signature(book)
    for method, _ in inspect.getmembers(book, inspect.isfunction):
        if not method.startswith("_"):
            assert inspect.signature(getattr(cls, method)) == inspect.signature(
                getattr(book, method)), method


def test_label_error_is_index_and_value_error():
    assert issubclass(bpfast.LabelError, IndexError)
    assert issubclass(bpfast.LabelError, ValueError)
    assert bpfast.layers.LabelError is bpfast.LabelError


def test_runtime_queries():
    assert isinstance(bpfast.openmp_enabled(), bool)
    assert isinstance(bpfast.get_num_threads(), int) and bpfast.get_num_threads() >= 1
    assert isinstance(bpfast.simd_dispatch(), str) and bpfast.simd_dispatch()
    assert isinstance(bpfast.__version__, str)


@pytest.mark.parametrize("name", COMPILED)
def test_public_methods_have_docstrings(name):
    cls = getattr(bpfast, name)
    for attr in ("forward", "backward"):
        assert getattr(cls, attr).__doc__, (name, attr)
    assert cls.__doc__
