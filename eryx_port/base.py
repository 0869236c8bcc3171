# SPDX-License-Identifier: GPL-2.0-or-later
"""Molecular and crystal transforms, and Guinier reconstructions: the port of ``eryx.base``.

Same names and positional signatures as eryx; results are torch tensors (float64 unless
``dtype=`` says otherwise), on ``device=``. Every structure factor comes from
:func:`eryx_port.scatter.structure_factors` (chunked over q, differentiable in coordinates and
``U``); the symmetry bookkeeping is :mod:`eryx_port.map_utils`'s.

* The **molecular transform** is the incoherent sum ``sum_asu |F_asu(q)|^2`` over the asymmetric
  units of the cell. All ASUs are evaluated in one pass: the per-atom terms are projected on an
  ASU-membership matrix, so no Python loop runs over ASUs, atoms or q-points.
* The **crystal transform** is ``|sum_asu F_asu(q)|^2`` at integral Miller indices (zero elsewhere).

Where eryx stops on a bug of its own, the port computes what eryx meant:

* a PDB file without REMARK 290 symmetry records gets gemmi's operators as 3x4 ``[R | t]``
  matrices in ``AtomicModel.sym_ops`` (kept so for parity of ``AtomicModel``); eryx then fails
  when it rotates Miller indices with them (a shape error). Here only their rotation part
  ``R`` rotates Miller indices, which is what the reciprocal-space symmetry needs.

``n_processes`` is accepted everywhere and ignored (nothing forks).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import torch

from . import map_utils
from . import pdb as _pdb
from . import scatter as _scatter
from .tensors import as_real, float_context, resolve_device

__all__ = [
    "natural_sort",
    "guinier_reconstruct",
    "compute_crystal_transform",
    "compute_molecular_transform",
    "incoherent_sum_real",
    "incoherent_sum_reciprocal",
]


# ----------------------------------------------------------------------------- helpers


def natural_sort(l):
    """The strings of ``l`` ordered as a person would: digit runs compare as numbers, text case-blind.

    ``['b10', 'b9', 'A2']`` -> ``['A2', 'b9', 'b10']``. Returns a new list.
    """
    items = list(l)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"natural_sort sorts strings, got {type(item).__name__} {item!r}")

    def key(text: str):
        # re.split with a capturing group alternates text, digits, text, ...: digits sit at odd places
        pieces = re.split(r"([0-9]+)", text)
        return [int(p) if i % 2 else p.lower() for i, p in enumerate(pieces)]

    return sorted(items, key=key)


def guinier_reconstruct(ensemble_dir, n_grid_points, res_mask, n_asu, weights=None, *, dtype=None, device=None):
    """Diffuse map of an ensemble from its saved structure factors, by Guinier's equation.

    ``ensemble_dir`` holds one ``.npy`` file of complex structure factors per (conformation, ASU),
    the values at the ``res_mask`` points only; in natural order, file ``i * n_asu + a`` is
    conformation ``i`` of ASU ``a``. Per ASU, ``<|F|^2> - |<F>|^2`` over the conformations
    (weighted by ``weights``, uniform by default) is summed over the ASUs. Returns the flat map
    (n_grid_points,), NaN outside ``res_mask``. Differentiable in ``weights``.
    """
    folder = Path(ensemble_dir)
    if not folder.is_dir():
        raise ValueError(f"ensemble_dir {str(folder)!r} is not a folder")
    files = natural_sort(str(p) for p in folder.glob("*npy"))
    n_asu = int(n_asu)
    if n_asu < 1:
        raise ValueError(f"n_asu must be a positive integer, got {n_asu}")
    if not files or len(files) % n_asu:
        raise ValueError(f"{folder} holds {len(files)} .npy files: a multiple of n_asu = {n_asu} is needed "
                         "(one file per conformation and ASU)")
    n_conf = len(files) // n_asu
    dtype, device = float_context(dtype, device, weights)
    keep = torch.as_tensor(np.asarray(res_mask.detach().cpu() if isinstance(res_mask, torch.Tensor) else res_mask))
    keep = keep.reshape(-1).to(device=device, dtype=torch.bool)
    if keep.numel() != int(n_grid_points):
        raise ValueError(f"res_mask must have n_grid_points = {int(n_grid_points)} elements, got {keep.numel()}")
    arrays = [np.load(f, allow_pickle=False).reshape(-1) for f in files]  # file reading: one load per file
    n_kept = int(keep.sum())
    bad = [f for f, a in zip(files, arrays) if a.size != n_kept]
    if bad:
        raise ValueError(f"{bad[0]} holds {arrays[files.index(bad[0])].size} values, res_mask keeps {n_kept}")
    ctype = torch.complex128 if dtype == torch.float64 else torch.complex64
    F = torch.as_tensor(np.stack(arrays), device=device).to(ctype).reshape(n_conf, n_asu, n_kept)
    if weights is None:
        w = torch.ones(n_conf, dtype=dtype, device=device) / (len(files) / n_asu)
    else:
        w = as_real(weights, dtype, device).reshape(-1)
        if w.numel() != n_conf:
            raise ValueError(f"weights must hold one value per conformation ({n_conf} = {len(files)} files / "
                             f"{n_asu} ASUs), got {w.numel()}")
    mean_F = torch.einsum("c,cap->ap", w.to(ctype), F)
    mean_I = torch.einsum("c,cap->ap", w, F.real**2 + F.imag**2)
    diffuse = (mean_I - (mean_F.real**2 + mean_F.imag**2)).sum(dim=0)
    out = torch.full((keep.numel(),), float("nan"), dtype=dtype, device=device)
    return out.masked_scatter(keep, diffuse)


def _rotations(sym_ops: Any) -> dict[int, torch.Tensor]:
    """The 3x3 rotation part of each operator (a 3x4 ``[R | t]`` operator keeps its ``R``)."""
    values = sym_ops.items() if isinstance(sym_ops, Mapping) else enumerate(sym_ops)
    out = {}
    for key, op in values:
        m = as_real(op)
        if m.ndim != 2 or m.shape[0] != 3 or m.shape[1] not in (3, 4):
            raise ValueError(f"symmetry operator {key} must be a 3x3 rotation or a 3x4 [R | t], got shape {tuple(m.shape)}")
        out[int(key)] = m[:, :3]
    if not out:
        raise ValueError("the model has no symmetry operators (at least the identity is needed)")
    return out


def _q_of(hkl: torch.Tensor, A_inv: torch.Tensor) -> torch.Tensor:
    return 2 * math.pi * (hkl @ A_inv)


def _stacked_atoms(model, dtype, device):
    """xyz (n_asu, n_atoms, 3) and form-factor coefficients (n_asu, n_atoms, ...) of ``model`` as tensors."""
    xyz = as_real(model.xyz, dtype, device)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"model.xyz must have shape (n_asu, n_atoms, 3), got {tuple(xyz.shape)}")
    n_asu, n_atoms = xyz.shape[:2]

    def coef(name, tail):
        c = as_real(getattr(model, name), dtype, device)
        c = c.reshape(-1, n_atoms, *tail)
        if c.shape[0] == 1 and n_asu > 1:
            c = c.expand(n_asu, *c.shape[1:])
        if c.shape[0] != n_asu:
            raise ValueError(f"model.{name} holds {c.shape[0]} sets of atoms, model.xyz {n_asu}")
        return c

    n_g = as_real(model.ff_a).shape[-1]
    return xyz, coef("ff_a", (n_g,)), coef("ff_b", (n_g,)), coef("ff_c", ())


def _per_asu_U(U, n_asu: int, n_atoms: int, dtype, device):
    """``U`` as eryx applies it to every ASU: None, a scalar, or (n_atoms,) repeated for each ASU."""
    if U is None:
        return None
    u = as_real(U, dtype, device)
    if u.ndim == 0:
        return u
    if u.ndim != 1 or u.shape[0] != n_atoms:
        raise ValueError(f"U must be a scalar or have shape (n_atoms,) = ({n_atoms},) (one value per atom of an ASU), "
                         f"got {tuple(u.shape)}")
    return u.repeat(n_asu)


def _incoherent_intensity(q, xyz, ff_a, ff_b, ff_c, U, batch_size):
    """``sum_asu |F_asu(q)|^2`` (n_q,) for xyz (n_asu, n_atoms, 3): one structure-factor pass for all ASUs.

    Each atom's term is projected on its ASU's column of a 0/1 membership matrix, so the result is
    F per ASU, (n_q, n_asu), without a per-atom output.
    """
    n_asu, n_atoms = xyz.shape[:2]
    if q.shape[0] == 0:
        return q.new_zeros(0)
    if n_asu == 1:  # one set of atoms (a crystal transform): the plain sum over atoms, as eryx takes it
        F = _scatter.structure_factors(q, xyz[0], ff_a[0], ff_b[0], ff_c[0], U=U, batch_size=batch_size)
        return F.real**2 + F.imag**2
    member = torch.repeat_interleave(torch.eye(n_asu, dtype=q.dtype, device=q.device), n_atoms, dim=0)
    F = _scatter.structure_factors(
        q, xyz.reshape(-1, 3), ff_a.reshape(n_asu * n_atoms, -1), ff_b.reshape(n_asu * n_atoms, -1),
        ff_c.reshape(-1), U=U, batch_size=batch_size, project_on_components=member, sum_over_atoms=False,
    )
    return (F.real**2 + F.imag**2).sum(dim=1)


def _scatter_into(n: int, where: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A length-``n`` vector holding ``values`` at the True places of ``where``, zero elsewhere (keeps gradients)."""
    out = values.new_zeros(n)
    return out.masked_scatter(where, values) if values.numel() else out


# Below this many (q-point x atom) pairs one direct structure-factor pass is cheaper than the grid
# engine's setup; above it, points whose per-axis values span a box not much larger than themselves go
# through the engine (2-3x faster on a CPU for 1e5 points of a 1000-atom triclinic cell, exact to
# round-off as well).
_ENGINE_MIN_PAIRS = 1 << 22
_ENGINE_MAX_BOX = 4  # box points per needed point
_ENGINE_SLAB_BYTES = 256 << 20


def _engine_intensity(points, A_inv, xyz, ff_a, ff_b, ff_c, U):
    """``sum_asu |F_asu|^2`` at Miller indices ``points`` (m, 3), by the grid engine on the box of the
    values they take along h, k and l (the ASU box of a grid, the integral sub-grid of a crystal
    transform, the rotated indices of a point group).

    Returns None where the engine does not pay or apply (a box much larger than the points, ASUs
    with different atoms).
    """
    from .diffuse import _to_hkl
    from .grid_factors import grid_sums, plan_layout

    if not all(torch.equal(c[0], c[i]) for c in (ff_a, ff_b, ff_c) for i in range(1, c.shape[0])):
        return None
    used = [torch.unique(points[:, i].detach(), sorted=True, return_inverse=True) for i in range(3)]
    axes = tuple(v for v, _ in used)
    if math.prod(a.numel() for a in axes) > _ENGINE_MAX_BOX * points.shape[0]:
        return None
    n_asu, n_atoms = xyz.shape[:2]
    if U is None:
        u = xyz.new_zeros(n_atoms)
    else:
        u = U.expand(n_asu * n_atoms) if U.ndim == 0 else U
        u = u.reshape(n_asu, n_atoms)
    layout = plan_layout(axes, 4 * math.pi**2 * (A_inv @ A_inv.T))
    a1, a2, f = layout.perm
    n_f = axes[f].numel()
    per_column = max(1, axes[a1].numel() * axes[a2].numel() * n_asu * 16 * 4)
    width = max(1, min(n_f, _ENGINE_SLAB_BYTES // per_column))
    ones = xyz.new_ones(n_asu, n_atoms, 1)
    slabs = []
    for start in range(0, n_f, width):  # bounded memory: a slab of columns at a time
        S = grid_sums(axes, A_inv, xyz, ones, (ff_a[0], ff_b[0], ff_c[0]), u, (start, min(n_f, start + width)), layout)
        slabs.append((S.real**2 + S.imag**2).sum(dim=1)[0])  # (n1, n2, width) in the engine's axis order
    box = torch.cat(slabs, dim=2) if len(slabs) > 1 else slabs[0]
    box = _to_hkl(box[None, None], layout.perm)[0, 0]  # (n_h, n_k, n_l)
    return box[used[0][1], used[1][1], used[2][1]]


def _intensity_at(points, A_inv, xyz, ff_a, ff_b, ff_c, U, batch_size):
    """``sum_asu |F_asu|^2`` (m,) at Miller indices ``points`` (m, 3): the grid engine for many points
    on a compact box, otherwise one direct structure-factor pass."""
    if points.shape[0] and points.shape[0] * xyz.shape[0] * xyz.shape[1] >= _ENGINE_MIN_PAIRS:
        values = _engine_intensity(points, A_inv, xyz, ff_a, ff_b, ff_c, U)
        if values is not None:
            return values
    return _incoherent_intensity(_q_of(points, A_inv), xyz, ff_a, ff_b, ff_c, U, batch_size)


# Working memory of one slab of the separable sums below (a few MiB: slabs stay in cache and reuse
# the allocator's blocks instead of touching fresh pages).
_BOX_SLAB_BYTES = 4 << 20


def _separable_ok(xyz, ff_a, ff_b, ff_c, U) -> bool:
    """The box sums below apply: ``U`` absent or one value for all atoms, every ASU with the same atoms."""
    if U is not None and U.ndim != 0:
        return False
    return all(torch.equal(c[0], c[i]) for c in (ff_a, ff_b, ff_c) for i in range(1, c.shape[0]))


def _element_groups(ff_a, ff_b, ff_c):
    """Atoms of one ASU grouped by identical form-factor coefficients: the atom order that puts each
    group together, the group sizes and one coefficient row ``a..., b..., c`` per group."""
    rows = torch.cat([ff_a[0], ff_b[0], ff_c[0][:, None]], dim=1)
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(map(tuple, rows.detach().tolist())):
        groups.setdefault(key, []).append(i)
    order = [i for members in groups.values() for i in members]
    sizes = [len(members) for members in groups.values()]
    return order, sizes, rows[[members[0] for members in groups.values()]]


def _box_intensity(axes, A_inv, xyz, ff_a, ff_b, ff_c, U):
    """``sum_asu |F_asu|^2`` on the product grid of the Miller indices ``axes`` (h, k, l values):
    (n_h, n_k, n_l). ``U`` is None or a scalar; the ASUs share their form factors.

    ``exp(i q.r) = exp(2 pi i h x) exp(2 pi i k y) exp(2 pi i l z)`` (x, y, z fractional), so per
    element (atoms with one set of form-factor coefficients) the sum over its atoms is a batched
    matrix product of the (h, k) phase table with the l table; no transcendental function is taken
    per (atom, point) pair. Real arithmetic throughout; slabs of h bound the memory.
    """
    n_asu, n_atoms = xyz.shape[:2]
    order, sizes, coefs = _element_groups(ff_a, ff_b, ff_c)
    n_g = ff_a.shape[-1]
    frac = xyz[:, order] @ A_inv.T  # (n_asu, n_atoms, 3) fractional coordinates, atoms grouped
    angles = [(2 * math.pi) * a[:, None, None] * frac[None, :, :, d] for d, a in enumerate(axes)]
    cos = [torch.cos(t) for t in angles]  # (n_d, n_asu, n_atoms)
    sin = [torch.sin(t) for t in angles]
    n0, n1, n2 = (int(a.numel()) for a in axes)
    Z = torch.cat([cos[2].permute(1, 2, 0), sin[2].permute(1, 2, 0)], dim=2)  # (n_asu, n_atoms, 2 n_l)
    G = A_inv @ A_inv.T
    row_bytes = 8 * n1 * (n_asu * (4 * n_atoms + 8 * n2) + 4 * n2)
    width = max(1, min(n0, _BOX_SLAB_BYTES // max(1, row_bytes)))
    k, l = axes[1].reshape(1, -1, 1), axes[2].reshape(1, 1, -1)
    out = []
    for start in range(0, n0, width):
        stop = min(n0, start + width)
        h = axes[0][start:stop].reshape(-1, 1, 1)
        # |q|^2 = 4 pi^2 hkl G hkl^T
        qsq = (h * h * G[0, 0] + k * k * G[1, 1] + l * l * G[2, 2]
               + 2 * (h * k * G[0, 1] + h * l * G[0, 2] + k * l * G[1, 2])) * (4 * math.pi**2)
        s2 = (qsq / (16 * math.pi**2)).reshape(-1, n2)
        # the (h, k) phase table: (n_asu, rows, n_atoms), real and imaginary parts
        xc, xs = cos[0][start:stop, None], sin[0][start:stop, None]
        yc, ys = cos[1][None], sin[1][None]
        re = (xc * yc - xs * ys).permute(2, 0, 1, 3).reshape(n_asu, -1, n_atoms)
        im = (xc * ys + xs * yc).permute(2, 0, 1, 3).reshape(n_asu, -1, n_atoms)
        F_re = F_im = None
        first = 0
        for e, size in enumerate(sizes):
            c = coefs[e]
            f = c[0] * torch.exp(-c[n_g] * s2)
            for i in range(1, n_g):
                f = f + c[i] * torch.exp(-c[n_g + i] * s2)
            f = f + c[2 * n_g]
            z = Z[:, first:first + size]
            P = torch.matmul(re[:, :, first:first + size], z)  # [re cos_l, re sin_l]
            Q = torch.matmul(im[:, :, first:first + size], z)  # [im cos_l, im sin_l]
            S_re = (P[..., :n2] - Q[..., n2:]) * f
            S_im = (P[..., n2:] + Q[..., :n2]) * f
            F_re = S_re if F_re is None else F_re + S_re
            F_im = S_im if F_im is None else F_im + S_im
            first += size
        if U is not None:
            debye_waller = torch.exp(-0.5 * qsq.reshape(-1, n2) * U)
            F_re, F_im = F_re * debye_waller, F_im * debye_waller
        out.append((F_re * F_re + F_im * F_im).sum(dim=0).reshape(stop - start, n1, n2))
    return torch.cat(out) if len(out) > 1 else out[0]


def _grid_values(axes, keep, A_inv, xyz, ff_a, ff_b, ff_c, U, batch_size):
    """``sum_asu |F_asu|^2`` at the True points of ``keep`` (the grid of ``axes``), in C order."""
    n_keep = int(keep.sum())
    if n_keep == 0:
        return A_inv.new_zeros(0)
    used = [keep.sum(dim=(1, 2)) > 0, keep.sum(dim=(0, 2)) > 0, keep.sum(dim=(0, 1)) > 0]
    sub = [a[u] for a, u in zip(axes, used)]
    if _separable_ok(xyz, ff_a, ff_b, ff_c, U) and math.prod(a.numel() for a in sub) <= _ENGINE_MAX_BOX * n_keep:
        inside = keep[used[0]][:, used[1]][:, :, used[2]]
        return _box_intensity(sub, A_inv, xyz, ff_a, ff_b, ff_c, U)[inside]
    idx = keep.nonzero()
    points = torch.stack([axes[d][idx[:, d]] for d in range(3)], dim=1)
    return _intensity_at(points, A_inv, xyz, ff_a, ff_b, ff_c, U, batch_size)


def _hkl_tensor(hkl_grid, dtype, device) -> torch.Tensor:
    hkl = as_real(hkl_grid, dtype, device)
    if hkl.ndim != 2 or hkl.shape[1] != 3 or hkl.shape[0] == 0:
        raise ValueError(f"hkl_grid must have shape (n_points, 3) with n_points > 0, got {tuple(hkl.shape)}")
    return hkl


def _sampling3(sampling) -> tuple:
    values = tuple(sampling)
    if len(values) != 3 or any(isinstance(v, bool) or not float(v) > 0 for v in values):
        raise ValueError(f"sampling must hold 3 positive rates (h, k, l), got {sampling!r}")
    return values


def _model_context(model, dtype, device):
    for attr in ("xyz", "ff_a", "ff_b", "ff_c", "A_inv", "sym_ops"):
        if not hasattr(model, attr):
            raise ValueError(f"model must be an AtomicModel (expanded to P1); it lacks {attr!r}")
    return float_context(dtype, device, model.xyz)


# ----------------------------------------------------------------------------- incoherent sums


def incoherent_sum_real(model, hkl_grid, sampling, U=None, mask=None, batch_size=10000, n_processes=8, *,
                        dtype=None, device=None):
    """Incoherent sum over the ASUs of ``model``, computed on the reciprocal ASU and spread by symmetry.

    The scattering ``sum_asu |F_asu|^2`` is evaluated only at the grid points that lie in the
    reciprocal asymmetric unit (and in ``mask``, if given); the point group with Friedel's law then
    copies it onto every equivalent point of the smallest box holding them all, each point divided
    by ``max multiplicity / its multiplicity``, and the box is cropped back with
    :func:`eryx_port.map_utils.resize_map` (eryx's rule). Returns the 3d map, which may extend
    beyond ``hkl_grid`` by Friedel's law. ``mask`` is not modified (eryx multiplies it in place).
    """
    del n_processes
    dtype, device = _model_context(model, dtype, device)
    hkl = _hkl_tensor(hkl_grid, dtype, device)
    rates = _sampling3(sampling)
    n = hkl.shape[0]
    keep = torch.ones(n, dtype=torch.bool, device=device)
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask, device=device).reshape(-1)
        if m.numel() != n:
            raise ValueError(f"mask must have {n} elements (one per grid point), got {m.numel()}")
        keep = m.to(torch.bool)
    axes = _product_axes(hkl)
    if axes is not None:
        I = _incoherent_sum_real_grid(model, axes, rates, U, keep.reshape(tuple(a.numel() for a in axes)),
                                      batch_size, dtype, device)
        if I is not None:
            return I
    keep = keep & map_utils.get_asu_mask(model.space_group, hkl, device=device)

    xyz, ff_a, ff_b, ff_c = _stacked_atoms(model, dtype, device)
    u = _per_asu_U(U, xyz.shape[0], xyz.shape[1], dtype, device)
    A_inv = as_real(model.A_inv, dtype, device)
    I_asu = _scatter_into(n, keep, _intensity_at(hkl[keep], A_inv, xyz, ff_a, ff_b, ff_c, u, batch_size))

    rotations = _rotations(model.sym_ops)
    ops = map_utils.expand_sym_ops(rotations)
    ravel, box = map_utils.get_ravel_indices(map_utils.get_symmetry_equivalents(hkl, ops), rates)
    ravel = ravel.to(device)
    box_sampling = map_utils.get_centered_sampling(box, rates)
    _, mult = map_utils.compute_multiplicity(SimpleNamespace(sym_ops=rotations, A_inv=A_inv), *box_sampling,
                                             device=device)
    # every operator sends each grid point to a distinct box point; equivalents of one point add up
    I = I_asu.new_zeros(math.prod(box)).index_add(0, ravel.reshape(-1), I_asu.repeat(ravel.shape[0]))
    mult = mult.to(device=device, dtype=dtype)
    I = I.reshape(box) / (mult.max() / mult)
    extents = [(int(hkl[:, i].min()), int(hkl[:, i].max()), rates[i]) for i in range(3)]
    return map_utils.resize_map(I, extents, box_sampling)


def _product_axes(hkl: torch.Tensor):
    """The h, k and l values of ``hkl`` (n, 3) when it is their product grid in C order (h slowest, as
    :func:`eryx_port.map_utils.generate_grid` lays it out); None otherwise."""
    n = hkl.shape[0]
    first = hkl[0]
    h_changes = (hkl[:, 0] != first[0]).nonzero()
    n_kl = int(h_changes[0]) if h_changes.numel() else n
    k_changes = (hkl[:n_kl, 1] != first[1]).nonzero()
    n_l = int(k_changes[0]) if k_changes.numel() else n_kl
    if n_l == 0 or n_kl % n_l or n % n_kl:
        return None
    axes = (hkl[::n_kl, 0], hkl[:n_kl:n_l, 1], hkl[:n_l, 2])
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    return axes if torch.equal(grid, hkl) else None


def _incoherent_sum_real_grid(model, axes, rates, U, keep, batch_size, dtype, device):
    """:func:`incoherent_sum_real` on the product grid of ``axes`` (keep: its (n_h, n_k, n_l) mask),
    with the symmetry bookkeeping in integers; None where the grid or the operators are not integral
    over the rates (the caller then takes the general route).

    Every operator maps a grid point to the box point ``n @ M``, whose flat index is affine in the
    three axis indices; the multiplicity of a box point is its orbit size. Only points that carry
    a value (in the ASU and in ``keep``) are spread.
    """
    hkl_n = [map_utils.integral_axis(a, r) for a, r in zip(axes, rates)]
    rotations = torch.stack(list(_rotations(model.sym_ops).values()))
    ops = map_utils.integral_operators(torch.cat([rotations, -rotations]), rates)  # expand_sym_ops' order
    if ops is None or any(a is None for a in hkl_n):
        return None
    lower, upper = map_utils.image_bounds(hkl_n, ops)
    box = tuple(u - l + 1 for l, u in zip(lower, upper))
    box_sampling = map_utils.get_centered_sampling(box, rates)
    box_n = [map_utils.integral_axis(a, r) for a, r in
             zip(map_utils.grid_axes(*box_sampling, dtype=torch.float64), rates)]
    if any(a is None for a in box_n) or tuple(a.numel() for a in box_n) != box:
        return None
    mult = map_utils.orbit_sizes(box_n, ops)
    if mult is None:
        return None

    keep = keep & map_utils.asu_mask_on_grid(model.space_group, axes).to(keep.device)
    xyz, ff_a, ff_b, ff_c = _stacked_atoms(model, dtype, device)
    u = _per_asu_U(U, xyz.shape[0], xyz.shape[1], dtype, device)
    A_inv = as_real(model.A_inv, dtype, device)
    values = _grid_values(axes, keep, A_inv, xyz, ff_a, ff_b, ff_c, u, batch_size)

    strides = (box[1] * box[2], box[2], 1)
    # flat-index step per unit of n along h, k and l, for each operator: (n_ops, 3)
    weights = torch.tensor([[sum(m[d][e] * strides[e] for e in range(3)) for d in range(3)] for m in ops],
                           dtype=torch.int64, device=device)
    offset = sum(l * st for l, st in zip(lower, strides))
    idx = keep.nonzero()  # (n_keep, 3), the order of values
    ravel = None
    for d in range(3):
        term = hkl_n[d].to(device)[idx[:, d]][None, :] * weights[:, d, None]
        ravel = term if ravel is None else ravel.add_(term)
    ravel -= offset
    I = values.new_zeros(math.prod(box)).index_add_(0, ravel.reshape(-1), values.repeat(len(ops)))
    mult = mult.to(device=device, dtype=dtype)
    I = I.reshape(box) / (mult.max() / mult)
    extents = [(int(a.min()), int(a.max()), r) for a, r in zip(axes, rates)]
    return map_utils.resize_map(I, extents, box_sampling)


# rotated Miller indices count as the same index when they agree to 1e-6 (exact up to rounding)
_INDEX_MATCH = 1e6


def incoherent_sum_reciprocal(model, hkl_grid, sampling, U=None, batch_size=10000, n_processes=8, *,
                              dtype=None, device=None):
    """Incoherent sum over ASUs as ``sum_R |F_0(hkl R)|^2``: the first ASU at every rotated index.

    Rotating the Miller index by each operator R of the point group replaces rotating the
    molecule; each distinct rotated index is evaluated once. Indices are matched exactly (to 1e-6
    of a Miller unit), not after rounding to the grid as eryx does: where the grid's oversampling
    does not suit the symmetry (P 31 with different h and k oversampling, say), eryx's rounding
    pairs distinct indices (on 7n2h, (-3,3,2),(-3,3,1),(-2,3,1): 52% off the sum), while this is the sum itself (on grids that suit
    the symmetry both agree). Keeps the extents of ``hkl_grid``: returns (n_points,).
    """
    del n_processes
    dtype, device = _model_context(model, dtype, device)
    hkl = _hkl_tensor(hkl_grid, dtype, device)
    _sampling3(sampling)  # checked as eryx's argument; exact matching needs no grid
    hkl_sym = map_utils.get_symmetry_equivalents(hkl, _rotations(model.sym_ops))  # (n_ops, n, 3)
    keys = torch.round(hkl_sym.detach().reshape(-1, 3) * _INDEX_MATCH).to(torch.int64)
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    # the first occurrence of each index (operator 0 first, where it has it) stands for all of them
    n = inverse.numel()
    first = torch.full((unique.shape[0],), n, dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=device), reduce="amin")
    xyz, ff_a, ff_b, ff_c = _stacked_atoms(model, dtype, device)
    u = None if U is None else _per_asu_U(U, 1, xyz.shape[1], dtype, device)
    A_inv = as_real(model.A_inv, dtype, device)
    I_unique = _intensity_at(hkl_sym.reshape(-1, 3)[first], A_inv, xyz[:1], ff_a[:1], ff_b[:1], ff_c[:1], u, batch_size)
    return I_unique[inverse].reshape(hkl_sym.shape[:2]).sum(dim=0)


# ----------------------------------------------------------------------------- transforms


def _grid_setup(model, hsampling, ksampling, lsampling):
    """Axis values, map shape and q-vectors (n_points, 3) of a transform's grid (generate_grid's layout):
    ``2 pi (h a* + k b* + l c*)`` from the broadcast axes, without the flat hkl grid."""
    A = model.A_inv
    axes = map_utils.grid_axes(hsampling, ksampling, lsampling, dtype=A.dtype, device=A.device)
    map_shape = tuple(int(a.numel()) for a in axes)
    q = axes[0][:, None, None, None] * A[0] + axes[1][None, :, None, None] * A[1]
    q = q + axes[2][None, None, :, None] * A[2]
    q = q * (2 * math.pi) if q.requires_grad else q.mul_(2 * math.pi)
    return axes, map_shape, q.reshape(-1, 3)


def _hkl_of(axes) -> torch.Tensor:
    """The flat (n_points, 3) grid of Miller indices of ``axes``, h slowest."""
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def compute_molecular_transform(
    pdb_path, hsampling, ksampling, lsampling, U=None, expand_p1=True, expand_friedel=True, res_limit=0,
    batch_size=10000, n_processes=8, *, dtype=None, device=None,
):
    """``(q_grid, I)``: the molecular transform, the incoherent sum of the ASUs' scattering.

    ``expand_friedel=True`` (:func:`incoherent_sum_real`) returns a 3d map that also covers the
    region related to the grid by Friedel's law; ``False`` keeps the grid's extents
    (:func:`incoherent_sum_reciprocal`, or a direct sum over the ASUs for space group P 1). Points
    beyond ``res_limit`` are 0. ``U`` (n_atoms,) or a scalar applies to every ASU. ``q_grid`` is
    (n_points, 3) in 1/Angstrom.
    """
    del n_processes
    device = resolve_device(device) if device is not None else None
    model = _pdb.AtomicModel(pdb_path, expand_p1=expand_p1, dtype=dtype, device=device)
    return _molecular_transform_of(model, hsampling, ksampling, lsampling, U, expand_friedel, res_limit, batch_size)


def _molecular_transform_of(model, hsampling, ksampling, lsampling, U=None, expand_friedel=True, res_limit=0,
                           batch_size=10000, grid=None):
    """:func:`compute_molecular_transform` of an :class:`~eryx_port.pdb.AtomicModel` already read
    (``grid``: :func:`_grid_setup`'s result for these samplings, when the caller has it)."""
    axes, map_shape, q_grid = grid or _grid_setup(model, hsampling, ksampling, lsampling)
    mask = map_utils.resolution_on_grid(model.cell, axes) > res_limit
    rates = tuple(s[2] for s in (hsampling, ksampling, lsampling))

    if model.space_group == "P 1" and not expand_friedel:
        xyz, ff_a, ff_b, ff_c = _stacked_atoms(model, model.dtype, model.device)
        u = _per_asu_U(U, xyz.shape[0], xyz.shape[1], model.dtype, model.device)
        values = _grid_values(axes, mask, model.A_inv, xyz, ff_a, ff_b, ff_c, u, batch_size)
        return q_grid, _scatter_into(mask.numel(), mask.reshape(-1), values).reshape(map_shape)
    if expand_friedel:
        dtype, device = _model_context(model, None, None)
        I = _incoherent_sum_real_grid(model, axes, _sampling3(rates), U, mask, batch_size, dtype, device)
        if I is None:
            I = incoherent_sum_real(model, _hkl_of(axes), rates, U, mask.reshape(-1), batch_size)
        return q_grid, I
    I = incoherent_sum_reciprocal(model, _hkl_of(axes), rates, U, batch_size)
    return q_grid, torch.where(mask.reshape(-1), I, torch.zeros_like(I)).reshape(map_shape)


def compute_crystal_transform(
    pdb_path, hsampling, ksampling, lsampling, U=None, expand_p1=True, res_limit=0, batch_size=5000,
    n_processes=8, *, dtype=None, device=None,
):
    """``(q_grid, I)``: the crystal transform ``|sum_asu F_asu|^2`` at integral Miller indices.

    Every model (frame) of the file is read; with ``expand_p1=False`` the file's models are taken
    as the ASUs. Grid points at fractional indices or beyond ``res_limit`` are 0. ``U`` is a
    scalar or one value per atom of the whole cell (the ASUs' atoms one after another).
    """
    del n_processes
    device = resolve_device(device) if device is not None else None
    model = _pdb.AtomicModel(pdb_path, expand_p1=expand_p1, frame=-1, dtype=dtype, device=device)
    return _crystal_transform_of(model, hsampling, ksampling, lsampling, U, res_limit, batch_size)


def _peak_axes(axes, A_inv):
    """Per axis, which values are integral, when that decides eryx's Bragg-peak test (the distance in q
    to the nearest integral index, rounded to 5 decimals, is 0) for every point of the product grid;
    None where a fractional index could pass that test (huge cells with fine sampling)."""
    offsets = [(a.detach() - torch.round(a.detach())).abs() for a in axes]
    on = [o <= 1e-9 for o in offsets]
    off = [o[~p] for o, p in zip(offsets, on)]
    smallest = min((float(o.min()) for o in off if o.numel()), default=math.inf)
    if smallest < math.inf:
        s_min = float(torch.linalg.svdvals(A_inv.detach().double().cpu())[-1])
        if 2 * math.pi * s_min * smallest <= 1e-5:
            return None
    return on


def _crystal_transform_of(model, hsampling, ksampling, lsampling, U=None, res_limit=0, batch_size=5000, grid=None):
    """:func:`compute_crystal_transform` of an :class:`~eryx_port.pdb.AtomicModel` already read
    (``frame=-1``); flattens it, as eryx does (``grid`` as for :func:`_molecular_transform_of`)."""
    model.flatten_model()
    axes, map_shape, q_grid = grid or _grid_setup(model, hsampling, ksampling, lsampling)
    n_atoms = model.xyz.shape[0]
    u = None
    if U is not None:
        u = as_real(U, model.dtype, model.device)
        if u.ndim > 1 or (u.ndim == 1 and u.shape[0] != n_atoms):
            raise ValueError(f"U must be a scalar or have shape (n_atoms,) = ({n_atoms},) for all atoms of the cell, "
                             f"got {tuple(u.shape)}")
    peaks = _peak_axes(axes, model.A_inv) if u is None or u.ndim == 0 else None
    if peaks is not None:
        # only integral indices: their sub-grid, as one set of atoms (a coherent sum)
        idx = [p.nonzero().reshape(-1) for p in peaks]
        sub = [a[i] for a, i in zip(axes, idx)]
        I = q_grid.new_zeros(map_shape)
        if all(i.numel() for i in idx):
            inside = map_utils.resolution_on_grid(model.cell, sub) > res_limit
            values = _box_intensity(sub, model.A_inv, model.xyz[None], model.ff_a[None], model.ff_b[None],
                                    model.ff_c[None], u)
            I.index_put_((idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]),
                         torch.where(inside, values, torch.zeros_like(values)))
        return q_grid, I
    hkl = _hkl_of(axes)
    mask, _ = map_utils.get_resolution_mask(model.cell, hkl, res_limit)
    dq = torch.round(map_utils.get_dq_map(model.A_inv, hkl), decimals=5)
    on_peak = mask & (dq == 0)
    # |F|^2 of the whole cell: the flattened atoms as one set (a coherent sum)
    values = _intensity_at(hkl[on_peak], model.A_inv, model.xyz[None], model.ff_a[None], model.ff_b[None],
                           model.ff_c[None], u, batch_size)
    I = _scatter_into(hkl.shape[0], on_peak, values)
    return q_grid, I.view(map_shape)
