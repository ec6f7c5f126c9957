"""Accuracy of bpfast's vectorised exp (bp_exp_f64/f32 in bpfast/_kernels/simd.h).

Sigmoid and softmax are built on it, so it is checked on its own against ``np.exp`` in long
double (x87 80-bit here: 11 more bits than float64): at most 2 ulp over the whole finite range,
subnormal results included, and C99's special values (NaN, +-inf, overflow to +inf,
underflow to +0) -- computed without raising FP warnings.
"""

import warnings

import numpy as np
import pytest

from bpfast._kernels.runtime import vec_exp

LD = np.longdouble
pytestmark = pytest.mark.skipif(
    np.finfo(LD).nmant <= np.finfo(np.float64).nmant,
    reason="long double is not wider than double on this platform: no exact reference",
)
MAX_ULP = 2.0


def _vec_exp(x):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vec_exp(x, out)
    return out


def _limits(dtype):
    """(largest x with a finite exp, smallest x with a non-zero exp) in ``dtype``."""
    fmax = LD(np.finfo(dtype).max)
    hi = dtype.type(np.log(fmax))
    while np.exp(LD(hi)) > fmax:  # round to nearest may have landed above ln(max)
        hi = np.nextafter(hi, dtype.type(0))
    # exp(x) rounds to the smallest subnormal s when it exceeds s / 2 (s / 2 ties to 0)
    lo = dtype.type(np.log(LD(np.finfo(dtype).smallest_subnormal) / 2))
    while np.exp(LD(lo)) <= LD(np.finfo(dtype).smallest_subnormal) / 2:
        lo = np.nextafter(lo, dtype.type(0))
    return hi, lo


def _ulp_error(x, got):
    exact = np.exp(x.astype(LD))
    # ulp of the exact result in the target dtype (the subnormal spacing below the normals)
    ulp = np.spacing(np.abs(exact.astype(x.dtype))).astype(LD)
    return np.abs(got.astype(LD) - exact) / ulp


def _assert_accurate(x):
    got = _vec_exp(x)
    assert np.isfinite(got).all()
    err = _ulp_error(x, got)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP, (
        f"exp({x[worst]!r}) = {got[worst]!r}, {float(err[worst]):.3f} ulp "
        f"(exact {np.exp(LD(x[worst]))!r})")


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def fdtype(request):
    return np.dtype(request.param)


def test_random_over_the_finite_range(rng, fdtype):
    hi, lo = _limits(fdtype)
    x = rng.uniform(float(lo), float(hi), 400_000).astype(fdtype)
    _assert_accurate(x[(x >= lo) & (x <= hi)])


def test_near_zero(rng, fdtype):
    # |x| from 1e-30 to 1: exp close to 1, where a reduction error would show
    mag = 10.0 ** rng.uniform(-30, 0, 100_000)
    x = (mag * rng.choice([-1, 1], mag.size)).astype(fdtype)
    _assert_accurate(x)


def test_reduction_boundaries(fdtype):
    # x near k * ln2 / 2 and k * ln2, where the integer k of the reduction changes
    k = np.arange(-140, 128) if fdtype == np.float32 else np.arange(-1070, 1024)
    centres = np.concatenate([k * np.log(2), (k + 0.5) * np.log(2)])
    x = centres.astype(fdtype)
    for _ in range(3):
        x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])
    hi, lo = _limits(fdtype)
    _assert_accurate(np.unique(x[(x >= lo) & (x <= hi)]))


def test_subnormal_results(rng, fdtype):
    hi, lo = _limits(fdtype)
    normal = np.log(LD(np.finfo(fdtype).smallest_normal))
    x = rng.uniform(float(lo), float(normal), 100_000).astype(fdtype)
    x = np.concatenate([x, [lo, np.nextafter(lo, fdtype.type(0))]]).astype(fdtype)
    got = _vec_exp(x)
    assert (got < np.finfo(fdtype).smallest_normal).sum() > 0.9 * x.size
    _assert_accurate(x)
    assert _vec_exp(np.array([lo], fdtype))[0] == np.finfo(fdtype).smallest_subnormal


def test_thresholds(fdtype):
    hi, lo = _limits(fdtype)
    tiny = np.finfo(fdtype).smallest_subnormal
    x = np.array([hi, np.nextafter(hi, fdtype.type(np.inf)), lo,
                  np.nextafter(lo, fdtype.type(-np.inf))], fdtype)
    got = _vec_exp(x)
    assert np.isfinite(got[0]) and _ulp_error(x[:1], got[:1])[0] <= MAX_ULP
    assert got[1] == np.inf
    assert got[2] == tiny
    assert got[3] == 0.0 and not np.signbit(got[3])


def test_special_values(fdtype):
    info = np.finfo(fdtype)
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, info.smallest_subnormal,
                  -info.smallest_subnormal, info.max, -info.max, 1000.0, -1000.0, 1e30,
                  -1e30], fdtype)
    got = _vec_exp(x)
    assert np.isnan(got[:2]).all()
    expected = np.array([np.inf, 0.0, 1.0, 1.0, 1.0, 1.0, np.inf, 0.0, np.inf, 0.0, np.inf,
                         0.0], fdtype)
    np.testing.assert_array_equal(got[2:], expected)
    assert not np.signbit(got[2:]).any()


def test_every_length_and_offset(rng, fdtype):
    # vector body and scalar tail give the same accuracy wherever an element sits
    hi, lo = _limits(fdtype)
    base = rng.uniform(-20, 20, 80).astype(fdtype)
    for n in range(0, 40):
        for offset in (0, 1, 3):
            x = base[offset:offset + n]
            got = _vec_exp(x)
            if n:
                assert (_ulp_error(x, got) <= MAX_ULP).all(), (n, offset)


def test_matches_numpy_closely(rng, fdtype):
    x = rng.uniform(-50, 50, 10_000).astype(fdtype)
    np.testing.assert_allclose(_vec_exp(x), np.exp(x), rtol=4 * np.finfo(fdtype).eps)


def test_checks_lengths():
    with pytest.raises(ValueError):
        vec_exp(np.zeros(3), np.zeros(2))
    with pytest.raises(TypeError):
        vec_exp(None, np.zeros(2))
