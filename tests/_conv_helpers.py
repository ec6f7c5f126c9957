"""Helpers for the tests of the chapter 6-7 layers (Dropout, BatchNormalization, Convolution,
Pooling) and of ``im2col``/``col2im``: input layouts, comparisons, finite differences, and
bad-input runs in a subprocess.
"""

import json
import textwrap

import numpy as np
from _helpers import run_snippet
from numpy.testing import assert_allclose, assert_array_equal

DTYPES = (np.float32, np.float64)
#: Relative tolerance for results built on matrix products (BLAS order) or, for float32,
#: on sums that bpfast accumulates in double and NumPy in float32.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def layouts(a):
    """``(name, array)`` pairs holding ``a``'s values in different memory layouts.

    C order, Fortran order, a strided view into a larger buffer whose gaps hold NaN (a kernel
    that ignores the strides reads them), a view with negative strides, and a read-only
    array.  Every variant is a fresh array: the caller may compare it afterwards.
    """
    a = np.asarray(a)
    out = [("C", np.ascontiguousarray(a).copy()), ("F", np.asfortranarray(a).copy())]
    if a.ndim:
        big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype)
        strided = big[..., ::2]
        strided[...] = a
        out.append(("strided", strided))
        rev = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
        out.append(("reversed", rev))
    ro = a.copy()
    ro.setflags(write=False)
    out.append(("readonly", ro))
    return out


def assert_same(actual, expected, rtol=0.0, atol=0.0):
    """Same type, shape and dtype; values equal (NaN-aware) or within the tolerance."""
    assert type(actual) is type(expected), (type(actual), type(expected))
    if isinstance(expected, np.ndarray):
        assert actual.shape == expected.shape, (actual.shape, expected.shape)
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if rtol == 0.0 and atol == 0.0:
        assert_array_equal(actual, expected)
        if isinstance(expected, np.ndarray) and expected.dtype.kind == "f":
            # -0.0 vs +0.0 matters for bit-exactness claims
            np.testing.assert_array_equal(np.signbit(actual), np.signbit(expected))
    else:
        assert_allclose(actual, expected, rtol=rtol, atol=atol)


def scale_atol(expected, dtype):
    """Absolute tolerance for values that come out of sums with cancellation."""
    finite = np.abs(np.asarray(expected, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    scale = float(finite.max()) if finite.size else 1.0
    return RTOL[np.dtype(dtype)] * max(scale, 1.0) * 10


def numerical_gradient(f, x, h=1e-5):
    """Fourth-order central differences of the scalar function ``f`` at ``x`` (float64).

    ``x`` is perturbed in place, one element at a time, and restored exactly.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        v = x[i]
        vals = []
        for step in (2 * h, h, -h, -2 * h):
            x[i] = v + step
            vals.append(f())
        x[i] = v
        grad[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return grad


_PRELUDE = """
import json
import numpy as np
import bpfast
import bpfast.util
import bpfast.reference as ref
import bpfast.reference.util as ref_util


def _run(layers, util):
    arrays = inputs()
    before = {k: v.copy() for k, v in arrays.items() if isinstance(v, np.ndarray)}
    exc = msg = None
    try:
        call(layers, util, **arrays)
    except Exception as e:  # the outcome is what is compared
        exc, msg = type(e).__name__, str(e)
    untouched = all(
        np.array_equal(before[k], arrays[k], equal_nan=True) for k in before
    )
    return {"exc": exc, "msg": msg, "untouched": untouched}

"""

_EPILOGUE = """
print(json.dumps({"ref": _run(ref, ref_util), "fast": _run(bpfast, bpfast.util)}))
"""


def run_bad_input(body, timeout=300):
    """Run a bad-input case against the reference and bpfast in a fresh interpreter.

    ``body`` defines ``inputs()`` (a dict of arrays and objects) and
    ``call(layers, util, **inputs)``, where ``layers`` is ``bpfast.reference`` or ``bpfast``
    and ``util`` the matching ``util`` module.  A crash (segfault, abort) of the child fails
    the test.  Returns ``{"ref": outcome, "fast": outcome}`` with each outcome
    ``{"exc": type name or None, "msg": str or None, "untouched": bool}``.
    """
    script = _PRELUDE + textwrap.dedent(body) + _EPILOGUE
    returncode, stdout, stderr = run_snippet(script, timeout=timeout)
    assert returncode == 0, f"child exited with {returncode}:\n{stderr}"
    return json.loads(stdout.strip().splitlines()[-1])


def assert_same_error(result, allowed=None):
    """bpfast raised what the reference raised (or one of ``allowed``), inputs untouched."""
    ref, fast = result["ref"], result["fast"]
    expected = {ref["exc"]} | set(allowed or ())
    assert ref["exc"] is not None, f"the reference accepted the input: {result}"
    assert fast["exc"] in expected, result
    assert fast["untouched"] and ref["untouched"], result
