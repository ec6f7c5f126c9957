import numpy as np
from numpy.typing import NDArray

# Fused over float32/float64 (and the label dtypes uint8, int32, int64): index a kernel with
# e.g. "double|long" to get one specialisation, as bpfast.two_layer_net does.  2-D arrays are
# C-contiguous (N, H) / (N, C); vectors (H,) / (C,).  Loss kernels return the mean loss.
def bias_relu_forward(
    a: NDArray[np.floating], b: NDArray[np.floating], mask_out: NDArray[np.uint8], n_threads: int = 1
) -> None: ...
def bias_softmax_xent(
    s: NDArray[np.floating],
    b: NDArray[np.floating],
    t: NDArray[np.integer],
    y_out: NDArray[np.floating],
    n_threads: int = 1,
) -> float: ...
def bias_softmax_xent_grad(
    s: NDArray[np.floating],
    b: NDArray[np.floating],
    t: NDArray[np.integer],
    y_out: NDArray[np.floating],
    dy_out: NDArray[np.floating],
    db_out: NDArray[np.floating],
    b_sgd: NDArray[np.floating] | None = None,
    lr: float = 0.0,
    n_threads: int = 1,
) -> float: ...
def bias_softmax_xent_onehot(
    s: NDArray[np.floating],
    b: NDArray[np.floating],
    t: NDArray[np.floating],
    y_out: NDArray[np.floating],
    n_threads: int = 1,
) -> float: ...
def bias_softmax_xent_onehot_grad(
    s: NDArray[np.floating],
    b: NDArray[np.floating],
    t: NDArray[np.floating],
    y_out: NDArray[np.floating],
    dy_out: NDArray[np.floating],
    db_out: NDArray[np.floating],
    b_sgd: NDArray[np.floating] | None = None,
    lr: float = 0.0,
    n_threads: int = 1,
) -> float: ...
def relu_backward_colsum(
    dh: NDArray[np.floating],
    mask: NDArray[np.uint8],
    db_out: NDArray[np.floating],
    b_sgd: NDArray[np.floating] | None = None,
    lr: float = 0.0,
    n_threads: int = 1,
) -> None: ...
def sgd_weights(
    W1: NDArray[np.floating],
    dW1: NDArray[np.floating],
    W2: NDArray[np.floating],
    dW2: NDArray[np.floating],
    lr: float,
    n_threads: int = 1,
) -> None: ...
