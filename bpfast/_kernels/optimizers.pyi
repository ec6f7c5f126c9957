# Stub of the compiled module optimizers.pyx (fused over float32/float64: index the function
# with "float" or "double" to get one specialisation, as bpfast.optimizers does).
import numpy as np
from numpy.typing import NDArray

_F = NDArray[np.float32] | NDArray[np.float64]

def sgd_update(p: _F, g: _F, lr: float, *, n_threads: int = 1) -> None: ...
def momentum_update(
    p: _F, v: _F, g: _F, momentum: float, lr: float, *, n_threads: int = 1
) -> None: ...
def nesterov_update(
    p: _F,
    v: _F,
    g: _F,
    momentum_sq: float,
    step: float,
    momentum: float,
    lr: float,
    *,
    n_threads: int = 1,
) -> None: ...
def adagrad_update(p: _F, h: _F, g: _F, lr: float, eps: float, *, n_threads: int = 1) -> None: ...
def rmsprop_update(
    p: _F,
    h: _F,
    g: _F,
    decay: float,
    one_minus_decay: float,
    lr: float,
    eps: float,
    *,
    n_threads: int = 1,
) -> None: ...
def adam_update(
    p: _F,
    m: _F,
    v: _F,
    g: _F,
    one_minus_beta1: float,
    one_minus_beta2: float,
    lr_t: float,
    eps: float,
    *,
    n_threads: int = 1,
) -> None: ...
