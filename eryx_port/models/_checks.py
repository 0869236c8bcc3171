"""Argument checks shared by the model classes: one ValueError naming the argument and the problem."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch


def check_sampling(s: Any, name: str, *, integral: bool = True) -> tuple:
    """``(min, max, oversampling)``: finite bounds, min <= max, a positive oversampling (a whole number
    unless ``integral`` is False)."""
    if isinstance(s, (str, bytes)) or not hasattr(s, "__len__") or len(s) != 3:
        raise ValueError(f"{name} must be (min, max, oversampling), got {s!r}")
    lo, hi, n = s
    for v, what in ((lo, "min"), (hi, "max"), (n, "oversampling")):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name}: {what} must be a finite number, got {v!r}")
    if n <= 0 or (integral and not isinstance(n, numbers.Integral)):
        raise ValueError(f"{name}: oversampling must be a positive {'integer' if integral else 'number'}, got {n!r}")
    if lo > hi:
        raise ValueError(f"{name}: min {lo} is larger than max {hi}")
    return (lo, hi, int(n)) if integral else tuple(s)


def check_samplings(hsampling: Any, ksampling: Any, lsampling: Any, *, integral: bool = True) -> tuple:
    """The three axes' samplings through :func:`check_sampling`, named as the models' arguments."""
    return tuple(check_sampling(s, name, integral=integral)
                 for s, name in ((hsampling, "hsampling"), (ksampling, "ksampling"), (lsampling, "lsampling")))


def check_res_limit(res_limit: Any):
    if isinstance(res_limit, bool) or not isinstance(res_limit, numbers.Real) or not math.isfinite(res_limit) or res_limit < 0:
        raise ValueError(f"res_limit must be a non-negative number of Angstrom, got {res_limit!r}")
    return res_limit


def check_count(n: Any, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def check_positive(value, name: str):
    """A plain positive number, or a tensor (kept as is, so its gradient survives) with positive value."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        v = float(value.detach())
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    else:
        v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v}")
    return value
