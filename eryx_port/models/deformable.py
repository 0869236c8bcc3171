# SPDX-License-Identifier: GPL-2.0-or-later
"""Non-interacting deformable molecules: every ASU an independent Gaussian network (eryx's model, in torch).

Each asymmetric unit deforms as an all-atom Gaussian network model (one spring constant inside the
ASU, none between ASUs), so the displacements of two atoms of one ASU are correlated by the
network's covariance ``C`` and ASUs are uncorrelated. ``C`` is the pseudo-inverse of the network's
Laplacian, scaled so that its mean diagonal matches the mean B-factor of the file
(``mean(B) / 8 pi^2``); the spring constant therefore cancels and the model has no free spring
parameter: what shapes the map is the scale of ``C`` (the mean B-factor) and the coordinates.

Intensity, summed incoherently over ASUs, with ``F_j(q)`` atom j's structure factor (Debye-Waller
factor from ``diag(C)``) and ``q2`` eryx's |q|^2 rounded to ``q2_rounding`` decimals:

* exact ("naive"): ``I(q) = sum_ij F_j(q) (exp(q2 C_ij) - 1) conj(F_j'(q))``;
* soft-coupling limit (``scl``): ``exp(q2 C) - 1 ~ q2 C``, and with ``C ~ U diag(s) U^T``
  truncated to the leading components, ``I(q) = q2 sum_r s_r |sum_j F_j(q) U_jr|^2``.

Everything is vectorised over q-points, ASUs and atoms (chunked over q for bounded memory) and
differentiable in the B-factors (``adp=``) and the coordinates (``xyz=``); the contact list of the
network is found once from the file's positions.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch

from .. import scatter
from ._atoms import override_atoms
from ..gnm import PINV_RCOND, GaussianNetworkModel
from ..map_utils import generate_grid, get_resolution_mask, grid_axes
from ..pdb import AtomicModel
from ..tensors import as_real, resolve_device, resolve_dtype
from ._checks import check_count, check_positive, check_res_limit, check_samplings

__all__ = ["NonInteractingDeformableMolecules"]

# (q-point x atom) complex elements per chunk of the structure factors; the naive intensity also
# holds a (q-point x atom x atom) coupling matrix per chunk, bounded by the same budget
_CHUNK_ELEMENTS = 1 << 21


def _chunks(n: int, per_point: int):
    step = max(1, _CHUNK_ELEMENTS // max(per_point, 1))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


class NonInteractingDeformableMolecules:
    """Lattice of non-interacting, deformable ASUs, each a Gaussian network model.

    Parameters as eryx: ``pdb_path, hsampling, ksampling, lsampling`` ((min, max, oversampling)
    each), ``expand_p1``, ``res_limit``, ``gnm_cutoff``; ``batch_size`` and ``n_processes`` are
    accepted (``batch_size`` caps the q-points per structure-factor chunk, ``n_processes`` is
    ignored). Keyword-only: ``device``, ``dtype`` (float64 default, or float32), ``xyz`` (n_asu,
    n_atoms, 3) and ``adp`` ((n_atoms,) or (n_asu, n_atoms) B-factors) in place of the file's,
    tensors with ``requires_grad`` welcome.

    Attributes as eryx: ``model``, ``gnm``, ``map_shape``, ``res_mask``, ``q_grid``,
    ``q2_unique``, ``q2_unique_inverse``, ``covar`` (n_atoms, n_atoms), ``ADP`` (n_atoms,),
    ``u`` (n_atoms, rank), ``s`` (rank,).
    """

    def __init__(
        self,
        pdb_path,
        hsampling,
        ksampling,
        lsampling,
        expand_p1=True,
        res_limit=0,
        gnm_cutoff=4.0,
        batch_size=10000,
        n_processes=8,
        *,
        device=None,
        dtype=None,
        xyz=None,
        adp=None,
    ):
        check_samplings(hsampling, ksampling, lsampling)
        check_res_limit(res_limit)
        if isinstance(gnm_cutoff, torch.Tensor):
            gnm_cutoff = float(gnm_cutoff)
        check_positive(gnm_cutoff, "gnm_cutoff")
        check_count(batch_size, "batch_size")
        self.hsampling = hsampling
        self.ksampling = ksampling
        self.lsampling = lsampling
        self.batch_size = batch_size
        self.n_processes = n_processes
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self._xyz_override, self._adp_override = xyz, adp
        self._setup(pdb_path, expand_p1, res_limit)
        self._setup_gnm(pdb_path, gnm_cutoff)
        self._setup_covmat()

    # ------------------------------------------------------------------ set-up

    def _setup(self, pdb_path, expand_p1, res_limit, q2_rounding=3):
        """Read the structure; the hkl and q grids, the resolution mask and the rounded |q|^2."""
        if isinstance(q2_rounding, bool) or not isinstance(q2_rounding, numbers.Integral):
            raise ValueError(f"q2_rounding must be an integer number of decimals, got {q2_rounding!r}")
        self.model = AtomicModel(pdb_path, expand_p1, device=self.device, dtype=self.dtype)
        copies = int(self.model.xyz.shape[0])
        if copies != self.model.n_asu:
            raise ValueError(
                f"{os.path.basename(str(pdb_path))}: expand_p1={expand_p1!r} gives {copies} copies of the atoms but "
                f"the symmetry operations describe {self.model.n_asu} ASUs; use expand_p1=True with the asymmetric unit"
            )
        self._apply_overrides()
        hkl, self.map_shape = generate_grid(
            self.model.A_inv, self.hsampling, self.ksampling, self.lsampling, return_hkl=True
        )
        self.res_mask, _ = get_resolution_mask(self.model.cell, hkl, res_limit)
        self.q_grid = 2 * math.pi * (hkl @ self.model.A_inv)
        q2 = torch.linalg.vector_norm(self.q_grid, dim=1) ** 2
        self.q2_unique, self.q2_unique_inverse = torch.unique(
            torch.round(q2, decimals=int(q2_rounding)), sorted=True, return_inverse=True
        )

    def _apply_overrides(self):
        if self._adp_override is not None:
            adp = as_real(self._adp_override, self.dtype, self.device)
            first_asu = adp.detach().reshape(-1, adp.shape[-1])[0] if adp.ndim else adp.detach()
            if not bool(torch.isfinite(adp.detach()).all()) or float(first_asu.mean()) <= 0:
                raise ValueError("adp must be finite B-factors with a positive mean over the first ASU")
        override_atoms(self.model, self._xyz_override, self._adp_override, self.dtype, self.device)

    def _setup_gnm(self, pdb_path, gnm_cutoff):
        """The all-atom network: springs of constant 1 inside each ASU, none between ASUs."""
        # eryx reads the file again with expand_p1=True; _setup holds that same model (one copy per ASU)
        self.gnm = GaussianNetworkModel.from_model(self.model, gnm_cutoff, 1.0, 0.0)
        self._kinv = self._components = None

    def _setup_covmat(self):
        """Covariance of one ASU and its leading components ``u``, ``s``."""
        self.compute_covariance_matrix()
        # components of the unscaled covariance (no gradient in it, computed once), then the ADP
        # scale on s: the same as truncating covar itself, with a clean derivative in the B-factors
        if getattr(self, "_components", None) is None:
            self._components = self._low_rank_truncation(self._kinv)
        self.u, s = self._components
        self.s = s * self._scale

    def update(self, *, xyz=None, adp=None):
        """Swap coordinates and/or B-factors (tensors may require grad); the network's contacts are kept."""
        if xyz is not None:
            self._xyz_override = xyz
        if adp is not None:
            self._adp_override = adp
        self._apply_overrides()
        self._setup_covmat()
        return self

    # ------------------------------------------------------------------ covariance

    def _asu_laplacian(self) -> torch.Tensor:
        """K(k=0) of the first ASU (n_atoms, n_atoms): the only block the model needs.

        With no springs between ASUs, K(0) is block diagonal with one copy of this block per ASU.
        """
        off, diag = self.gnm.hessian_contacts()
        c = self.gnm.contacts
        n = self.gnm.n_atoms_per_asu
        inside = (c.asu_i == 0) & (c.asu_j == 0)
        K = torch.zeros(n * n, dtype=torch.float64, device=off.device)
        K = K.index_add(0, c.atom_i[inside] * n + c.atom_j[inside], off[inside].to(torch.float64))
        K = K.reshape(n, n) + torch.diag(diag[0].to(torch.float64))
        return K

    def compute_covariance_matrix(self):
        """``covar`` (n_atoms, n_atoms) and ``ADP`` = diag(covar), scaled to the mean B-factor of the first ASU."""
        if getattr(self, "_kinv", None) is None:
            with torch.no_grad():
                K = self._asu_laplacian()
                self._kinv = torch.linalg.pinv(K, rtol=PINV_RCOND).to(self.dtype)
        mean_diag = torch.diagonal(self._kinv).mean()
        if not float(mean_diag) > 0:
            raise ValueError("the network of the ASU has no flexible mode (no contacts within gnm_cutoff?)")
        self._scale = self.model.adp[0].mean() / (8 * math.pi**2 * mean_diag)
        self.covar = self._kinv * self._scale
        self.ADP = torch.diagonal(self.covar)

    def _low_rank_truncation(self, sym_matrix, rank=None, rec_error_threshold=0.01):
        """Leading singular vectors ``u`` (n, rank) and values ``s`` (rank,) of a symmetric matrix.

        ``rank=None``: the smallest rank whose reconstruction has a Frobenius norm within
        ``rec_error_threshold`` (relative) of the matrix's; if none does, n - 1 (as eryx's search).
        """
        C = as_real(sym_matrix, self.dtype, self.device)
        if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
            raise ValueError(f"sym_matrix must be a square 2-d matrix, got shape {tuple(C.shape)}")
        n = C.shape[0]
        u, s, _ = torch.linalg.svd(C)
        if rank is None:
            if isinstance(rec_error_threshold, bool) or not isinstance(rec_error_threshold, numbers.Real) or not math.isfinite(rec_error_threshold):
                raise ValueError(f"rec_error_threshold must be a finite number, got {rec_error_threshold!r}")
            # Frobenius norm of the rank-r reconstruction, r = 0 .. n-1: sqrt of the leading s^2 sums
            partial = torch.cat([s.new_zeros(1), torch.cumsum(s.detach() ** 2, 0)[:-1]]).sqrt()
            error = 1.0 - partial / torch.linalg.norm(C.detach())
            below = torch.nonzero(error < rec_error_threshold)
            rank = int(below[0, 0]) if below.numel() else n - 1
        elif isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank <= n:
            raise ValueError(f"rank must be None or an integer in [0, {n}], got {rank!r}")
        return u[:, : int(rank)], s[: int(rank)]

    # ------------------------------------------------------------------ intensities

    def _q2(self) -> torch.Tensor:
        """eryx's per-point |q|^2, rounded (n_points,)."""
        return self.q2_unique[self.q2_unique_inverse]

    def _atom_factors(self, q: torch.Tensor) -> torch.Tensor:
        """Structure factor of every atom of every ASU at q, Debye-Waller from ``ADP``: (n_q, n_asu, n_atoms)."""
        n_asu, n_atoms = self.model.xyz.shape[:2]
        xyz = self.model.xyz.reshape(-1, 3)
        m = self.model
        ff = (m.ff_a.reshape(n_asu * n_atoms, -1), m.ff_b.reshape(n_asu * n_atoms, -1), m.ff_c.reshape(-1))
        U = self.ADP.repeat(n_asu)
        F = scatter.structure_factors(q, xyz, *ff, U=U, batch_size=self.batch_size, sum_over_atoms=False)
        return F.reshape(q.shape[0], n_asu, n_atoms)

    def _grid_factors(self):
        """A function of flat point indices giving Re and Im of every atom's structure factor there:
        (n, 2 n_asu, n_atoms), the n_asu real parts then the n_asu imaginary parts.

        On the regular grid the phase exp(i q . r) is a product of one table per axis, and the form
        factor times the Debye-Waller factor (``ADP``) depends on |q|^2 alone: computed once per
        distinct |q|^2 (by the structure-factor routine, at the atoms' origin).
        """
        m = self.model
        grad = torch.is_grad_enabled() and (self.ADP.requires_grad or m.xyz.requires_grad)
        key = (m.xyz, m.xyz._version, self.q_grid, self.ADP.detach().clone())
        cached = getattr(self, "_factors_cache", None)
        if not grad and cached is not None and all(a is b for a, b in zip(cached[0][:3], key[:3])) \
                and cached[0][1] == key[1] and torch.equal(cached[0][3], key[3]):
            return cached[1]  # the exact and the soft-coupling maps read the same factors
        n_asu, n_atoms = m.xyz.shape[:2]
        axes = grid_axes(self.hsampling, self.ksampling, self.lsampling, dtype=self.dtype, device=self.device)
        n_k, n_l = axes[1].numel(), axes[2].numel()
        frac = (m.xyz @ m.A_inv.T.to(self.dtype)).reshape(-1, 3)  # (asu atom, 3)
        tables = []
        for ax, v in enumerate(axes):
            p = 2 * math.pi * v[:, None] * frac[None, :, ax]
            tables.append(torch.complex(torch.cos(p), torch.sin(p)))  # (n_v, asu atom)
        q2 = (self.q_grid * self.q_grid).sum(dim=1)
        distinct, inverse = torch.unique(q2.detach(), return_inverse=True)
        first = torch.full((distinct.numel(),), q2.numel(), dtype=torch.long, device=q2.device)
        first = first.scatter_reduce(0, inverse, torch.arange(q2.numel(), device=q2.device), "amin")
        ff = (m.ff_a.reshape(n_asu * n_atoms, -1), m.ff_b.reshape(n_asu * n_atoms, -1), m.ff_c.reshape(-1))
        U = self.ADP.repeat(n_asu)
        kinds = None
        if not grad:  # atoms of equal form factor and U (the ASUs' copies) share their amplitudes
            rows = torch.cat([ff[0], ff[1], ff[2][:, None], U[:, None]], dim=1)
            _, kinds = torch.unique(rows, dim=0, return_inverse=True)
            one = torch.full((int(kinds.max()) + 1,), kinds.numel(), dtype=torch.long, device=kinds.device)
            one = one.scatter_reduce(0, kinds, torch.arange(kinds.numel(), device=kinds.device), "amin")
            ff, U = tuple(t[one] for t in ff), U[one]
        origin = torch.zeros((U.numel(), 3), dtype=frac.dtype, device=frac.device)
        amp = scatter.structure_factors(self.q_grid[first], origin, *ff, U=U,
                                        batch_size=self.batch_size, sum_over_atoms=False).real  # (distinct, kind)
        if kinds is not None:
            amp = amp[:, kinds]  # (distinct, asu atom)

        n_q = q2.numel()

        def build(points):
            if points is None and not grad:  # every point, plane by plane along h: products of the tables
                X = amp.new_empty((n_q, 2, n_asu * n_atoms))
                plane = n_k * n_l
                for h in range(axes[0].numel()):
                    P = (tables[0][h] * tables[1]).reshape(-1, 1, n_asu * n_atoms) * tables[2][None]
                    rows = slice(h * plane, (h + 1) * plane)
                    P, a = P.reshape(plane, -1), amp[inverse[rows]]
                    torch.mul(P.real, a, out=X[rows, 0])
                    torch.mul(P.imag, a, out=X[rows, 1])
                return X.reshape(-1, 2 * n_asu, n_atoms)
            if points is None:
                P = (tables[0][:, None] * tables[1][None]).reshape(-1, 1, n_asu * n_atoms) * tables[2][None]
                P, a = P.reshape(n_q, -1), amp[inverse]
            else:
                ih, ik, il = points // (n_k * n_l), (points // n_l) % n_k, points % n_l
                P, a = tables[0][ih] * tables[1][ik] * tables[2][il], amp[inverse[points]]
            parts = torch.view_as_real(P).transpose(1, 2)  # (n, 2, asu atom): Re, Im
            if torch.is_grad_enabled() and (P.requires_grad or a.requires_grad):
                X = (parts * a[:, None, :]).contiguous()
            else:
                X = torch.mul(parts, a[:, None, :], out=a.new_empty((a.shape[0], 2, a.shape[1])))
            return X.reshape(-1, 2 * n_asu, n_atoms)

        whole = build(None) if n_q * 2 * n_asu * n_atoms <= _CHUNK_ELEMENTS * 8 else None

        def factors(points=None) -> torch.Tensor:
            if whole is not None:
                return whole if points is None else whole[points]
            return build(torch.arange(n_q, device=q2.device) if points is None else points)

        self._factors_cache = None if grad else (key, factors)
        return factors

    def compute_scl_intensity(self, rank=-1, outdir=None):
        """Soft-coupling-limit intensity (n_points,): ``q2 sum_r s_r sum_asu |F_asu U_r|^2`` on the resolution mask.

        ``rank=-1`` sums the retained components, ``rank >= 0`` gives that component's map alone
        (for any ``n_processes``: eryx's single-process path fails there). Points outside the mask
        are 0. With ``outdir`` the map is also saved as ``rank_{rank:05}.npy`` there.
        """
        n_comp = int(self.s.shape[0])
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not -1 <= rank < n_comp:
            raise ValueError(f"rank must be -1 (all components) or a component in [0, {n_comp}), got {rank!r}")
        if rank == -1:
            u, s = self.u, self.s
        else:
            u, s = self.u[:, rank : rank + 1], self.s[rank : rank + 1]
        # per-atom structure factors at the points inside the mask, projected on the components
        keep = torch.nonzero(self.res_mask).reshape(-1)
        n_asu, n_atoms = self.model.xyz.shape[:2]
        factors = self._grid_factors()
        if keep.numel() == self.q_grid.shape[0] and keep.numel() * 2 * n_asu * n_atoms <= _CHUNK_ELEMENTS * 8:
            # sum_r s_r |F u_r|^2 = |F u sqrt(s)|^2 summed over Re, Im, ASUs and components
            X = factors() @ (u * s.sqrt())  # (q, 2 asu, component): Re and Im of F u (u real)
            inside = torch.linalg.vector_norm(X, dim=(1, 2)) ** 2
        else:
            parts = []
            for part in _chunks(keep.numel(), 2 * n_asu * n_atoms):
                X = factors(keep[part]) @ u
                parts.append((X * X).sum(dim=1) @ s)
            inside = torch.cat(parts) if parts else self.q_grid.new_zeros(0)
        Id = torch.zeros(self.q_grid.shape[0], dtype=inside.dtype, device=inside.device).index_put((keep,), inside)
        Id = self._q2() * Id
        if outdir is not None:
            np.save(os.path.join(outdir, f"rank_{rank:05}.npy"), Id.detach().cpu().numpy())
        return Id

    def compute_intensity_naive(self):
        """Exact intensity (n_points,): ``sum_asu F (exp(q2 C) - 1) F^H`` at every point (no mask).

        The covariance is recomputed first (as eryx does). Memory stays bounded by chunks of q.
        """
        self.compute_covariance_matrix()
        n_asu, n_atoms = self.model.xyz.shape[:2]
        C = self.covar
        factors = self._grid_factors()
        # points grouped by their rounded |q|^2 (J = exp(q2 C) - 1 is one matrix per group), groups of
        # equal size c batched: (groups, c * 2 asu, atom) x (groups, atom, atom)
        inverse = self.q2_unique_inverse
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse, minlength=self.q2_unique.numel())
        starts = torch.cumsum(counts, 0) - counts
        points, values = [], []
        for c in torch.unique(counts[counts > 0]).tolist():
            groups = torch.nonzero(counts == c).reshape(-1)
            for part in _chunks(groups.numel(), c * n_atoms * max(n_atoms, 2 * n_asu)):
                g = groups[part]
                idx = order[starts[g][:, None] + torch.arange(c, device=g.device)]  # (groups, c) points
                X = factors(idx.reshape(-1)).reshape(g.numel(), c * 2 * n_asu, n_atoms)
                J = torch.expm1(self.q2_unique[g][:, None, None] * C)  # (groups, atom, atom), real symmetric
                # F J F^H = Re F J Re F + Im F J Im F (J real)
                values.append((torch.bmm(X, J) * X).sum(dim=2).reshape(-1, c, 2 * n_asu).sum(dim=2).reshape(-1))
                points.append(idx.reshape(-1))
        if not values:
            return self.q_grid.new_zeros(self.q_grid.shape[0])
        values = torch.cat(values)
        return values.new_zeros(self.q_grid.shape[0]).index_put((torch.cat(points),), values)

    def apply_disorder(self, scl=True):
        """Diffuse intensity (n_points,): soft-coupling limit (``scl=True``) or exact; NaN outside the mask."""
        if not isinstance(scl, (bool, np.bool_)):
            raise ValueError(f"scl must be True or False, got {scl!r}")
        Id = self.compute_scl_intensity() if scl else self.compute_intensity_naive()
        return torch.where(self.res_mask, Id, torch.full_like(Id, float("nan")))

    # ------------------------------------------------------------------ fitting

    def fit(self, target, b_factor=None, scale=None, *, scl=True, max_iter=100, tolerance=1e-12):
        """Fit the mean B-factor and an intensity scale to a measured map with torch.optim (L-BFGS).

        ``target``: a map of ``map_shape`` or (n_points,) (tensor or array; NaN points ignored).
        ``b_factor`` (A^2): start value of the mean B-factor of the first ASU (default: the file's);
        the relative B-factors of the atoms are kept. ``scale``: start value of the factor
        multiplying the model map (default: the least-squares one at the start). Both are fitted in
        log space, minimising ``sum (scale * I - target)^2 / sum target^2`` over finite points.

        Returns ``({"b_factor": float, "scale": float, "loss": float}, map)``: the fitted values
        and the model map (unscaled, as :meth:`apply_disorder` gives it) at the fitted B-factor.
        The model is left at the fitted B-factor.
        """
        T = as_real(target, self.dtype, self.device).reshape(-1)
        if T.numel() != self.q_grid.shape[0]:
            raise ValueError(f"target must have {self.q_grid.shape[0]} points (map_shape {tuple(self.map_shape)}), got {T.numel()}")
        keep = torch.isfinite(T) & self.res_mask
        if not bool(keep.any()) or float((T[keep] ** 2).sum()) == 0:
            raise ValueError("target has no finite nonzero values inside the resolution mask")
        adp0 = self.model.adp.detach().clone()
        b0 = float(adp0[0].mean())
        start_b = b0 if b_factor is None else float(b_factor)
        if not (math.isfinite(start_b) and start_b > 0):
            raise ValueError(f"b_factor must be a positive number of A^2, got {b_factor!r}")
        check_count(max_iter, "max_iter")
        T = T[keep]
        norm = (T**2).sum()

        def model_map(log_b):
            self.update(adp=adp0 * (log_b.exp() / b0))
            return self.apply_disorder(scl=scl)

        if scale is None:
            with torch.no_grad():
                I0 = model_map(torch.tensor(math.log(start_b), dtype=self.dtype, device=self.device))[keep]
                scale = float((I0 * T).sum() / (I0 * I0).sum())
        if not (math.isfinite(float(scale)) and float(scale) > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        params = torch.tensor([math.log(start_b), math.log(float(scale))], dtype=self.dtype, device=self.device)
        params.requires_grad_(True)
        opt = torch.optim.LBFGS([params], max_iter=int(max_iter), tolerance_grad=tolerance,
                                tolerance_change=tolerance, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            I = model_map(params[0])[keep]
            loss = ((params[1].exp() * I - T) ** 2).sum() / norm
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            fitted = model_map(params[0].detach())
            b, k = (float(v) for v in params.detach().exp())
            loss = float(((k * fitted[keep] - T) ** 2).sum() / norm)
        return {"b_factor": b, "scale": k, "loss": loss}, fitted
