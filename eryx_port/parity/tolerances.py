# SPDX-License-Identifier: GPL-2.0-or-later
"""Round-off floors of ill-conditioned computations, stated for the parity comparison.

The default floor of :mod:`trace_tools.compare` (256 eps of an array's largest magnitude) is the
rounding of well-conditioned float64 arithmetic. An inverse of an ill-conditioned matrix loses
more: each adapter that needs more says so with :class:`trace_tools.compare.Tolerance` and one of
these floors, computed from the call's own input.
"""

from __future__ import annotations

import numpy as np

_EPS = float(np.finfo(np.float64).eps)
# numpy.linalg.pinv's default cutoff (eryx's compute_Kinv): singular values below it are dropped.
_PINV_RCOND = 1e-15


def pinv_condition(K: np.ndarray) -> np.ndarray:
    """cond of each K (..., n, n) on its range: largest singular value over the smallest one that
    numpy.linalg.pinv keeps (those above ``_PINV_RCOND`` of the largest)."""
    s = np.linalg.svd(K, compute_uv=False)
    kept = np.where(s > _PINV_RCOND * s[..., :1], s, np.inf)
    return s[..., 0] / kept.min(axis=-1)


def inverse_floor(K: np.ndarray) -> float:
    """Round-off floor of a (pseudo-)inverse of K, or of sums of them: 16 eps cond(K).

    K's own rounding (a few eps of its scale) is amplified by its condition number; the measured
    port-vs-eryx differences stay below 0.6 eps cond (compute_Kinv at the small k of 6o2h_clean-s2,
    cond 1.7e8). Sums over k (the lattice covariance) take the worst k.
    """
    return float(16 * _EPS * pinv_condition(K).max())


