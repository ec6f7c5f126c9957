"""Pure-NumPy reference: the book's layers and functions, exactly as the book behaves.

This package transcribes the semantics of *Deep Learning from Scratch* (Koki Saito, O'Reilly
Japan; code at ``oreilly-japan/deep-learning-from-scratch``, MIT licence), chapter 5 and
``common/functions.py`` / ``common/layers.py`` / ``common/gradient.py`` /
``common/optimizer.py`` / ``ch05/two_layer_net.py``, and chapters 6-8:
``common/util.py``, ``common/multi_layer_net*.py``, ``ch07/simple_convnet.py``,
``common/trainer.py``.  It is written from the formulas, not copied.

It has three jobs and must stay naive for all of them:

* the **test oracle** every compiled layer is checked against;
* the **benchmark baseline** (it is what a reader of the book runs today);
* the **fallback** for inputs the compiled kernels do not cover (integer or float16 arrays,
  Python lists, exotic shapes), so that bpfast never rejects what the book accepts.

Never optimise this package.  Its quirks are deliberate (the README's compatibility table
lists where the compiled layers differ from them):
``Relu.backward`` writes into ``dout`` and returns it; ``Sigmoid.forward`` returns the very
array it caches; ``Affine`` keeps a view of its input; ``SoftmaxWithLoss.backward`` ignores
``dout``; the cross-entropy adds ``1e-7`` inside the log; one-hot targets are detected purely
by ``t.size == y.size``.
"""

from bpfast.reference.functions import (
    cross_entropy_error,
    identity_function,
    mean_squared_error,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax,
    softmax_loss,
    step_function,
    sum_squared_error,
)
from bpfast.reference.gradient import numerical_gradient
from bpfast.reference.layer_naive import AddLayer, MulLayer
from bpfast.reference.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from bpfast.reference.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from bpfast.reference.two_layer_net import TwoLayerNet
from bpfast.reference.multi_layer_net import MultiLayerNet
from bpfast.reference.multi_layer_net_extend import MultiLayerNetExtend
from bpfast.reference.simple_convnet import SimpleConvNet
from bpfast.reference.trainer import Trainer

__all__ = [
    "identity_function",
    "step_function",
    "sigmoid",
    "sigmoid_grad",
    "relu",
    "relu_grad",
    "softmax",
    "sum_squared_error",
    "mean_squared_error",
    "cross_entropy_error",
    "softmax_loss",
    "AddLayer",
    "MulLayer",
    "Relu",
    "Sigmoid",
    "Affine",
    "SoftmaxWithLoss",
    "numerical_gradient",
    "SGD",
    "Momentum",
    "Nesterov",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "TwoLayerNet",
    "Dropout",
    "BatchNormalization",
    "Convolution",
    "Pooling",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "SimpleConvNet",
    "Trainer",
]
