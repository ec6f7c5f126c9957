import numpy as np
from numpy.typing import NDArray

# Logits/softmax (N, C) C-contiguous float32 or float64; labels (N,) uint8, int32 or int64;
# one-hot targets (N, C) float32 or float64.  Forward kernels return the mean loss.
def softmax_forward(x: NDArray[np.floating], y_out: NDArray[np.floating], n_threads: int = 1) -> None: ...
def softmax_xent_forward(
    x: NDArray[np.floating], t: NDArray[np.integer], y_out: NDArray[np.floating], n_threads: int = 1
) -> float: ...
def softmax_xent_forward_onehot(
    x: NDArray[np.floating], t: NDArray[np.floating], y_out: NDArray[np.floating], n_threads: int = 1
) -> float: ...
def softmax_xent_backward(
    y: NDArray[np.floating], t: NDArray[np.integer], dx_out: NDArray[np.floating], n_threads: int = 1
) -> None: ...
def softmax_xent_backward_onehot(
    y: NDArray[np.floating], t: NDArray[np.floating], dx_out: NDArray[np.floating], n_threads: int = 1
) -> None: ...
