import numpy as np
from numpy.typing import NDArray

# All arrays 1-D, C-contiguous, float32 or float64 (one dtype per call), same length.
def sigmoid_forward(x: NDArray[np.floating], out: NDArray[np.floating], n_threads: int = 1) -> None: ...
def sigmoid_backward(
    dout: NDArray[np.floating], out: NDArray[np.floating], dx_out: NDArray[np.floating], n_threads: int = 1
) -> None: ...
