"""Derive the polynomial coefficients used by ``bpfast/_kernels/simd.h``.

``exp(r) = 1 + r + r**2 * q(r)`` on ``|r| <= 0.35`` (a little over ln(2)/2, so a reduction
whose rounding picked the neighbouring k is still covered); ``q`` is a Chebyshev fit, close to
minimax.  Run ``pip install mpmath && python tools/exp_coefficients.py`` to reproduce the
constants in the header and the approximation error of each (the error of the polynomial with
its coefficients rounded to the working precision, before any rounding in the evaluation).
"""

import mpmath as mp
import numpy as np

mp.mp.dps = 60
A = mp.mpf("0.35")


def q(r):
    # Taylor series: no cancellation near r = 0, unlike (exp(r) - 1 - r) / r**2.
    return mp.nsum(lambda k: r ** (k - 2) / mp.factorial(k), [2, mp.inf])


def main():
    for name, degree, ftype in (("double", 9, np.float64), ("float", 4, np.float32)):
        coeffs = mp.chebyfit(q, [-A, A], degree + 1)
        rounded = [mp.mpf(float(ftype(c))) for c in reversed(coeffs)]  # c0 first
        worst = mp.mpf(0)
        for r in mp.linspace(-A, A, 2001):
            p = 1 + r + r**2 * mp.polyval(list(reversed(rounded)), r)
            worst = max(worst, abs(p / mp.exp(r) - 1))
        eps = np.finfo(ftype).eps
        print(f"{name}: q of degree {degree}; max relative error {mp.nstr(worst, 3)}"
              f" = {mp.nstr(worst / eps, 3)} ulp")
        for i, c in enumerate(rounded):
            print(f"  c{i} = {float(c).hex()}  /* {mp.nstr(c, 17)} */")


if __name__ == "__main__":
    main()
