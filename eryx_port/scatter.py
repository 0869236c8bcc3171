# SPDX-License-Identifier: GPL-2.0-or-later
"""Atomic form factors and structure factors in torch: the port of ``eryx.scatter``.

For q-vectors ``q`` (1/Angstrom, rows of ``q_grid``) and atoms at ``r_j`` with
IT92 form-factor coefficients ``(a_j, b_j, c_j)`` and isotropic displacement
``U_j`` (Angstrom^2)::

    f_j(q) = sum_i a_ji exp(-b_ji (|q| / 4 pi)^2) + c_j
    F(q)   = sum_j f_j(q) exp(-|q|^2 U_j / 2) exp(i q . r_j)

Everything is differentiable in ``q_grid``, ``xyz``, ``U`` and the
coefficients. ``structure_factors`` evaluates the q-points in chunks so memory
stays bounded for millions of points; chunking does not change the result.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .tensors import as_real, float_context

__all__ = ["compute_form_factors", "structure_factors_batch", "structure_factors"]

# (q, atom) elements per chunk: 2**22 float64 values (32 MiB) per temporary keeps a
# chunk's working memory near 200 MiB whatever the atom count.
_CHUNK_ELEMENTS = 1 << 22
_FOUR_PI_SQ = (4 * math.pi) ** 2


def _atoms(q_grid, xyz, ff_a, ff_b, ff_c, U, dtype, device):
    """Convert and check the shared inputs; ValueError names the argument at fault."""
    dtype, device = float_context(dtype, device, q_grid, xyz, ff_a, ff_b, ff_c, U)
    q = as_real(q_grid, dtype, device)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"q_grid must have shape (n_points, 3), got {tuple(q.shape)}")
    a = as_real(ff_a, dtype, device)
    if a.ndim != 2:
        raise ValueError(f"ff_a must have shape (n_atoms, n_gaussians), got {tuple(a.shape)}")
    n_atoms = a.shape[0]
    b = as_real(ff_b, dtype, device)
    if b.shape != a.shape:
        raise ValueError(f"ff_b must have the shape of ff_a {tuple(a.shape)}, got {tuple(b.shape)}")
    c = as_real(ff_c, dtype, device)
    if c.shape != (n_atoms,):
        raise ValueError(f"ff_c must have shape (n_atoms,) = ({n_atoms},), got {tuple(c.shape)}")
    r = None
    if xyz is not None:
        r = as_real(xyz, dtype, device)
        if r.shape != (n_atoms, 3):
            raise ValueError(f"xyz must have shape (n_atoms, 3) = ({n_atoms}, 3) like ff_a, got {tuple(r.shape)}")
    u = None
    if U is not None:
        u = as_real(U, dtype, device)
        if u.ndim > 1 or (u.ndim == 1 and u.shape[0] != n_atoms):
            raise ValueError(f"U must be a scalar or have shape (n_atoms,) = ({n_atoms},), got {tuple(u.shape)}")
    return q, r, a, b, c, u


def _gaussian_sum(s2: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    # one gaussian at a time: no (q, atom, gaussian) temporary, and the terms add up in order
    total = a[:, 0] * torch.exp(-b[:, 0] * s2)
    for i in range(1, a.shape[1]):
        total = total + a[:, i] * torch.exp(-b[:, i] * s2)
    return total + c


def _form_factors(q: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    # (|q|/4pi)^2 from q.q: smooth at q = 0, where |q| has no derivative
    s2 = (q * q).sum(dim=1, keepdim=True) / _FOUR_PI_SQ
    if a.shape[1] == 0:
        return c.expand(q.shape[0], -1)
    if not (a.requires_grad or b.requires_grad or c.requires_grad) and a.shape[0] > 1:
        # atoms of one element share coefficients: evaluate each distinct set once, then gather
        # (same arithmetic per atom, so the same values; skipped when the coefficients need gradients)
        n = a.shape[1]
        distinct, inverse = torch.unique(torch.cat([a, b, c[:, None]], dim=1), dim=0, return_inverse=True)
        if distinct.shape[0] < a.shape[0]:
            return _gaussian_sum(s2, distinct[:, :n], distinct[:, n : 2 * n], distinct[:, 2 * n])[:, inverse]
    return _gaussian_sum(s2, a, b, c)


def compute_form_factors(q_grid, ff_a, ff_b, ff_c, *, dtype=None, device=None):
    """Form factor of every atom at every q-vector: shape ``(n_points, n_atoms)``.

    ``ff_a``, ``ff_b``: ``(n_atoms, n_gaussians)`` (4 for IT92); ``ff_c``: ``(n_atoms,)``.
    """
    q, _, a, b, c, _ = _atoms(q_grid, None, ff_a, ff_b, ff_c, None, dtype, device)
    return _form_factors(q, a, b, c)


def _projection(matrix, n_rows: int, compute_qF: bool, dtype, device):
    """``project_on_components`` as a tensor (None stays None), its rows checked."""
    if matrix is None:
        return None
    p = as_real(matrix, dtype, device)
    # a 1d vector projects onto a single component and yields one value per q-point
    if p.ndim not in (1, 2) or p.shape[0] != n_rows:
        what = "3 * n_atoms" if compute_qF else "n_atoms"
        raise ValueError(f"project_on_components must have {what} = {n_rows} rows, got shape {tuple(p.shape)}")
    return p


def _positive_int(value: Any, name: str) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _sf_block(q, r, a, b, c, u, compute_qF, proj, sum_over_atoms):
    """Structure factors of one block of q-points (no chunking)."""
    amp = _form_factors(q, a, b, c)
    if u is not None:
        amp = amp * torch.exp(-0.5 * (q * q).sum(dim=1, keepdim=True) * u)
    phase = q @ r.T
    re, im = amp * torch.cos(phase), amp * torch.sin(phase)
    if compute_qF:
        # columns ordered atom-major: (atom 0: qx, qy, qz), (atom 1: ...), ...
        re = (re[:, :, None] * q[:, None, :]).reshape(q.shape[0], -1)
        im = (im[:, :, None] * q[:, None, :]).reshape(q.shape[0], -1)
    if proj is not None:
        re, im = re @ proj, im @ proj
    if sum_over_atoms and re.ndim == 2:
        re, im = re.sum(dim=1), im.sum(dim=1)
    return torch.complex(re, im)


def structure_factors_batch(
    q_grid,
    xyz,
    ff_a,
    ff_b,
    ff_c,
    U=None,
    compute_qF=False,
    project_on_components=None,
    sum_over_atoms=True,
    *,
    dtype=None,
    device=None,
):
    """Structure factors at all q-vectors in one block (complex128, or complex64 in float32).

    Returns shape ``(n_points,)`` when ``sum_over_atoms``, otherwise
    ``(n_points, n_atoms)``, ``(n_points, 3 n_atoms)`` with ``compute_qF``
    (each atom's term times qx, qy, qz) or ``(n_points, n_components)`` with
    ``project_on_components`` (a real ``(n_atoms or 3 n_atoms, n_components)`` matrix).
    """
    q, r, a, b, c, u = _atoms(q_grid, xyz, ff_a, ff_b, ff_c, U, dtype, device)
    proj = _projection(project_on_components, (3 if compute_qF else 1) * r.shape[0], compute_qF, q.dtype, q.device)
    return _sf_block(q, r, a, b, c, u, compute_qF, proj, sum_over_atoms)


def structure_factors(
    q_grid,
    xyz,
    ff_a,
    ff_b,
    ff_c,
    U=None,
    batch_size=100000,
    n_processes=8,
    compute_qF=False,
    project_on_components=None,
    sum_over_atoms=True,
    *,
    dtype=None,
    device=None,
):
    """Structure factors as :func:`structure_factors_batch`, evaluated chunk by chunk over q.

    A chunk holds at most ``batch_size`` q-points, fewer when the atom count
    would make its temporaries large. ``n_processes`` is accepted for eryx
    compatibility and ignored (the work is already vectorised).
    """
    del n_processes
    batch_size = _positive_int(batch_size, "batch_size")
    q, r, a, b, c, u = _atoms(q_grid, xyz, ff_a, ff_b, ff_c, U, dtype, device)
    columns = (3 if compute_qF else 1) * r.shape[0]
    proj = _projection(project_on_components, columns, compute_qF, q.dtype, q.device)
    per_point = max(columns, 1)
    chunk = max(1, min(batch_size, _CHUNK_ELEMENTS // per_point))
    n = q.shape[0]
    if n <= chunk:
        return _sf_block(q, r, a, b, c, u, compute_qF, proj, sum_over_atoms)
    parts = [
        _sf_block(q[start : start + chunk], r, a, b, c, u, compute_qF, proj, sum_over_atoms)
        for start in range(0, n, chunk)
    ]
    return torch.cat(parts, dim=0)
