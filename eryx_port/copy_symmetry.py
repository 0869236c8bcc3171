# SPDX-License-Identifier: GPL-2.0-or-later
"""Structure-factor sums of symmetry-related copies, derived from copy 0's instead of computed again.

Copy m of the asymmetric unit holds copy 0's atoms moved by a space-group operation: fractional
coordinates ``x_m = R x_0 + t``, lever arms ``a_m = C a_0`` (``C = A R A^-1`` in Cartesian
coordinates), the same displacements and form factors. Then, with ``h' = R^T h`` (and ``|q(h')| = |q(h)|``)::

    S0_m(h) = exp(2 pi i h.t) S0_0(h'),     S1_m(h) = exp(2 pi i h.t) C S1_0(h').

When ``R^T`` maps the grid onto itself, keeping the engine's column axis (up to its sign) and
permuting the row axes with signs, ``S_0(h')`` is a reflection and/or transposition of copy 0's
sums on the same columns (a sign change of the column uses S(-h) = conj S(h)). Such copies cost a
gather, a phase and a 3 x 3 rotation instead of the engine's products over the atoms: on P 21 21 21
three of the four copies, on P 43 21 2 seven of eight. Copies whose operation mixes the column axis
with the rows, or the rows with each other other than by a signed permutation (P 31's 3-fold axis),
are computed as before.

Every relation is checked on the atoms themselves (rotation integral, translation the same for all
atoms, lever arms rotated, metric preserved), to round-off; coordinates or lever arms that carry a
gradient, and displacements that differ between copies or carry a gradient per copy, leave every
copy computed on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Whether onephonon_map derives copies by symmetry (tests switch it off to compare both paths).
ENABLED = True
_TOL = 1e-9  # fractional coordinates, and lever arms relative to their size (float64; float32: its round-off)


def _tol(dtype: torch.dtype) -> float:
    return max(_TOL, 64 * torch.finfo(dtype).eps)


@dataclass(frozen=True)
class CopyMap:
    """How copy ``copy``'s sums follow from copy 0's on a grid whose engine axes are ``perm`` = (a1, a2, f).

    Output row axis i reads source row axis ``source[i]``, reversed where ``flip[i]``; ``conj``: the
    operation reverses the column axis (read through S(-h) = conj S(h)); ``shift``: t along (a1, a2, f);
    ``rotation``: C (3, 3), acting on the lever-arm sums.
    """

    copy: int
    source: tuple[int, int]
    flip: tuple[bool, bool]
    conj: bool
    shift: tuple[float, float, float]
    rotation: torch.Tensor


def _integral_map(frac0: torch.Tensor, fracm: torch.Tensor, tol: float):
    """``(M, t)`` with ``fracm = frac0 @ M + t`` (rows of fractional coordinates) to ``tol``, M integral; None if there is none."""
    c0, cm = frac0.mean(0), fracm.mean(0)
    X0, Xm = frac0 - c0, fracm - cm
    if torch.linalg.matrix_rank(X0) < 3:  # planar or collinear atoms: the rotation is not determined
        return None
    M = torch.linalg.lstsq(X0, Xm).solution
    Mi = M.round()
    if (M - Mi).abs().max() > 1e-3 or (X0 @ Mi - Xm).abs().max() > tol:
        return None
    return Mi, cm - c0 @ Mi


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(1.0, float(a.abs().max()) if a.numel() else 1.0)
    return a.shape == b.shape and bool((a - b).abs().max() <= max(1e-12, 64 * torch.finfo(a.dtype).eps) * scale)


@dataclass(frozen=True)
class CopyOperation:
    """Copy ``copy`` = copy 0 moved by ``x -> R x + t``: ``M = R^T`` (integral, as nested tuples, so that
    ``h' = M h``), ``t`` (fractional) and the Cartesian rotation ``C`` of the lever arms."""

    copy: int
    M: tuple[tuple[int, int, int], ...]
    t: tuple[float, float, float]
    rotation: torch.Tensor


def copy_operations(A_inv: torch.Tensor, xyz: torch.Tensor, arms: torch.Tensor, U: torch.Tensor) -> list[CopyOperation]:
    """The copies m > 0 that are copy 0 moved by a metric-preserving operation, checked on the atoms.

    ``xyz``/``arms``: (n_asu, n_atoms, 3) Cartesian; ``U``: (n_atoms,) or (n_asu, n_atoms). Empty when
    the coordinates or arms carry a gradient, or the displacements carry one per copy.
    """
    n_asu = xyz.shape[0]
    if n_asu < 2 or xyz.requires_grad or arms.requires_grad:
        return []
    if U.requires_grad and U.dim() == 2 and U.shape[0] > 1 and U.stride(0) != 0:
        return []  # one parameter per copy: each copy's gradient is its own
    U = U.detach().expand(n_asu, xyz.shape[1])
    metric_tol = max(1e-12, 64 * torch.finfo(A_inv.dtype).eps)
    A_inv = A_inv.detach().to(torch.float64)
    A = torch.linalg.inv(A_inv)
    G = A_inv @ A_inv.T
    frac = xyz.detach().to(torch.float64) @ A_inv.T
    arms64 = arms.detach().to(torch.float64)
    arm_scale = max(1.0, float(arms64.abs().max()))
    tol = _tol(xyz.dtype)
    ops = []
    for m in range(1, n_asu):
        if not torch.equal(U[m], U[0]):
            continue
        found = _integral_map(frac[0], frac[m], tol)
        if found is None:
            continue
        M, t = found  # row form: x_m = x_0 @ M + t, so R = M^T and h' = R^T h = M h
        if (M.T @ G @ M - G).abs().max() > metric_tol * G.abs().max():  # |q| must be kept: (M h)^T G (M h) = h^T G h
            continue
        C = A @ M.T @ A_inv  # Cartesian: a_m = C a_0
        if (arms64[0] @ C.T - arms64[m]).abs().max() > tol * arm_scale:
            continue
        M_int = tuple(tuple(int(v) for v in row) for row in M.tolist())
        ops.append(CopyOperation(m, M_int, tuple(float(v) for v in t.tolist()), C.to(xyz.dtype)))
    return ops


def copy_maps(ops: list[CopyOperation], axes, perm) -> dict[int, CopyMap]:
    """Of ``ops``, the copies whose sums follow from copy 0's on the grid ``axes`` ((h, k, l) values)
    with the engine's axes ``perm`` = (a1, a2, f): the operation keeps the column axis up to its sign
    and maps the row axes onto each other (same values) with signs (symmetric axes)."""
    a1, a2, f = perm
    values = [a.detach() for a in axes]
    symmetric = [_same_values(v, -v.flip(0)) for v in values]
    maps = {}
    for op in ops:
        Ml = [[op.M[r][c] for c in (a1, a2, f)] for r in (a1, a2, f)]  # h'_layout = Ml h_layout
        if Ml[2][0] or Ml[2][1] or Ml[0][2] or Ml[1][2]:
            continue  # the column axis is mixed with the rows
        sign_f = Ml[2][2]
        rho = [[Ml[r][c] * sign_f for c in range(2)] for r in range(2)]  # source rows, on the same columns
        if sorted(abs(v) for row in rho for v in row) != [0, 0, 1, 1] or abs(rho[0][0]) == abs(rho[0][1]):
            continue  # not a signed permutation of the row axes
        row_axes = (a1, a2)
        source, flip, ok = [0, 0], [False, False], True
        for j in range(2):  # source row axis j takes output row axis i's value times rho[j][i]
            i = 0 if rho[j][0] else 1
            ok = ok and _same_values(values[row_axes[j]], values[row_axes[i]])
            ok = ok and (rho[j][i] > 0 or symmetric[row_axes[j]])
            source[i], flip[i] = j, rho[j][i] < 0
        if ok:
            shift = tuple(op.t[a] for a in (a1, a2, f))
            maps[op.copy] = CopyMap(op.copy, tuple(source), tuple(flip), sign_f < 0, shift, op.rotation)
    return maps


def derive(plane: torch.Tensor, cmap: CopyMap, rows: tuple[torch.Tensor, torch.Tensor], cols: torch.Tensor,
           r0: int, r1: int, out: torch.Tensor) -> None:
    """Write into ``out`` (4, r1 - r0, n2, w) the sums of copy ``cmap.copy`` on rows ``r0:r1`` of the first row
    axis, from copy 0's ``plane`` (4, n1, n2, w) on every row (weights 1 then the lever arms; columns ``cols``,
    values). Slice assignments keep the autograd graph."""
    src = plane if cmap.source == (0, 1) else plane.transpose(1, 2)  # axis i of src: the source axis of output axis i
    n1 = src.shape[1]
    if cmap.flip[0]:  # output rows r0:r1 read source rows n1-1-r0 down to n1-r1
        src = src[:, n1 - r1 : n1 - r0].flip(1)
    else:
        src = src[:, r0:r1]
    if cmap.flip[1]:
        src = src.flip(2)
    if cmap.conj:
        src = src.conj()
    t1, t2, tf = cmap.shift
    angle = (2 * math.pi) * ((t1 * rows[0][r0:r1, None] + t2 * rows[1][None, :])[:, :, None] + tf * cols)
    phase = torch.polar(torch.ones_like(angle), angle)  # exp(2 pi i h.t), (r, n2, w)
    out[0] = src[0] * phase
    out[1:4] = torch.einsum("ab,b...->a...", cmap.rotation.to(src.dtype), src[1:4]) * phase
