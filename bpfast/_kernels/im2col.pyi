"""Stub of bpfast._kernels.im2col (fused float/double kernels; float64 outputs)."""

import numpy as np
import numpy.typing as npt

_In = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_F64 = npt.NDArray[np.float64]

def im2col(
    x: _In, filter_h: int, filter_w: int, stride: int, pad: int, col_out: _F64,
    n_threads: int = 1,
) -> None:
    """Book layout: x (N, C, H, W) C-contiguous -> col_out (N*OH*OW, C*FH*FW)."""

def col2im(
    col: _In, filter_h: int, filter_w: int, stride: int, pad: int, img_out: _F64,
    n_threads: int = 1,
) -> None:
    """Book layout: col (N*OH*OW, C*FH*FW) -> img_out (N, C, H, W), overlaps summed."""

def im2col_nkp(
    x: _In, filter_h: int, filter_w: int, stride: int, pad: int, colt_out: _F64,
    n_threads: int = 1,
) -> None:
    """Per-sample layout: colt_out (N, K or K+1, OH*OW); a K+1-th row is set to ones."""

def col2im_nkp(
    colt: _In, filter_h: int, filter_w: int, stride: int, pad: int, img_out: _F64,
    n_threads: int = 1,
) -> None:
    """Per-sample layout: colt (N, >= K, OH*OW) -> img_out (N, C, H, W); extra rows ignored."""
