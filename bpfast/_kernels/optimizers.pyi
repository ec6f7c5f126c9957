import numpy as np
from numpy.typing import NDArray

# Fused over float32/float64: index a kernel with "float" or "double" to get one
# specialisation, as bpfast.optimizers does.  All arrays 1-D, C-contiguous, same length and
# dtype, not overlapping; p and the state arrays are updated in place.
def sgd_update(p: NDArray[np.floating], g: NDArray[np.floating], lr: float, n_threads: int = 1) -> None: ...
def momentum_update(
    p: NDArray[np.floating],
    v: NDArray[np.floating],
    g: NDArray[np.floating],
    momentum: float,
    lr: float,
    n_threads: int = 1,
) -> None: ...
def nesterov_update(
    p: NDArray[np.floating],
    v: NDArray[np.floating],
    g: NDArray[np.floating],
    momentum_sq: float,
    step: float,
    momentum: float,
    lr: float,
    n_threads: int = 1,
) -> None: ...
def adagrad_update(
    p: NDArray[np.floating],
    h: NDArray[np.floating],
    g: NDArray[np.floating],
    lr: float,
    eps: float,
    n_threads: int = 1,
) -> None: ...
def rmsprop_update(
    p: NDArray[np.floating],
    h: NDArray[np.floating],
    g: NDArray[np.floating],
    decay: float,
    one_minus_decay: float,
    lr: float,
    eps: float,
    n_threads: int = 1,
) -> None: ...
def adam_update(
    p: NDArray[np.floating],
    m: NDArray[np.floating],
    v: NDArray[np.floating],
    g: NDArray[np.floating],
    one_minus_beta1: float,
    one_minus_beta2: float,
    lr_t: float,
    eps: float,
    n_threads: int = 1,
) -> None: ...
