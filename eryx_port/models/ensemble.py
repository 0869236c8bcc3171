# SPDX-License-Identifier: GPL-2.0-or-later
"""Ensemble disorder: each ASU takes one of several conformations (the models of a multi-model PDB).

:class:`Ensemble` has eryx's constructor, attributes and ``apply_disorder``. For weight set s,

    I_s(q) = sum_asu [ sum_c w_sc |A_c,asu(q)|^2 - |sum_c w_sc A_c,asu(q)|^2 ]

(Guinier's equation, the weights used as given, not normalised), NaN outside the resolution mask.
The structure factors of every (conformation, ASU) copy come from the port's grid engine
(:mod:`eryx_port.grid_factors`) in one pass over the hkl grid, slab by slab; all weight sets are
contracted at once. The map is differentiable in the weights (and in ``model.xyz``/``model.adp``).

:func:`member_intensity` (the "ensemble of structure factors" reduction) is shared with
:mod:`eryx_port.models.rotations`.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Iterator

import numpy as np
import torch

from ._checks import check_res_limit, check_samplings
from ..diffuse import default_max_memory
from ..grid_factors import grid_sums, plan_layout
from ..map_utils import generate_grid, get_resolution_mask, grid_axes
from ..pdb import AtomicModel
from ..tensors import as_real, resolve_device, resolve_dtype

__all__ = ["Ensemble", "member_factor_slabs", "member_intensity"]

# Bytes of the engine's temporaries per chunk of copies: chunks this small stay in cache and reuse
# the allocator's memory (64 MB chunks took 1.5x as long in a fresh process on 2ol9 rotations).
_ENGINE_CHUNK = 8 << 20


# ---------------------------------------------------------------- shared by the ensemble-type models


def setup_grid(obj, res_limit) -> None:
    """eryx's grid attributes on ``obj`` (which holds ``model`` and the samplings): ``map_shape``,
    ``q_grid`` (n_points, 3), ``q_mags``, ``mask``; plus the per-axis Miller indices ``_axes``."""
    hkl, obj.map_shape = generate_grid(obj.model.A_inv, obj.hsampling, obj.ksampling, obj.lsampling, return_hkl=True)
    obj.q_grid = 2 * math.pi * (hkl @ obj.model.A_inv)
    obj.q_mags = torch.linalg.vector_norm(obj.q_grid, dim=1)
    obj.mask, _ = get_resolution_mask(obj.model.cell, hkl, res_limit)
    obj._axes = grid_axes(obj.hsampling, obj.ksampling, obj.lsampling, dtype=obj.dtype, device=obj.device)


def _distinct_form_factors(ff_a: torch.Tensor, ff_b: torch.Tensor, ff_c: torch.Tensor) -> list[torch.Tensor]:
    """Groups of copies (indices into the leading axis) that share all form-factor coefficients."""
    flat = torch.cat([ff_a.flatten(1), ff_b.flatten(1), ff_c.flatten(1)], dim=1).detach()
    _, inverse = torch.unique(flat.cpu(), dim=0, return_inverse=True)
    return [torch.nonzero(inverse == g).reshape(-1) for g in range(int(inverse.max()) + 1)]


def _member_slabs(axes, A_inv, xyz, U, ff_a, ff_b, ff_c, *, max_memory=None):
    """The engine's sums for every copy, slab by slab along the layout's column axis, rows in block order.

    Yields ``(layout, start, stop, S)`` with S (M, n_rows_padded, stop - start) complex: row ``layout.slot[r]``
    of S is grid row r = i1 * n2 + i2 of the layout's row axes (a1, a2).
    """
    dtype = xyz.dtype
    A_inv = A_inv.to(dtype)
    layout = plan_layout(axes, 4 * math.pi**2 * (A_inv @ A_inv.T))
    a1, a2, f = layout.perm
    sizes = [a.numel() for a in axes]
    M = xyz.shape[0]
    budget = int(max_memory) if max_memory is not None else default_max_memory(xyz.device)
    per_column = M * sizes[a1] * sizes[a2] * 16 * 4  # the sums, their hkl copy and the caller's reductions
    width = max(1, min(sizes[f], (budget // 2) // max(1, per_column)))
    groups = _distinct_form_factors(ff_a, ff_b, ff_c)
    ones = torch.ones((M, xyz.shape[1], 1), dtype=dtype, device=xyz.device)
    for start in range(0, sizes[f], width):
        stop = min(sizes[f], start + width)
        parts = []
        for g in groups:
            g = g.to(xyz.device)
            k = int(g[0])
            ff = (ff_a[k], ff_b[k], ff_c[k])
            sub = xyz if len(groups) == 1 else xyz[g]
            Ug = U if len(groups) == 1 else U[g]
            S = grid_sums(axes, A_inv, sub, ones[: sub.shape[0]], ff, Ug, (start, stop), layout,
                          budget=min(_ENGINE_CHUNK, max(1 << 20, budget // 4)), natural_order=False)[0]
            parts.append(S)
        if len(groups) == 1:
            S = parts[0]
        else:
            S = torch.empty((M, *parts[0].shape[1:]), dtype=parts[0].dtype, device=parts[0].device)
            for g, part in zip(groups, parts):
                S[g.to(S.device)] = part
        yield layout, start, stop, S


def _to_hkl(T: torch.Tensor, layout, sizes) -> torch.Tensor:
    """(..., n_rows_padded, w) in the layout's block order -> (..., n_h, n_k, n_l) restricted along its column axis."""
    a1, a2, f = layout.perm
    lead = T.shape[:-2]
    T = T[..., layout.slot, :].reshape(*lead, sizes[a1], sizes[a2], T.shape[-1])
    order = [0, 0, 0]
    for i, ax in enumerate(layout.perm):
        order[ax] = i
    n = len(lead)
    return T.permute(*range(n), *(n + o for o in order))


def member_factor_slabs(axes, A_inv, xyz, U, ff_a, ff_b, ff_c, *, max_memory=None) -> Iterator[tuple[int, int, int, torch.Tensor]]:
    """Structure factors of many copies of a molecule on the hkl grid ``axes``, one slab at a time.

    ``xyz`` (M, n_atoms, 3) Cartesian; ``U`` (M, n_atoms) isotropic displacements (Angstrom^2);
    ``ff_a``/``ff_b`` (M, n_atoms, 4), ``ff_c`` (M, n_atoms). Yields ``(axis, start, stop, A)`` with
    A (M, n_h, n_k, n_l) complex restricted to ``start:stop`` along grid axis ``axis``; the slabs tile
    the grid. Memory per slab stays near ``max_memory`` bytes (default: a quarter of what is free).
    """
    sizes = [a.numel() for a in axes]
    for layout, start, stop, S in _member_slabs(axes, A_inv, xyz, U, ff_a, ff_b, ff_c, max_memory=max_memory):
        yield layout.perm[2], start, stop, _to_hkl(S, layout, sizes)


def member_intensity(axes, A_inv, xyz, U, ff, weights, n_groups: int, *, max_memory=None,
                     keep: Callable[[int, int, int, int, torch.Tensor], None] | None = None,
                     incoherent_only: bool = False) -> torch.Tensor:
    """``sum_g [sum_m w_sm |A_gm|^2 - |sum_m w_sm A_gm|^2]`` on the grid: (n_sets, n_h, n_k, n_l).

    The M = n_groups * n_members copies in ``xyz`` are ordered group-major (copy ``g * n_members + m``);
    ``weights`` is real, (n_sets, n_members) shared by the groups or (n_sets, n_groups, n_members).
    Groups are computed a few at a time (as many as fit ``max_memory`` with the whole grid), each
    chunk slab by slab. ``keep(first_group, axis, start, stop, A)``, when given, sees the structure
    factors of each chunk and slab (A: (groups of the chunk * n_members, n_h, n_k, n_l) restricted to
    ``start:stop`` along ``axis``), e.g. to save some. ``incoherent_only``: only the first sum,
    ``sum_g sum_m w_sm |A_gm|^2`` (the scale on which the difference rounds).

    The sums over copies are taken in the engine's row order; only the (n_sets, ...) maps are reordered.
    """
    M = xyz.shape[0]
    n_members = M // n_groups
    sizes = [a.numel() for a in axes]
    w = weights if weights.ndim == 3 else weights[:, None, :].expand(-1, n_groups, -1)
    budget = int(max_memory) if max_memory is not None else default_max_memory(xyz.device)
    n_points = math.prod(sizes)
    per_group = n_members * n_points * 16 * 4  # amplitudes, their powers and the contractions
    step = max(1, min(n_groups, (budget // 2) // max(1, per_group)))
    total, layout = None, None
    for g0 in range(0, n_groups, step):
        g1 = min(n_groups, g0 + step)
        rows = slice(g0 * n_members, g1 * n_members)
        wg = w[:, g0:g1]
        slabs = []
        for layout, start, stop, A in _member_slabs(axes, A_inv, xyz[rows], U[rows], *(f[rows] for f in ff),
                                                    max_memory=max_memory):
            if keep is not None:
                keep(g0, layout.perm[2], start, stop, _to_hkl(A, layout, sizes))
            A = A.reshape(g1 - g0, n_members, *A.shape[1:])  # (g, m, rows, w)
            power = torch.view_as_real(A).square().sum(dim=-1)
            incoherent = torch.einsum("sgm,gm...->s...", wg, power)
            if incoherent_only:
                slabs.append(incoherent)
                continue
            coherent = torch.einsum("sgm,gm...->sg...", wg.to(A.dtype), A)
            slabs.append(incoherent - torch.view_as_real(coherent).square().sum(dim=(1, -1)))
        part = slabs[0] if len(slabs) == 1 else torch.cat(slabs, dim=-1)
        total = part if total is None else total + part
    return _to_hkl(total, layout, sizes).contiguous()


def masked_map(I: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n_sets, n_h, n_k, n_l) -> (n_sets, n_points) with NaN where ``mask`` is False."""
    flat = I.reshape(I.shape[0], -1)
    return torch.where(mask[None, :], flat, torch.full_like(flat, float("nan")))


def save_masked(path: str, A: torch.Tensor, mask: torch.Tensor) -> None:
    """Amplitudes at the masked points, flat grid order, as eryx saves them (complex NumPy .npy)."""
    np.save(path, A.reshape(-1)[mask].detach().cpu().numpy())


# ---------------------------------------------------------------- the model


def fit_points(t: torch.Tensor, inside: torch.Tensor, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of a flat target that a least-squares fit uses (finite, inside the model's mask and the
    user's ``mask``) and the target's squared norm there, refusing a target with nothing to fit."""
    keep = torch.isfinite(t) & inside
    if mask is not None:
        m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        keep &= m.to(t.device).reshape(-1).to(torch.bool)
    if int(keep.sum()) < 2:
        raise ValueError("target has fewer than 2 usable points (finite, inside the mask)")
    t_norm = (t[keep] ** 2).sum()
    if not float(t_norm) > 0:
        raise ValueError("target is zero at every usable point")
    return keep, t_norm


class Ensemble:
    """Ensemble disorder from the models of a multi-model PDB (eryx's ``Ensemble``, in torch).

    Parameters as eryx: ``pdb_path, hsampling, ksampling, lsampling``, ``expand_p1`` (expand each model
    to the unit cell), ``res_limit``, ``batch_size`` / ``n_processes`` (accepted, unused: the grid is
    computed by the vectorised engine), ``frame`` (-1: every model is a conformation; k: model k only).
    Keyword-only ``device``, ``dtype`` (float64 default), ``max_memory`` (bytes per slab of the grid).

    Attributes as eryx: ``model`` (:class:`eryx_port.pdb.AtomicModel`, copies ordered conformation-major,
    ``conf * n_asu + asu``), ``q_grid``, ``q_mags``, ``mask``, ``map_shape``, ``frame``.
    """

    def __init__(self, pdb_path, hsampling, ksampling, lsampling, expand_p1=True, res_limit=0, batch_size=10000,
                 n_processes=8, frame=-1, *, device=None, dtype=None, max_memory=None):
        self.hsampling, self.ksampling, self.lsampling = check_samplings(hsampling, ksampling, lsampling, integral=False)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.max_memory = max_memory
        self._setup(pdb_path, expand_p1=expand_p1, res_limit=res_limit, frame=frame)
        self.batch_size = batch_size
        self.n_processes = n_processes

    def _setup(self, pdb_path, expand_p1, res_limit, frame) -> None:
        """Read the conformations (all models for frame -1) and build the grid, |q| and the resolution mask."""
        check_res_limit(res_limit)
        self.model = AtomicModel(pdb_path, expand_p1=expand_p1, frame=frame, device=self.device, dtype=self.dtype)
        n_copies, n_expected = int(self.model.xyz.shape[0]), self.model.n_conf * self.model.n_asu
        if n_copies != n_expected:
            raise ValueError(
                f"{os.path.basename(str(pdb_path))}: expand_p1={expand_p1!r} gives {n_copies} copies of the atoms, but "
                f"{self.model.n_conf} conformation(s) x {self.model.n_asu} ASU(s) need {n_expected}; use expand_p1=True "
                "for an asymmetric unit with symmetry mates (eryx fails with an IndexError here)"
            )
        setup_grid(self, res_limit)
        self.frame = frame

    # ------------------------------------------------------------------ weights

    def _weights(self, weights) -> torch.Tensor:
        n_conf = self.model.n_conf
        if weights is None:
            return torch.full((1, n_conf), 1.0 / n_conf, dtype=self.dtype, device=self.device)
        if isinstance(weights, (str, bytes)):
            raise ValueError(f"weights must be numbers, got {weights!r}")
        w = as_real(weights, self.dtype, self.device)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2:
            raise ValueError(f"weights must have shape (n_conf,) or (n_sets, n_conf), got {tuple(w.shape)}")
        if w.shape[1] != n_conf:
            raise ValueError(
                f"Second dimension of weights must match number of conformations: weights have shape "
                f"{tuple(w.shape)}, the ensemble has {n_conf} conformation(s)"
            )
        if not bool(torch.isfinite(w.detach()).all()):
            raise ValueError("weights must be finite")
        return w

    # ------------------------------------------------------------------ maps

    def apply_disorder(self, weights=None, ensemble_dir=None) -> torch.Tensor:
        """Diffuse maps (n_sets, n_points) for weight sets ``weights`` ((n_conf,) or (n_sets, n_conf);
        default: equal weights 1 / n_conf), NaN outside the resolution mask.

        ``ensemble_dir``: for every ASU, the structure factors at the masked q-points are saved as
        ``conf<frame:05>_asu<asu>.npy`` there (eryx's names; every conformation writes the same file,
        so with frame -1 the last conformation's amplitudes remain).
        """
        w = self._weights(weights)
        m = self.model
        n_conf, n_asu = m.n_conf, m.n_asu
        if ensemble_dir is not None and not os.path.isdir(ensemble_dir):
            raise ValueError(f"ensemble_dir {ensemble_dir!r} is not a folder")
        saved = [] if ensemble_dir is not None else None

        def keep(first_group, axis, start, stop, A):
            saved.append((first_group, axis, A.detach()))

        I = self._maps(w, keep=keep if saved is not None else None)
        if saved is not None:
            for asu in range(n_asu):  # a few files, one per ASU: its last conformation's slabs
                parts = [(axis, a.reshape(-1, n_conf, *a.shape[1:])[asu - g0, -1])
                         for g0, axis, a in saved if g0 <= asu < g0 + a.shape[0] // n_conf]
                A = parts[0][1] if len(parts) == 1 else torch.cat([a for _, a in parts], dim=parts[0][0])
                save_masked(os.path.join(ensemble_dir, f"conf{self.frame:05}_asu{asu}.npy"), A, self.mask)
        return masked_map(I, self.mask)

    def _maps(self, w, *, keep=None, incoherent_only=False) -> torch.Tensor:
        """(n_sets, n_h, n_k, n_l) maps (or only their incoherent sums) for weight sets ``w`` (n_sets, n_conf)."""
        m = self.model
        n_conf, n_asu = m.n_conf, m.n_asu
        # copies regrouped ASU-major: group asu, member conf (eryx's copy conf * n_asu + asu)
        perm = torch.arange(n_conf * n_asu, device=self.device).reshape(n_conf, n_asu).T.reshape(-1)
        xyz, U = m.xyz[perm], (m.adp[perm] / (8 * math.pi**2))
        ff = (m.ff_a[perm], m.ff_b[perm], m.ff_c[perm])
        return member_intensity(self._axes, m.A_inv, xyz, U, ff, w, n_asu, max_memory=self.max_memory, keep=keep,
                                incoherent_only=incoherent_only)

    # ------------------------------------------------------------------ fitting

    def fit(self, target, weights0=None, *, normalize=True, max_iter=100, tolerance=1e-12, mask=None):
        """Fit one set of conformation weights to ``target`` (map_shape or flat) by L-BFGS.

        ``normalize`` (default): the weights are probabilities (eryx's reading of them), fitted as
        ``softmax(logits)`` from ``weights0`` divided by its sum; else any positive weights, fitted
        as logarithms. Start: ``weights0`` (default equal weights). The loss is the squared difference
        ``sum (I - target)^2 / sum target^2`` over the points finite in ``target``, inside the
        resolution mask and ``mask`` (True = keep). Returns ``(weights (n_conf,), map (n_points,))``.
        """
        t = as_real(target, self.dtype, self.device).reshape(-1)
        if t.numel() != self.q_grid.shape[0]:
            raise ValueError(f"target has {t.numel()} points, the model's map has {self.q_grid.shape[0]} {tuple(self.map_shape)}")
        w0 = self._weights(weights0)[0].detach()
        if bool((w0 <= 0).any()):
            raise ValueError("weights0 must be positive (they are fitted as logarithms)")
        keep, t_norm = fit_points(t, self.mask, mask)
        to_weights = (lambda x: torch.softmax(x, dim=0)) if normalize else torch.exp
        x = (w0 / w0.sum() if normalize else w0).log().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=max_iter, tolerance_grad=tolerance, tolerance_change=tolerance * 1e-3,
                                history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            I = self.apply_disorder(to_weights(x))[0]
            loss = ((I[keep] - t[keep]) ** 2).sum() / t_norm
            loss.backward()
            return loss

        opt.step(closure)
        w = to_weights(x.detach())
        return w, self.apply_disorder(w)[0].detach()
