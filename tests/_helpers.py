"""Helpers shared by the test modules (on ``sys.path`` through pytest's ``pythonpath``).

* tolerances by dtype, and comparisons that treat NaN as equal to NaN;
* ``layouts``: the same values in every memory layout a caller can hand over (C, Fortran,
  strided with NaN in the gaps, negative strides, read-only), so that a kernel that ignores
  strides reads NaN and fails;
* ``numerical_gradient``: 4th-order central differences in float64, perturbing in place
  (as the book's ``numerical_gradient`` does, so it also works through a layer's ``W``);
* ``run_snippet``: run Python code in a fresh interpreter, so a crash is a test failure;
* hypothesis strategies for float arrays with NaN, +-inf, +-0 and subnormals.
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bpfast

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
FLOAT_DTYPES = (F32, F64)

# Shapes from one element to a full MNIST-sized batch, odd sizes included.
SHAPES_2D = [(1, 1), (1, 7), (7, 1), (7, 13), (64, 10), (33, 1001), (512, 1000)]

# rtol: a few ulp for float32 (kernels and NumPy use different exp/sum orders); 1e-12 for
# float64.  atol is per unit of `scale` (the magnitude of the compared quantity), for values
# near zero where a relative tolerance means nothing.
RTOL = {F32: 1e-5, F64: 1e-12}
ATOL = {F32: 1e-6, F64: 1e-14}


def tolerance(dtype, scale=1.0):
    dtype = np.dtype(dtype)
    return {"rtol": RTOL[dtype], "atol": ATOL[dtype] * scale}


def assert_close(actual, desired, dtype=None, scale=1.0):
    """Equal shape and dtype; values equal within the dtype's tolerance; NaN where NaN."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    assert actual.dtype == desired.dtype, (actual.dtype, desired.dtype)
    np.testing.assert_allclose(
        actual, desired, equal_nan=True, **tolerance(dtype or desired.dtype, scale)
    )


def assert_identical(actual, desired, check_dtype=True):
    """Bit-for-bit equal values (NaN where NaN, signed zeros matching), same shape and dtype."""
    a = np.asarray(actual)
    d = np.asarray(desired)
    assert a.shape == d.shape, (a.shape, d.shape)
    if check_dtype:
        assert a.dtype == d.dtype, (a.dtype, d.dtype)
    if a.dtype.kind in "fc":
        np.testing.assert_array_equal(a, d)  # NaN-aware: NaN equals NaN here
        both = ~(np.isnan(a) | np.isnan(d))
        np.testing.assert_array_equal(np.signbit(a.real)[both], np.signbit(d.real)[both],
                                      err_msg="signs of zero differ")
    else:
        np.testing.assert_array_equal(a, d)


def call(fn, *args, **kwargs):
    """``(result, None)`` or ``(None, exception)``, with NumPy's FP warnings silenced."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - the exception is the result here
        return None, exc


def assert_same_outcome(fast_fn, ref_fn, *args):
    """bpfast raises what the book raises, or returns the book's result (same type)."""
    result, exc = call(fast_fn, *args)
    ref_result, ref_exc = call(ref_fn, *args)
    if ref_exc is not None:
        assert isinstance(exc, type(ref_exc)), (exc, ref_exc)
        return None
    assert exc is None, exc
    assert type(result) is type(ref_result)
    assert_identical(result, ref_result)
    return result


def assert_unchanged(before, after):
    """An argument the caller passed is exactly as it was (values, shape, dtype)."""
    assert_identical(after, before)


# ------------------------------------------------------------------------------- layouts


def _reverse(ndim):
    return (slice(None, None, -1),) * ndim


def strided(a, fill):
    """A view with the values of ``a`` at every other element of a larger buffer.

    The gaps (and a leading element) hold ``fill``, so code reading the buffer as if it were
    contiguous sees ``fill``.
    """
    a = np.asarray(a)
    buf = np.full(tuple(2 * s + 1 for s in a.shape), fill, dtype=a.dtype)
    view = buf[(slice(1, None, 2),) * a.ndim]
    view[...] = a
    return view


def layout(a, kind, fill=np.nan):
    """``a``'s values in the memory layout ``kind`` (see LAYOUTS); None if not applicable."""
    a = np.asarray(a)
    if kind == "C":
        return np.array(a, order="C", copy=True)
    if kind == "F":
        return np.array(a, order="F", copy=True)
    if a.ndim == 0:
        if kind == "readonly":
            out = a.copy()
            out.flags.writeable = False
            return out
        return None
    if kind == "strided":
        return strided(a, fill)
    if kind == "negative":  # negative strides with gaps
        rev = _reverse(a.ndim)
        return strided(a[rev], fill)[rev]
    if kind == "transposed":  # Fortran-like strides with gaps
        return strided(a.T, fill).T
    if kind == "readonly":
        out = a.copy()
        out.flags.writeable = False
        return out
    if kind == "strided_readonly":
        out = strided(a, fill)
        out.flags.writeable = False
        return out
    raise ValueError(kind)


LAYOUTS = ("C", "F", "strided", "negative", "transposed", "readonly", "strided_readonly")
WRITABLE_LAYOUTS = ("C", "F", "strided", "negative", "transposed")


def layouts(a, fill=np.nan, kinds=LAYOUTS):
    """[(kind, array)] of every applicable layout of ``a`` (all with equal values)."""
    out = []
    for kind in kinds:
        v = layout(a, kind, fill)
        if v is not None:
            np.testing.assert_array_equal(v, a)
            out.append((kind, v))
    return out


# ---------------------------------------------------------------------- numerical gradient


def numerical_gradient(f, x, h=1e-3):
    """Gradient of the scalar ``f()`` with respect to ``x`` by 4th-order central differences.

    ``x`` (float64) is perturbed **in place**, one element at a time, and restored bit-exactly
    afterwards; ``f`` takes no argument and must read ``x`` itself (like the book's
    ``lambda W: net.loss(x, t)``).
    """
    assert x.dtype == F64
    grad = np.zeros(x.shape, F64)
    for idx in np.ndindex(*x.shape):
        orig = x[idx]
        values = []
        for k in (2, 1, -1, -2):
            x[idx] = orig + k * h
            values.append(float(f()))
        x[idx] = orig
        grad[idx] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
    return grad


# ------------------------------------------------------------------------ subprocesses


def run_snippet(code, env=None, timeout=120):
    """Run ``code`` with ``sys.executable -c`` in a fresh process.

    The child imports the very bpfast the tests import (its parent directory goes first on
    PYTHONPATH) and runs from a temporary directory, so a source tree without compiled
    kernels cannot shadow an installed package.

    Returns
    -------
    (returncode, stdout, stderr)
        A negative return code is a signal (e.g. -11 for a segfault).
    """
    full_env = dict(os.environ if env is None else env)
    root = os.path.dirname(os.path.dirname(os.path.abspath(bpfast.__file__)))
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, full_env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
        env=full_env,
    )
    return proc.returncode, proc.stdout, proc.stderr


# --------------------------------------------------------------------------- hypothesis


def any_floats(dtype):
    """Every float of the dtype: NaN, +-inf, +-0.0, subnormals, huge values."""
    return st.floats(
        width=np.dtype(dtype).itemsize * 8, allow_nan=True, allow_infinity=True,
        allow_subnormal=True,
    )


def float_arrays(dtype, shape=None, min_dims=1, max_dims=3, max_side=8):
    """Arrays of ``dtype`` (any values, see any_floats) of the given or a random shape."""
    if shape is None:
        shape = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0,
                                 max_side=max_side)
    return hnp.arrays(np.dtype(dtype), shape, elements=any_floats(dtype))


float_dtypes = st.sampled_from(FLOAT_DTYPES)
