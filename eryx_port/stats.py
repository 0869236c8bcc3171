# SPDX-License-Identifier: GPL-2.0-or-later
"""Correlation statistics between maps: the port of ``eryx.stats``.

Same names and signatures as eryx; inputs may be NumPy arrays or tensors (gradients flow through
tensors), results are tensors. NaN marks voxels to ignore, as in eryx: a voxel that is NaN in any
of the compared maps is left out of every correlation, and ``mask`` (True = keep) leaves out more.
A correlation over fewer than two valid voxels, or of a constant map, is NaN (0 / 0), as in eryx.

Shells and dq groups are evaluated together as segment sums over the map (no loop over shells).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .tensors import as_real, float_context

__all__ = ["compute_cc", "compute_cc_by_shell", "compute_cc_by_dq"]


def _tensor(x: Any, name: str, dtype, device) -> torch.Tensor:
    t = as_real(x, dtype, device)
    if t.ndim == 0:
        raise ValueError(f"{name} must be an array of map values, got a scalar")
    return t


def _bool_mask(mask: Any, n: int, device) -> torch.Tensor:
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    m = m.to(device).reshape(-1)
    if m.numel() != n:
        raise ValueError(f"mask must hold one value per map point ({n}), got {m.numel()}")
    return m.to(torch.bool)


def _pearson(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis over the voxels where ``keep`` is True.

    ``x``, ``y`` and ``keep`` broadcast against each other (rows: samples or groups). Voxels left
    out contribute exact zeros (``torch.where``, so NaN there never reaches values or gradients).
    """
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    keep = keep.expand(np.broadcast_shapes(tuple(keep.shape), tuple(x.shape), tuple(y.shape)))  # torch's imports sympy (0.6 s)
    xs = torch.where(keep, x, zero)
    ys = torch.where(keep, y, zero)
    count = keep.sum(dim=-1).to(x.dtype)
    dx = torch.where(keep, xs - (xs.sum(dim=-1) / count)[..., None], zero)
    dy = torch.where(keep, ys - (ys.sum(dim=-1) / count)[..., None], zero)
    numerator = (dx * dy).sum(dim=-1)
    return numerator / (torch.sqrt((dx * dx).sum(dim=-1)) * torch.sqrt((dy * dy).sum(dim=-1)))


def compute_cc(arr1, arr2, mask=None, *, dtype=None, device=None):
    """Pearson correlation of each row of ``arr1`` with the matching row of ``arr2``.

    ``arr1``: (n_samples, n_points) or (n_points,); ``arr2``: the same shape, or one row (1,
    n_points) / (n_points,) compared with every row of ``arr1``. A voxel is used only where no row
    of either array is NaN and ``mask`` (any shape with n_points elements) is True. Returns
    (n_samples,).
    """
    dtype, device = float_context(dtype, device, arr1, arr2)
    a = _tensor(arr1, "arr1", dtype, device)
    b = _tensor(arr2, "arr2", dtype, device)
    a = a[None] if a.ndim == 1 else a
    b = b[None] if b.ndim == 1 else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"arr1 and arr2 must be (n_samples, n_points) with the same n_points, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if b.shape[0] not in (1, a.shape[0]) and a.shape[0] != 1:
        raise ValueError(f"arr2 must have 1 row or as many rows as arr1 ({a.shape[0]}), got {b.shape[0]}")
    # as eryx: a voxel is dropped where the sum over every row of both arrays is NaN
    keep = ~torch.isnan(torch.cat([a, b], dim=0).detach().sum(dim=0))
    if mask is not None:
        keep = keep & _bool_mask(mask, a.shape[1], device)
    return _pearson(a, b, keep[None, :])


def _flat_pair(arr1, arr2, dtype, device):
    dtype, device = float_context(dtype, device, arr1, arr2)
    a = _tensor(arr1, "arr1", dtype, device).reshape(-1)
    b = _tensor(arr2, "arr2", dtype, device).reshape(-1)
    if a.numel() != b.numel():
        raise ValueError(f"arr1 and arr2 must have the same number of points, got {a.numel()} and {b.numel()}")
    return a, b, dtype, device


def _group_cc(a, b, keep, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Correlation within each group ``g`` of voxels (``groups == g``), over its voxels in ``keep``.

    Segment sums (``index_add``) over the kept voxels: memory linear in the map, whatever the number of groups.
    """
    sel = keep & (groups >= 0) & (groups < n_groups)
    g, x, y = groups[sel], a[sel], b[sel]
    zeros = x.new_zeros(n_groups)

    def total(values):
        return zeros.index_add(0, g, values)

    count = total(torch.ones_like(x))
    dx = x - (total(x) / count)[g]
    dy = y - (total(y) / count)[g]
    return total(dx * dy) / (torch.sqrt(total(dx * dx)) * torch.sqrt(total(dy * dy)))


def _histogram_edges(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """``numpy.histogram``'s bin edges: equal bins from the minimum to the maximum, as NumPy computes them."""
    if values.numel() == 0:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / n_bins
    edges = torch.arange(n_bins + 1, dtype=values.dtype, device=values.device) * step + lo
    edges[-1] = hi
    return edges


def _group_median(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Median of ``values`` within each group (mean of the two middle values for an even count), NaN if empty."""
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    v, g = values[order], groups[order]
    inside = (g >= 0) & (g < n_groups)
    v, g = v[inside], g[inside]
    counts = torch.bincount(g, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    safe = v if v.numel() else values.new_full((1,), float("nan"))
    lo = safe[(starts + (counts - 1).clamp(min=0) // 2).clamp(max=safe.numel() - 1)]
    hi = safe[(starts + counts // 2).clamp(max=safe.numel() - 1)]
    med = (lo + hi) / 2
    has_nan = torch.zeros(n_groups, dtype=torch.bool, device=values.device).index_put_(
        (g,), torch.isnan(v), accumulate=True)
    med = torch.where(has_nan, torch.full_like(med, float("nan")), med)
    return torch.where(counts > 0, med, torch.full_like(med, float("nan")))


def compute_cc_by_shell(arr1, arr2, res_map, mask=None, n_shells=10, *, dtype=None, device=None):
    """``(res_shell, cc_shell)``: correlation in ``n_shells`` resolution shells of equal width in 1/d^3.

    As eryx: the shells span the 1/d^3 values of the points whose resolution is coarser than the
    finest resolution among the kept voxels (so the finest voxels, and the voxel at the upper edge
    of the last shell, fall outside every shell). ``res_shell`` is each shell's median resolution
    (over all its points, kept or not).
    """
    a, b, dtype, device = _flat_pair(arr1, arr2, dtype, device)
    if isinstance(n_shells, bool) or int(n_shells) != n_shells or n_shells < 1:
        raise ValueError(f"n_shells must be a positive integer, got {n_shells!r}")
    n_shells = int(n_shells)
    res = as_real(res_map, dtype, device).detach().reshape(-1)
    if res.numel() != a.numel():
        raise ValueError(f"res_map must hold one resolution per map point ({a.numel()}), got {res.numel()}")
    keep = torch.ones_like(res, dtype=torch.bool) if mask is None else _bool_mask(mask, res.numel(), device)
    keep = keep & ~torch.isnan(a + b).detach()
    if not bool(keep.any()):
        raise ValueError("no voxel is left to correlate: every point is masked or NaN")
    inv_dcubed = 1.0 / res**3.0
    finest = res[keep].min()
    edges = _histogram_edges(inv_dcubed[res > finest], n_shells)
    # numpy.digitize(x, edges): i with edges[i-1] <= x < edges[i]
    shell = torch.bucketize(inv_dcubed, edges, right=True) - 1
    cc = _group_cc(a, b, keep, shell, n_shells)
    return _group_median(res, shell, n_shells), cc


def compute_cc_by_dq(arr1, arr2, dq_map, mask=None, *, dtype=None, device=None):
    """``(dq_vals, cc_dq)``: correlation among the voxels of each distinct distance ``dq`` to the nearest Bragg peak.

    ``dq_vals`` are the sorted distinct values of ``dq_map`` (a NaN, if present, last with a NaN correlation).
    """
    a, b, dtype, device = _flat_pair(arr1, arr2, dtype, device)
    dq = as_real(dq_map, dtype, device).detach().reshape(-1)
    if dq.numel() != a.numel():
        raise ValueError(f"dq_map must hold one value per map point ({a.numel()}), got {dq.numel()}")
    keep = torch.ones_like(dq, dtype=torch.bool) if mask is None else _bool_mask(mask, dq.numel(), device)
    keep = keep & ~torch.isnan(a + b).detach()
    finite = ~torch.isnan(dq)
    values, inverse = torch.unique(dq[finite], sorted=True, return_inverse=True)
    groups = torch.full_like(dq, -1, dtype=torch.long)
    groups[finite] = inverse
    cc = _group_cc(a, b, keep, groups, values.numel())
    if not bool(finite.all()):  # numpy.unique lists NaN once; no voxel equals it
        values = torch.cat([values, values.new_full((1,), float("nan"))])
        cc = torch.cat([cc, cc.new_full((1,), float("nan"))])
    return values, cc
