import numpy as np
from numpy.typing import NDArray

# x, out: 1-D C-contiguous float32 or float64 (same dtype); mask_out: uint8 of the same length.
def relu_forward(
    x: NDArray[np.floating], out: NDArray[np.floating], mask_out: NDArray[np.uint8], n_threads: int = 1
) -> None: ...
def relu_backward(
    dout: NDArray[np.floating], mask: NDArray[np.uint8], dx_out: NDArray[np.floating], n_threads: int = 1
) -> None: ...
