"""Stub of bpfast._kernels.pooling (fused float/double input, uint8/int32 window index)."""

import numpy as np
import numpy.typing as npt

_In = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_Arg = npt.NDArray[np.uint8] | npt.NDArray[np.intc]
_F64 = npt.NDArray[np.float64]

def max_pool_forward(
    x: _In, pool_h: int, pool_w: int, stride: int, pad: int, out: _F64, arg_out: _Arg,
    n_threads: int = 1,
) -> None:
    """x (N, C, H, W) -> out, arg_out (N, C, OH, OW): window maxima (first maximum, first
    NaN) and their index ``ki * pool_w + kj``; padding reads as -inf."""

def max_pool_backward(
    dout: _In, arg: _Arg, pool_h: int, pool_w: int, stride: int, pad: int, dx_out: _F64,
    n_threads: int = 1,
) -> None:
    """dout, arg (N, C, OH, OW) -> dx_out (N, C, H, W): each gradient added at its maximum."""
