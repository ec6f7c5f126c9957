"""Stub of bpfast._kernels.dropout (fused float/double)."""

import numpy as np
import numpy.typing as npt

_A = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def dropout_forward(
    x: _A, u: npt.NDArray[np.float64], ratio: float, out: _A,
    mask_out: npt.NDArray[np.uint8], n_threads: int = 1,
) -> None:
    """mask_out = u > ratio; out = x * mask_out (1-D, equal lengths)."""

def dropout_backward(
    dout: _A, mask: npt.NDArray[np.uint8], dx_out: _A, n_threads: int = 1,
) -> None:
    """dx_out = dout * mask (1-D, equal lengths)."""
