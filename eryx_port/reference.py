# SPDX-License-Identifier: GPL-2.0-or-later
"""Reference formulas for structure factors and harmonic diffuse scattering: the port of ``eryx.reference``.

eryx keeps these as slow double loops to check its fast code against; here they are the same
formulas written as tensor expressions (all q-points and atom pairs at once, chunked over q so
that the (q, atom, atom) terms of :func:`diffuse_covmat` stay within a fixed memory budget).
Both take anisotropic (3x3 per atom) or isotropic displacements and are differentiable in
``q_grid``, ``xyz`` and ``U`` / ``V``.

``elements`` is a list of gemmi elements (``gemmi.Element``), of element symbols (``'C'``), or of
records with IT92 coefficients ``it92_a``, ``it92_b``, ``it92_c`` (as the traces store them).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .scatter import compute_form_factors
from .tensors import as_real, float_context

__all__ = ["structure_factors", "diffuse_covmat"]

# (q, atom, atom) elements per chunk of diffuse_covmat: 2**21 complex values
_PAIR_CHUNK = 1 << 21


def _it92(element: Any) -> tuple[list[float], list[float], float]:
    if isinstance(element, str):
        import gemmi

        element = gemmi.Element(element)
    if hasattr(element, "it92_a"):
        return list(element.it92_a), list(element.it92_b), float(element.it92_c)
    coefs = getattr(element, "it92", None)
    if coefs is None:
        raise ValueError(f"element {element!r} has no IT92 form-factor coefficients")
    return list(coefs.a), list(coefs.b), float(coefs.c)


def _form_factor_coefficients(elements: Sequence[Any], n_atoms: int, dtype, device):
    if len(elements) != n_atoms:
        raise ValueError(f"elements must hold one element per atom ({n_atoms}), got {len(elements)}")
    rows = [_it92(el) for el in elements]
    a = torch.tensor([r[0] for r in rows], dtype=dtype, device=device).reshape(n_atoms, -1)
    b = torch.tensor([r[1] for r in rows], dtype=dtype, device=device).reshape(n_atoms, -1)
    c = torch.tensor([r[2] for r in rows], dtype=dtype, device=device)
    return a, b, c


def _inputs(q_grid, xyz, dtype, device):
    q = as_real(q_grid, dtype, device)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"q_grid must have shape (n_points, 3), got {tuple(q.shape)}")
    r = as_real(xyz, dtype, device)
    if r.ndim != 2 or r.shape[1] != 3:
        raise ValueError(f"xyz must have shape (n_atoms, 3), got {tuple(r.shape)}")
    return q, r


def _quadratic_form(q: torch.Tensor, D: torch.Tensor, anisotropic: bool) -> torch.Tensor:
    """``q^T D q`` for every q and every leading index of D: D (..., 3, 3) -> (n_q, ...) when
    ``anisotropic``; otherwise each element of D multiplies |q|^2."""
    if anisotropic:
        return torch.einsum("qi,...ij,qj->q...", q, D, q)
    return (q * q).sum(dim=1).reshape(-1, *([1] * D.ndim)) * D


def structure_factors(q_grid, xyz, elements, U=None, *, dtype=None, device=None):
    """Complex structure factors ``sum_j f_j(q) exp(i q . r_j) exp(-q^T U_j q / 2)`` at each q (n_points,).

    ``U``: None, (n_atoms,) isotropic (``q^T U_j q = |q|^2 U_j``) or (n_atoms, 3, 3) anisotropic.
    """
    dtype, device = float_context(dtype, device, q_grid, xyz, U)
    q, r = _inputs(q_grid, xyz, dtype, device)
    n_atoms = r.shape[0]
    f = compute_form_factors(q, *_form_factor_coefficients(elements, n_atoms, dtype, device))  # (n_q, n_atoms)
    if U is not None:
        u = as_real(U, dtype, device)
        if u.shape not in ((n_atoms,), (n_atoms, 3, 3)):
            raise ValueError(f"U must have shape (n_atoms,) or (n_atoms, 3, 3) with n_atoms = {n_atoms}, got {tuple(u.shape)}")
        f = f * torch.exp(-0.5 * _quadratic_form(q, u, u.ndim == 3))
    phase = q @ r.T
    return torch.complex((f * torch.cos(phase)).sum(dim=1), (f * torch.sin(phase)).sum(dim=1))


def diffuse_covmat(q_grid, xyz, elements, V, *, dtype=None, device=None):
    """``(Id, Ib)``: diffuse and Bragg intensity at each q from the covariance ``V`` of atomic displacements.

    With ``a_j = f_j exp(-q^T V_jj q / 2) exp(-i q . r_j)``::

        Ib = |sum_j a_j|^2,   Id = Re sum_jk a_j conj(a_k) (exp(q^T V_jk q) - 1).

    ``V``: (n_atoms, n_atoms) isotropic or (n_atoms, n_atoms, 3, 3).
    """
    dtype, device = float_context(dtype, device, q_grid, xyz, V)
    q, r = _inputs(q_grid, xyz, dtype, device)
    n_atoms = r.shape[0]
    v = as_real(V, dtype, device)
    if v.shape not in ((n_atoms, n_atoms), (n_atoms, n_atoms, 3, 3)):
        raise ValueError(f"V must have shape (n_atoms, n_atoms) or (n_atoms, n_atoms, 3, 3) with n_atoms = {n_atoms}, "
                         f"got {tuple(v.shape)}")
    ff = _form_factor_coefficients(elements, n_atoms, dtype, device)
    diag = torch.diagonal(v, dim1=0, dim2=1)  # (n_atoms,) or (3, 3, n_atoms)
    diag = diag.permute(2, 0, 1) if v.ndim == 4 else diag
    chunk = max(1, _PAIR_CHUNK // max(1, n_atoms * n_atoms))
    Id, Ib = [], []
    for start in range(0, q.shape[0], chunk):  # bounded memory only: each chunk is one tensor expression
        qc = q[start : start + chunk]
        amp = compute_form_factors(qc, *ff) * torch.exp(-0.5 * _quadratic_form(qc, diag, v.ndim == 4))
        phase = qc @ r.T
        re, im = amp * torch.cos(phase), -amp * torch.sin(phase)  # a_j = amp exp(-i q . r_j)
        Ib.append(re.sum(dim=1) ** 2 + im.sum(dim=1) ** 2)
        E = torch.expm1(_quadratic_form(qc, v, v.ndim == 4))  # (n_q, n_atoms, n_atoms)
        # Re(a_j conj(a_k)) = re_j re_k + im_j im_k
        Id.append(torch.einsum("qj,qjk,qk->q", re, E, re) + torch.einsum("qj,qjk,qk->q", im, E, im))
    return torch.cat(Id), torch.cat(Ib)
