# Stub of the compiled module two_layer_net.pyx (fused over float32/float64 and the label
# dtypes uint8/intc/int64: index the function with e.g. "double|long", as
# bpfast.two_layer_net does).
import numpy as np
from numpy.typing import NDArray

_F = NDArray[np.float32] | NDArray[np.float64]
_L = NDArray[np.uint8] | NDArray[np.intc] | NDArray[np.int64]

def bias_relu_forward(a: _F, b: _F, mask_out: NDArray[np.uint8], *, n_threads: int = 1) -> None: ...
def bias_softmax_xent(
    s: _F,
    b: _F,
    t: _L,
    y_out: _F,
    dy_out: _F | None = None,
    db_out: _F | None = None,
    b_sgd: _F | None = None,
    lr: float = 0.0,
    *,
    n_threads: int = 1,
) -> float: ...
def bias_softmax_xent_onehot(
    s: _F,
    b: _F,
    t: _F,
    y_out: _F,
    dy_out: _F | None = None,
    db_out: _F | None = None,
    b_sgd: _F | None = None,
    lr: float = 0.0,
    *,
    n_threads: int = 1,
) -> float: ...
def relu_backward_colsum(
    dh: _F,
    mask: NDArray[np.uint8],
    db_out: _F,
    b_sgd: _F | None = None,
    lr: float = 0.0,
    *,
    n_threads: int = 1,
) -> None: ...
