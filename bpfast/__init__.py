"""bpfast: the backpropagation layers of *Deep Learning from Scratch*, compiled.

Change one import::

    from common.layers import Affine, Relu, SoftmaxWithLoss   # the book
    from bpfast import Affine, Relu, SoftmaxWithLoss           # same classes, compiled

The pure-NumPy book semantics live in :mod:`bpfast.reference` (the test oracle and the
fallback for inputs the kernels don't cover).
"""

try:
    from bpfast._kernels import runtime as _runtime
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "bpfast's compiled kernels are missing: this looks like an unbuilt source tree. "
        "Install the package (`pip install .`) and import it from outside the repository, "
        "or build in place with `pip install -e . --no-build-isolation`."
    ) from exc

from bpfast._threads import get_num_threads, openmp_enabled, set_num_threads
from bpfast._validation import LabelError
from bpfast.layers import (
    Affine,
    AddLayer,
    BatchNormalization,
    Convolution,
    Dropout,
    MulLayer,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from bpfast import gradient, optimizers
from bpfast.two_layer_net import TwoLayerNet
from bpfast.multi_layer_net import MultiLayerNet
from bpfast.multi_layer_net_extend import MultiLayerNetExtend
from bpfast.simple_convnet import SimpleConvNet
from bpfast.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "AddLayer",
    "MulLayer",
    "Relu",
    "Sigmoid",
    "Affine",
    "SoftmaxWithLoss",
    "TwoLayerNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "SimpleConvNet",
    "Trainer",
    "gradient",
    "optimizers",
    "Dropout",
    "BatchNormalization",
    "Convolution",
    "Pooling",
    "LabelError",
    "openmp_enabled",
    "get_num_threads",
    "set_num_threads",
    "simd_dispatch",
    "__version__",
]


def simd_dispatch():
    """How the vectorised loops pick an instruction set at run time (a build-time string)."""
    return _runtime.simd_dispatch()
