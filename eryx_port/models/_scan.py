# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared pieces of the translational and liquid-like models: parameter parsing, eryx's grid
scans and the gradient fits.

Displacement parameters come in eryx's two forms: a list of isotropic sigmas (shape (n,)) or
per-axis sigmas (shape (n, 3), along x, y, z of q). A single real number is one isotropic sigma.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ._checks import check_count

from ..stats import compute_cc
from ..tensors import as_real


class TargetShapeError(ValueError, AssertionError):
    """A target map whose shape is not the model's (eryx asserts it: an AssertionError there)."""


def is_scalar(x: Any) -> bool:
    """A real number: Python/NumPy scalar, 0-d array or 0-d tensor (bool excluded)."""
    if isinstance(x, bool):
        return False
    if isinstance(x, numbers.Real):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x.ndim == 0 and not (x.dtype == torch.bool if isinstance(x, torch.Tensor) else x.dtype == np.bool_)
    return False


def _finite(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} must be finite, got {t.detach().cpu().tolist()}")
    return t


def _as_values(value: Any, dtype, device, message: str) -> torch.Tensor:
    """``value`` as a tensor of at least one dimension; ``message`` names what was expected."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{message}, got {value!r}")
    try:
        t = as_real(value, dtype, device)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{message}, got {value!r}") from exc
    return t.reshape(1) if t.ndim == 0 else t


def as_sigmas(sigmas: Any, dtype, device, name: str = "sigmas") -> torch.Tensor:
    """``sigmas`` as (n,) isotropic or (n, 3) per-axis values (tensors keep their graph)."""
    t = _as_values(sigmas, dtype, device, f"{name} must be a number, (n,) isotropic or (n, 3) per-axis values")
    if t.ndim > 2 or (t.ndim == 2 and t.shape[1] != 3):
        raise ValueError(f"{name} must have shape (n,) (isotropic) or (n, 3) (per axis), got {tuple(t.shape)}")
    return _finite(t, name)


def as_gammas(gammas: Any, dtype, device) -> torch.Tensor:
    """``gammas`` as (n,) correlation lengths (a number gives one); tensors keep their graph."""
    t = _as_values(gammas, dtype, device, "gammas must be a number or a 1-d array")
    if t.ndim != 1:
        raise ValueError(f"gammas must be a number or a 1-d array, got shape {tuple(t.shape)}")
    return _finite(t, "gammas")


def q2_sigma2(sigmas: torch.Tensor, q_grid: torch.Tensor, q_mags: torch.Tensor) -> torch.Tensor:
    """(n, n_points): ``|q|^2 sigma^2`` for isotropic sigmas (n,), ``sum_i q_i^2 sigma_i^2`` for (n, 3)."""
    if sigmas.ndim == 1:
        return sigmas.square()[:, None] * q_mags.square()[None, :]
    return sigmas.square() @ q_grid.square().T


def linspace(lo: float, hi: float, n: int, dtype, device) -> torch.Tensor:
    """Evenly spaced values as NumPy's ``linspace`` rounds them: ``lo + i * step``, the last one ``hi``."""
    i = torch.arange(n, dtype=dtype, device=device)
    if n == 1:
        return i + lo
    out = i * ((hi - lo) / (n - 1)) + lo
    out[-1] = hi
    return out


def scalar_bound(x: Any, name: str) -> float:
    """A finite number given as a scalar (Python, NumPy or a 0-d tensor)."""
    if not is_scalar(x):
        raise ValueError(f"{name} must be a number, got {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


def _triple(x: Any, name: str) -> list[float]:
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name} must be a number or 3 per-axis values, got {x!r}")
    values = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if values.size != 3:
        raise ValueError(f"{name} must be a number or 3 per-axis values, got {x!r}")
    return [scalar_bound(v, name) for v in values]


def sigma_grid(sigmas_min: Any, sigmas_max: Any, n_search: Any, dtype, device, name: str = "n_search") -> torch.Tensor:
    """The sigmas of eryx's scan: ``n`` values from min to max (both numbers), or the product grid of
    ``n`` values per axis (both 3 values), a slowest and c fastest, (n**3, 3)."""
    n = check_count(n_search, name)
    if is_scalar(sigmas_min) and is_scalar(sigmas_max):
        return linspace(scalar_bound(sigmas_min, "sigmas_min"), scalar_bound(sigmas_max, "sigmas_max"), n, dtype, device)
    if is_scalar(sigmas_min) or is_scalar(sigmas_max):
        raise ValueError("sigmas_min and sigmas_max must both be numbers (isotropic) or both 3 per-axis values, "
                         f"got {sigmas_min!r} and {sigmas_max!r}")
    lo, hi = _triple(sigmas_min, "sigmas_min"), _triple(sigmas_max, "sigmas_max")
    axes = [linspace(a, b, n, dtype, device) for a, b in zip(lo, hi)]
    return torch.cartesian_prod(*axes)


def check_target(target: Any, shape: Sequence[int], dtype, device) -> torch.Tensor:
    """The target map as a tensor; its shape must be ``shape``."""
    t = as_real(target, dtype, device)
    if tuple(t.shape) != tuple(int(s) for s in shape):
        raise TargetShapeError(f"target has shape {tuple(t.shape)}, the model's map has shape {tuple(shape)}")
    return t


def best(ccs: torch.Tensor) -> int:
    """Index of the largest CC (the first NaN, as NumPy's argmax, when any)."""
    nan = torch.isnan(ccs)
    if bool(nan.any()):
        return int(torch.nonzero(nan)[0])
    return int(torch.argmax(ccs))


def describe(value: torch.Tensor) -> str:
    v = value.detach().cpu()
    return f"{float(v)}" if v.ndim == 0 else str(v.numpy())


def fit_lbfgs(params: torch.Tensor, maps: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
              mask: Any, max_iter: int, tolerance: float) -> torch.Tensor:
    """Maximise the Pearson correlation of ``maps(exp(params))`` with ``target`` over ``params``
    (logarithms of positive parameters) with L-BFGS (strong Wolfe line search). Returns exp(params)."""
    log_p = params.detach().clone().log().requires_grad_(True)
    flat = target.reshape(1, -1)
    opt = torch.optim.LBFGS([log_p], lr=1, max_iter=check_count(max_iter, "max_iter"), tolerance_grad=tolerance,
                            tolerance_change=tolerance * 1e-3, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = 1 - compute_cc(maps(log_p.exp()).reshape(1, -1), flat, mask)[0]
        loss.backward()
        return loss

    opt.step(closure)
    return log_p.detach().exp()
