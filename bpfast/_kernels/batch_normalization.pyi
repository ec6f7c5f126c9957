"""Stub of bpfast._kernels.batch_normalization (fused float/double)."""

import numpy as np
import numpy.typing as npt

_A = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_F64 = npt.NDArray[np.float64]

def bn_forward_train(
    x: _A, mean_out: _A, var_out: _A, std_out: _A, xc_out: _A, xn_out: _A,
    gamma: _A | None, beta: _A | None, out: _A | None, n_threads: int = 1,
) -> None:
    """x (N, D) -> batch mean/var/std (D,), xc/xn (N, D) and, unless None,
    out = gamma * xn + beta (N, D); one dtype throughout."""

def bn_forward_infer(
    x: _A, running_mean: _F64, running_var: _F64, gamma: _F64, beta: _F64, out: _F64,
    n_threads: int = 1,
) -> None:
    """out = gamma * ((x - running_mean) / sqrt(running_var + 1e-6)) + beta, float64."""

def bn_backward(
    dout: _A, xn: _A, xc: _A, std: _A, gamma: _A, batch_size: int, dx_out: _A,
    dgamma_out: _A, dbeta_out: _A, n_threads: int = 1,
) -> None:
    """The book's backward with the cached statistics; one dtype throughout."""

def bn_running_update(
    mean: _A, var: _A, running_mean: _F64, running_var: _F64, momentum: float,
    one_minus: float, running_mean_out: _F64, running_var_out: _F64,
) -> None:
    """running_*_out = momentum * running_* + (1 - momentum) * batch statistic (float64)."""
