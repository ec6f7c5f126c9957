"""Stub of bpfast._kernels.multi_layer_net (fused float/double)."""

import numpy as np
import numpy.typing as npt

_A = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_U8 = npt.NDArray[np.uint8]

def hidden_forward(
    z: _A, b: _A, gamma: _A, beta: _A, u: npt.NDArray[np.float64] | None, ratio: float,
    mean_out: _A, var_out: _A, std_out: _A, xc_out: _A, xn_out: _A, rmask_out: _U8,
    dmask_out: _U8 | None, h_out: _A, n_threads: int = 1,
) -> None:
    """h_out = dropout(relu(batchnorm(z + b))) with BatchNorm's, Relu's and Dropout's caches."""

def hidden_backward(
    dh: _A, dmask: _U8 | None, rmask: _U8, xn: _A, xc: _A, std: _A, gamma: _A, dx_out: _A,
    dgamma_out: _A, dbeta_out: _A, db_out: _A, n_threads: int = 1,
) -> None:
    """Dropout, Relu and BatchNorm backward of one block, and the Affine bias gradient."""

def weight_decay_grad(dW: _A, W: _A, lam: float, out: _A, n_threads: int = 1) -> None:
    """out = dW + lam * W (1-D, equal lengths), lam rounded to the dtype first."""
